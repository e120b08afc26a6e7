package pools

import (
	"math"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in          string
		first, last string
		size        uint64
		str         string
	}{
		{"10.0.0.0/24", "10.0.0.0", "10.0.0.255", 256, "10.0.0.0/24"},
		{"  10.0.0.0/24 ", "10.0.0.0", "10.0.0.255", 256, "10.0.0.0/24"},
		{"10.0.0.7/32", "10.0.0.7", "10.0.0.7", 1, "10.0.0.7"},
		{"0.0.0.0/0", "0.0.0.0", "255.255.255.255", 1 << 32, "0.0.0.0/0"},
		{"10.0.0.7", "10.0.0.7", "10.0.0.7", 1, "10.0.0.7"},
		{"10.0.0.10-10.0.0.20", "10.0.0.10", "10.0.0.20", 11, "10.0.0.10-10.0.0.20"},
		{"10.0.0.10 - 10.0.0.20", "10.0.0.10", "10.0.0.20", 11, "10.0.0.10-10.0.0.20"},
		{"10.0.0.5-10.0.0.5", "10.0.0.5", "10.0.0.5", 1, "10.0.0.5"},
		{"10.0.0.0-10.0.0.255", "10.0.0.0", "10.0.0.255", 256, "10.0.0.0/24"},
		{"10.0.0.0-10.0.1.255", "10.0.0.0", "10.0.1.255", 512, "10.0.0.0/23"},
		{"10.0.0.128-10.0.1.127", "10.0.0.128", "10.0.1.127", 256, "10.0.0.128-10.0.1.127"},
		{"2001:db8::/64", "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", math.MaxUint64, "2001:db8::/64"},
		{"2001:db8::/120", "2001:db8::", "2001:db8::ff", 256, "2001:db8::/120"},
		{"2001:db8::/63", "2001:db8::", "2001:db8:0:1:ffff:ffff:ffff:ffff", math.MaxUint64, "2001:db8::/63"},
		{"8000::/1", "8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", math.MaxUint64, "8000::/1"},
		{"::/112", "::", "::ffff", 65536, "::/112"},
		{"::1:0:0:0-::ffff:ffff:ffff:ffff", "::1:0:0:0", "::ffff:ffff:ffff:ffff", math.MaxUint64 - 1<<48 + 1, "::1:0:0:0-::ffff:ffff:ffff:ffff"},
		{"2001:db8::1-2001:db8::9", "2001:db8::1", "2001:db8::9", 9, "2001:db8::1-2001:db8::9"},
		{"2001:DB8::1", "2001:db8::1", "2001:db8::1", 1, "2001:db8::1"},
	} {
		r, err := ParseRange(tc.in)
		if err != nil {
			t.Errorf("ParseRange(%q): %v", tc.in, err)
			continue
		}
		want := Range{netip.MustParseAddr(tc.first), netip.MustParseAddr(tc.last)}
		if r != want {
			t.Errorf("ParseRange(%q) = %v..%v, want %v..%v", tc.in, r.First, r.Last, want.First, want.Last)
		}
		if got := r.Size(); got != tc.size {
			t.Errorf("ParseRange(%q).Size() = %d, want %d", tc.in, got, tc.size)
		}
		if got := r.String(); got != tc.str {
			t.Errorf("ParseRange(%q).String() = %q, want %q", tc.in, got, tc.str)
		}
	}
}

func TestParseRangeErrors(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{"", "empty address range: write a CIDR (10.0.0.0/24), a range (10.0.0.10-10.0.0.20) or an address"},
		{"   ", "empty address range: write a CIDR (10.0.0.0/24), a range (10.0.0.10-10.0.0.20) or an address"},
		{"10.0.0.9-10.0.0.1", "10.0.0.9-10.0.0.1: first address is after last"},
		{"10.0.0.1-2001:db8::1", "10.0.0.1-2001:db8::1: first and last address are of different families (IPv4 and IPv6)"},
		{"10.0.0.5/24", "10.0.0.5/24: 10.0.0.5 is not the network address of a /24; write 10.0.0.0/24, or the range 10.0.0.5-10.0.0.255"},
		{"2001:db8::1/64", "2001:db8::1/64: 2001:db8::1 is not the network address of a /64; write 2001:db8::/64, or the range 2001:db8::1-2001:db8::ffff:ffff:ffff:ffff"},
		{"10.0.0.0/33", "10.0.0.0/33: prefix length 33 is out of range for IPv4 (0-32)"},
		{"2001:db8::/129", "2001:db8::/129: prefix length 129 is out of range for IPv6 (0-128)"},
		{"10.0.0.0/", `10.0.0.0/: prefix length "" is not a number`},
		{"10.0.0.0/x", `10.0.0.0/x: prefix length "x" is not a number`},
		{"10.0.0.0/+8", `10.0.0.0/+8: prefix length "+8" is not a number`},
		{"10.0.0.0/08", `10.0.0.0/08: prefix length "08" has a leading zero`},
		{"10.0.0.300", `10.0.0.300: "10.0.0.300" is not an IP address`},
		{"010.0.0.1", `010.0.0.1: "010.0.0.1" is not an IP address`},
		{"pool", `pool: "pool" is not an IP address`},
		{"10.0.0.1-", "10.0.0.1-: a range is written first-last, for example 10.0.0.10-10.0.0.20"},
		{"-10.0.0.1", "-10.0.0.1: a range is written first-last, for example 10.0.0.10-10.0.0.20"},
		{"10.0.0.1-10.0.0.2-10.0.0.3", "10.0.0.1-10.0.0.2-10.0.0.3: a range is written first-last, for example 10.0.0.10-10.0.0.20"},
		{"10.0.0.0/24-10.0.1.0", "10.0.0.0/24-10.0.1.0: write either a CIDR or a first-last range, not both"},
		{"fe80::1%eth0", "fe80::1%eth0: fe80::1%eth0 has a zone (%eth0); pool addresses cannot be scoped to an interface"},
		{"fe80::%eth0/64", "fe80::%eth0/64: fe80::%eth0 has a zone (%eth0); pool addresses cannot be scoped to an interface"},
		{"::ffff:10.0.0.1", "::ffff:10.0.0.1: ::ffff:10.0.0.1 is an IPv4-mapped IPv6 address; write the IPv4 address 10.0.0.1 instead"},
		{"::ffff:10.0.0.0/120", "::ffff:10.0.0.0/120: ::ffff:10.0.0.0 is an IPv4-mapped IPv6 address; write the IPv4 address 10.0.0.0 instead"},
		{"::/0", "::/0: the range includes IPv4-mapped IPv6 addresses (::ffff:0:0/96), which cannot be LoadBalancer IPs"},
		{"::/80", "::/80: the range includes IPv4-mapped IPv6 addresses (::ffff:0:0/96), which cannot be LoadBalancer IPs"},
		{"::fffe:0:0-::1:0:0:0", "::fffe:0:0-::1:0:0:0: the range includes IPv4-mapped IPv6 addresses (::ffff:0:0/96), which cannot be LoadBalancer IPs"},
		{"10.0.0.1-::ffff:10.0.0.9", "10.0.0.1-::ffff:10.0.0.9: ::ffff:10.0.0.9 is an IPv4-mapped IPv6 address; write the IPv4 address 10.0.0.9 instead"},
	} {
		r, err := ParseRange(tc.in)
		if err == nil {
			t.Errorf("ParseRange(%q) = %v, want error %q", tc.in, r, tc.msg)
			continue
		}
		if err.Error() != tc.msg {
			t.Errorf("ParseRange(%q) error\n got: %s\nwant: %s", tc.in, err, tc.msg)
		}
	}
}

func mustRange(t testing.TB, s string) Range {
	t.Helper()
	r, err := ParseRange(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRangeMethods(t *testing.T) {
	r := mustRange(t, "10.0.0.8-10.0.0.15")
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"10.0.0.7", false}, {"10.0.0.8", true}, {"10.0.0.15", true}, {"10.0.0.16", false},
		{"::ffff:10.0.0.9", false}, {"2001:db8::9", false},
	} {
		if got := r.Contains(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("%v.Contains(%s) = %v, want %v", r, tc.ip, got, tc.want)
		}
	}
	if r.Contains(netip.Addr{}) {
		t.Errorf("%v contains the zero Addr", r)
	}
	for _, tc := range []struct {
		o    string
		want bool
	}{
		{"10.0.0.0-10.0.0.7", false}, {"10.0.0.0-10.0.0.8", true}, {"10.0.0.15/32", true},
		{"10.0.0.16/28", false}, {"10.0.0.0/16", true}, {"2001:db8::/32", false},
	} {
		o := mustRange(t, tc.o)
		if got := r.Overlaps(o); got != tc.want {
			t.Errorf("%v.Overlaps(%v) = %v, want %v", r, o, got, tc.want)
		}
		if got := o.Overlaps(r); got != tc.want {
			t.Errorf("%v.Overlaps(%v) = %v, want %v", o, r, got, tc.want)
		}
	}
	if f := r.Family(); f != IPv4 || f.String() != "IPv4" {
		t.Errorf("Family() = %v", f)
	}
	if f := mustRange(t, "2001:db8::/64").Family(); f != IPv6 || f.String() != "IPv6" {
		t.Errorf("Family() = %v", f)
	}
	if f := FamilyOf(netip.Addr{}); f != 0 {
		t.Errorf("FamilyOf(zero) = %v", f)
	}
	if n := (Range{}).Size(); n != 0 {
		t.Errorf("zero Range has size %d", n)
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"10.0.0.0/24", "10.0.0.1-10.0.0.9", "10.0.0.9 - 10.0.0.1", "2001:db8::/64", "::/0",
		"0.0.0.0/0", "10.0.0.5/24", "fe80::1%eth0", "::ffff:1.2.3.4", "1.2.3.4", "2001:db8::-2001:db8::1",
		"10.0.0.0/08", "1.2.3.4/32", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if err.Error() == "" || strings.Contains(err.Error(), "netip") {
				t.Fatalf("ParseRange(%q): unhelpful error %q", s, err)
			}
			return
		}
		if why := r.invalid(); why != "" {
			t.Fatalf("ParseRange(%q) = %v..%v: %s", s, r.First, r.Last, why)
		}
		if !r.Contains(r.First) || !r.Contains(r.Last) || r.Size() == 0 || !r.Overlaps(r) {
			t.Fatalf("ParseRange(%q) = %v..%v breaks Contains/Size/Overlaps", s, r.First, r.Last)
		}
		back, err := ParseRange(r.String())
		if err != nil {
			t.Fatalf("ParseRange(%q).String() = %q does not parse: %v", s, r.String(), err)
		}
		if back != r {
			t.Fatalf("ParseRange(%q) = %v..%v, but %q parses to %v..%v", s, r.First, r.Last, r.String(), back.First, back.Last)
		}
	})
}
