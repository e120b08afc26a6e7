package pools

import (
	"net/netip"
	"slices"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		name  string
		svc   Service
		ns    string
		fams  []Family
		ports []Port
		err   string
	}{
		{name: "defaults", svc: svc("ns/s"), ns: "ns", fams: []Family{IPv4}, ports: []Port{}},
		{name: "a namespace given is kept", svc: svc("ns/s", func(s *Service) { s.Namespace = "other" }), ns: "other", fams: []Family{IPv4}, ports: []Port{}},
		{name: "a key without namespace", svc: svc("s"), ns: "", fams: []Family{IPv4}, ports: []Port{}},
		{name: "no families means IPv4", svc: svc("ns/s", stack(PreferDualStack)), ns: "ns", fams: []Family{IPv4}, ports: []Port{}},
		{name: "SingleStack keeps the primary", svc: svc("ns/s", stack(SingleStack, IPv6, IPv4)), ns: "ns", fams: []Family{IPv6}, ports: []Port{}},
		{name: "duplicates dropped", svc: svc("ns/s", stack(PreferDualStack, IPv6, IPv6, IPv4)), ns: "ns", fams: []Family{IPv6, IPv4}, ports: []Port{}},
		{name: "RequireDualStack adds the other family", svc: svc("ns/s", stack(RequireDualStack, IPv6)), ns: "ns", fams: []Family{IPv6, IPv4}, ports: []Port{}},
		{name: "RequireDualStack without families", svc: svc("ns/s", stack(RequireDualStack)), ns: "ns", fams: []Family{IPv4, IPv6}, ports: []Port{}},
		{name: "protocols upper-case, empty is TCP",
			svc: svc("ns/s", func(s *Service) { s.Ports = []Port{{"udp", 53}, {"", 80}, {"SCTP", 9}} }), ns: "ns", fams: []Family{IPv4},
			ports: []Port{{"UDP", 53}, {"TCP", 80}, {"SCTP", 9}}},
		{name: "no key", svc: svc(""), err: "the Service has no key"},
		{name: "unknown family before unknown policy", svc: svc("ns/s", stack(Policy(7), Family(9))), err: "unknown IP family Family(9)"},
		{name: "unknown policy", svc: svc("ns/s", stack(Policy(7), IPv4)), err: "unknown IP family policy Policy(7)"},
		{name: "an empty IP", svc: svc("ns/s", func(s *Service) { s.IPs = []netip.Addr{{}} }), err: "an empty IP address was requested"},
		{name: "the same IP twice", svc: svc("ns/s", wanting("10.0.0.1", "10.0.0.1")), err: "10.0.0.1 is requested twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.svc
			in.Ports = slices.Clone(in.Ports)
			got, err := normalize(tc.svc)
			if tc.err != "" {
				checkErr(t, "normalize", err, BadRequest, tc.err)
				return
			}
			if err != nil {
				t.Fatalf("normalize: %v", err)
			}
			if got.Namespace != tc.ns || !slices.Equal(got.Families, tc.fams) || !slices.Equal(got.Ports, tc.ports) {
				t.Fatalf("normalize = namespace %q, families %v, ports %v; want %q, %v, %v",
					got.Namespace, got.Families, got.Ports, tc.ns, tc.fams, tc.ports)
			}
			if !slices.Equal(tc.svc.Ports, in.Ports) {
				t.Fatalf("normalize changed the caller's ports to %v", tc.svc.Ports)
			}
		})
	}
}

func TestCheckRequestedIPs(t *testing.T) {
	for _, tc := range []struct {
		svc Service
		err string
	}{
		{svc: svc("ns/s", wanting("10.0.0.1"))},
		{svc: svc("ns/s", stack(PreferDualStack, IPv6, IPv4), wanting("10.0.0.1"))},
		{svc: svc("ns/s", stack(PreferDualStack, IPv6, IPv4), wanting("10.0.0.1", "2001:db8::1"))},
		{svc: svc("ns/s", stack(RequireDualStack), wanting("2001:db8::1", "10.0.0.1"))},
		{svc: svc("ns/s", wanting("10.0.0.1", "10.0.0.2")),
			err: "a SingleStack Service takes one IP, but 2 were requested (10.0.0.1, 10.0.0.2)"},
		{svc: svc("ns/s", stack(RequireDualStack), wanting("10.0.0.1", "10.0.0.2")),
			err: "a RequireDualStack Service needs one IPv4 and one IPv6 address, but 10.0.0.1, 10.0.0.2 was requested"},
		{svc: svc("ns/s", stack(PreferDualStack, IPv4, IPv6), wanting("10.0.0.1", "2001:db8::1", "10.0.0.2")),
			err: "a PreferDualStack Service takes one IP, or one IPv4 and one IPv6 address, but 10.0.0.1, 2001:db8::1, 10.0.0.2 was requested"},
		{svc: svc("ns/s", stack(PreferDualStack, IPv4), wanting("2001:db8::1")),
			err: "requested IP 2001:db8::1 is IPv6, but the Service's IP families are [IPv4]"},
	} {
		n, nerr := normalize(tc.svc)
		if nerr != nil {
			t.Fatalf("normalize(%v): %v", tc.svc.IPs, nerr)
		}
		err := checkRequestedIPs(&n)
		if tc.err == "" {
			if err != nil {
				t.Errorf("checkRequestedIPs(%v, %v) = %v", n.Policy, n.IPs, err)
			}
			continue
		}
		checkErr(t, "checkRequestedIPs", err, BadRequest, tc.err)
	}
}
