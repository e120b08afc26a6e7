package pools

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Policy is a Service's spec.ipFamilyPolicy.
type Policy int

// The IP family policies of a Service.
const (
	SingleStack Policy = iota
	PreferDualStack
	RequireDualStack
)

func (p Policy) String() string {
	switch p {
	case SingleStack:
		return "SingleStack"
	case PreferDualStack:
		return "PreferDualStack"
	case RequireDualStack:
		return "RequireDualStack"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Port is one port of a Service, for the sharing rules.
type Port struct {
	Protocol string // TCP, UDP or SCTP; "" means TCP
	Port     int32
}

// Service is what the allocator needs to know of a LoadBalancer Service.
type Service struct {
	Key             string // "namespace/name"
	Namespace       string // "" means the part of Key before '/'
	Labels          map[string]string
	NamespaceLabels map[string]string
	Families        []Family // spec.ipFamilies, primary first; empty means IPv4
	Policy          Policy
	Pool            string       // requested pool; "" means any
	IPs             []netip.Addr // requested IPs; empty means any
	SharingKey      string       // "" means the Service shares no IP
	Ports           []Port
	Local           bool   // externalTrafficPolicy: Local
	Selector        string // canonical spec.selector, compared when Local Services share
	Ingress         bool   // the bundled ingress Service, which gets the reserved address
}

// normalize checks a Service and fills in its defaults.
func normalize(in Service) (Service, *Error) {
	svc := in
	if svc.Key == "" {
		return svc, errorf(BadRequest, "the Service has no key")
	}
	if ns, _, ok := strings.Cut(svc.Key, "/"); ok && svc.Namespace == "" {
		svc.Namespace = ns
	}
	fams, err := families(in.Families, in.Policy)
	if err != nil {
		return svc, err
	}
	svc.Families = fams
	svc.Ports = ports(in.Ports)
	svc.IPs = slices.Clone(in.IPs)
	if err := checkIPs(svc.IPs); err != nil {
		return svc, err
	}
	return svc, nil
}

// families returns the IP families a Service with policy p gets from its
// spec.ipFamilies, primary first: duplicates dropped, IPv4 if none, the
// primary alone for SingleStack, the other family added for
// RequireDualStack.
func families(in []Family, p Policy) ([]Family, *Error) {
	fams := make([]Family, 0, 2)
	for _, f := range in {
		if f != IPv4 && f != IPv6 {
			return nil, errorf(BadRequest, "unknown IP family %v", f)
		}
		if !slices.Contains(fams, f) {
			fams = append(fams, f)
		}
	}
	if len(fams) == 0 {
		fams = append(fams, IPv4)
	}
	switch p {
	case SingleStack:
		fams = fams[:1]
	case PreferDualStack:
	case RequireDualStack:
		if len(fams) == 1 {
			fams = append(fams, other(fams[0]))
		}
	default:
		return nil, errorf(BadRequest, "unknown IP family policy %v", p)
	}
	return fams, nil
}

// ports returns a copy of ps with protocols upper-case and "" made TCP, so
// that the sharing rules compare like with like.
func ports(ps []Port) []Port {
	out := make([]Port, len(ps))
	for i, p := range ps {
		p.Protocol = strings.ToUpper(p.Protocol)
		if p.Protocol == "" {
			p.Protocol = "TCP"
		}
		out[i] = p
	}
	return out
}

// checkRequestedIPs checks the IPs a normalized Service asks for against
// its policy and families, before any pool is looked at: one IP for
// SingleStack, one of each family for RequireDualStack, one or one of each
// for PreferDualStack, and only the Service's families.
func checkRequestedIPs(svc *Service) *Error {
	ips := svc.IPs
	n := len(ips)
	switch {
	case svc.Policy == SingleStack && n != 1:
		return errorf(BadRequest, "a SingleStack Service takes one IP, but %d were requested (%s)", n, joinIPs(ips))
	case svc.Policy == RequireDualStack && (n != 2 || FamilyOf(ips[0]) == FamilyOf(ips[1])):
		return errorf(BadRequest, "a RequireDualStack Service needs one IPv4 and one IPv6 address, but %s was requested", joinIPs(ips))
	case svc.Policy == PreferDualStack && (n > 2 || n == 2 && FamilyOf(ips[0]) == FamilyOf(ips[1])):
		return errorf(BadRequest, "a PreferDualStack Service takes one IP, or one IPv4 and one IPv6 address, but %s was requested", joinIPs(ips))
	}
	for _, ip := range ips {
		if !slices.Contains(svc.Families, FamilyOf(ip)) {
			return errorf(BadRequest, "requested IP %v is %v, but the Service's IP families are %v", ip, FamilyOf(ip), svc.Families)
		}
	}
	return nil
}

// checkIPs refuses addresses no pool can hold and duplicates.
func checkIPs(ips []netip.Addr) *Error {
	for i, ip := range ips {
		switch {
		case !ip.IsValid():
			return errorf(BadRequest, "an empty IP address was requested")
		case ip.Zone() != "":
			return errorf(BadRequest, "%v has a zone; a LoadBalancer IP cannot be scoped to an interface", ip)
		case ip.Is4In6():
			return errorf(BadRequest, "%v is an IPv4-mapped IPv6 address; request %v instead", ip, ip.Unmap())
		case slices.Contains(ips[:i], ip):
			return errorf(BadRequest, "%v is requested twice", ip)
		}
	}
	return nil
}

func other(f Family) Family {
	if f == IPv4 {
		return IPv6
	}
	return IPv4
}

// missing returns the families in fams that no address in ips has.
func missing(fams []Family, ips []netip.Addr) []Family {
	var out []Family
	for _, f := range fams {
		if !slices.ContainsFunc(ips, func(ip netip.Addr) bool { return FamilyOf(ip) == f }) {
			out = append(out, f)
		}
	}
	return out
}

func missingIPs(want, have []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, ip := range want {
		if !slices.Contains(have, ip) {
			out = append(out, ip)
		}
	}
	return out
}

func joinIPs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}
