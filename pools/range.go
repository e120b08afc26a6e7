package pools

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// Family is an IP address family.
type Family int

// The address families. The zero Family is neither.
const (
	IPv4 Family = iota + 1
	IPv6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return "Family(" + strconv.Itoa(int(f)) + ")"
}

// FamilyOf returns the family of ip: IPv4 for a 4-byte address, IPv6 for any
// 16-byte one (IPv4-mapped IPv6 addresses included), 0 for the zero Addr.
func FamilyOf(ip netip.Addr) Family {
	switch {
	case ip.Is4():
		return IPv4
	case ip.Is6():
		return IPv6
	}
	return 0
}

// famIndex maps a valid Family to 0 or 1, for arrays indexed by family.
func famIndex(f Family) int { return int(f) - 1 }

// Range is an inclusive range of addresses of one family, First <= Last.
type Range struct {
	First, Last netip.Addr
}

// ParseRange parses an address range as written in an AddressPool:
//
//	10.0.0.0/24            a network in CIDR notation (it must be the network address)
//	10.0.0.10-10.0.0.20    a first-last range; spaces around '-' are allowed
//	10.0.0.7               a single address
//
// and the same forms for IPv6. Zoned addresses and IPv4-mapped IPv6 addresses
// are refused, and so are ranges that include any of ::ffff:0:0/96. Errors
// are written for the person who wrote the pool.
func ParseRange(s string) (Range, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return Range{}, errors.New("empty address range: write a CIDR (10.0.0.0/24), a range (10.0.0.10-10.0.0.20) or an address")
	}
	fail := func(format string, args ...any) (Range, error) {
		return Range{}, fmt.Errorf("%s: %s", in, fmt.Sprintf(format, args...))
	}
	if first, last, ok := strings.Cut(in, "-"); ok {
		first, last = strings.TrimSpace(first), strings.TrimSpace(last)
		if first == "" || last == "" || strings.Contains(last, "-") {
			return fail("a range is written first-last, for example 10.0.0.10-10.0.0.20")
		}
		if strings.Contains(first, "/") || strings.Contains(last, "/") {
			return fail("write either a CIDR or a first-last range, not both")
		}
		a, err := parseAddr(first)
		if err != nil {
			return fail("%v", err)
		}
		b, err := parseAddr(last)
		if err != nil {
			return fail("%v", err)
		}
		if FamilyOf(a) != FamilyOf(b) {
			return fail("first and last address are of different families (%v and %v)", FamilyOf(a), FamilyOf(b))
		}
		if b.Less(a) {
			return fail("first address is after last")
		}
		return checkMapped(in, Range{a, b})
	}
	if addr, bitsText, ok := strings.Cut(in, "/"); ok {
		a, err := parseAddr(addr)
		if err != nil {
			return fail("%v", err)
		}
		bits, err := strconv.Atoi(bitsText)
		if err != nil || bitsText == "" || bitsText[0] == '+' || bitsText[0] == '-' {
			return fail("prefix length %q is not a number", bitsText)
		}
		if bits < 0 || bits > a.BitLen() {
			return fail("prefix length %d is out of range for %v (0-%d)", bits, FamilyOf(a), a.BitLen())
		}
		if len(bitsText) > 1 && bitsText[0] == '0' {
			return fail("prefix length %q has a leading zero", bitsText)
		}
		p := netip.PrefixFrom(a, bits)
		if m := p.Masked(); m.Addr() != a {
			r := prefixRange(p)
			return fail("%v is not the network address of a /%d; write %v, or the range %v-%v", a, bits, m, a, r.Last)
		}
		return checkMapped(in, prefixRange(p))
	}
	a, err := parseAddr(in)
	if err != nil {
		return fail("%v", err)
	}
	return Range{a, a}, nil
}

// mapped is the block of IPv4-mapped IPv6 addresses.
var mapped = Range{netip.MustParseAddr("::ffff:0.0.0.0"), netip.MustParseAddr("::ffff:255.255.255.255")}

// checkMapped refuses a range that includes IPv4-mapped IPv6 addresses: they
// are IPv4 addresses in disguise and no network routes them as IPv6.
func checkMapped(in string, r Range) (Range, error) {
	if r.Overlaps(mapped) {
		return Range{}, fmt.Errorf("%s: the range includes IPv4-mapped IPv6 addresses (::ffff:0:0/96), which cannot be LoadBalancer IPs", in)
	}
	return r, nil
}

// parseAddr parses one address, refusing zones and IPv4-mapped IPv6.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%v has a zone (%%%s); pool addresses cannot be scoped to an interface", a, a.Zone())
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%v is an IPv4-mapped IPv6 address; write the IPv4 address %v instead", a, a.Unmap())
	}
	return a, nil
}

// prefixRange returns the addresses of the masked prefix p.
func prefixRange(p netip.Prefix) Range {
	p = p.Masked()
	first := p.Addr()
	host := u128{}.not().shr(uint(p.Bits() + 128 - first.BitLen()))
	if first.Is4() {
		host = host.and(u128{0, math.MaxUint32})
	}
	return Range{first, fromU128(FamilyOf(first), toU128(first).or(host))}
}

// invalid reports why r is not a usable range, or "" if it is.
func (r Range) invalid() string {
	switch {
	case !r.First.IsValid() || !r.Last.IsValid():
		return "the range is empty"
	case r.First.Zone() != "" || r.Last.Zone() != "":
		return "zoned addresses are not allowed"
	case r.Overlaps(mapped):
		return "IPv4-mapped IPv6 addresses (::ffff:0:0/96) are not allowed"
	case FamilyOf(r.First) != FamilyOf(r.Last):
		return "first and last address are of different families"
	case r.Last.Less(r.First):
		return "first address is after last"
	}
	return ""
}

// Family returns the family of the range's addresses.
func (r Range) Family() Family { return FamilyOf(r.First) }

// Contains reports whether ip lies in r. An address of the other family,
// including an IPv4-mapped IPv6 address for an IPv4 range, is never contained.
func (r Range) Contains(ip netip.Addr) bool {
	return ip.IsValid() && ip.Zone() == "" && FamilyOf(ip) == r.Family() &&
		r.First.Compare(ip) <= 0 && ip.Compare(r.Last) <= 0
}

// Overlaps reports whether r and o share at least one address.
func (r Range) Overlaps(o Range) bool {
	return r.Family() == o.Family() && r.First.IsValid() && o.First.IsValid() &&
		r.First.Compare(o.Last) <= 0 && o.First.Compare(r.Last) <= 0
}

// Size returns the number of addresses in r, saturating at math.MaxUint64.
func (r Range) Size() uint64 {
	if r.invalid() != "" {
		return 0
	}
	return sizeOf(toU128(r.First), toU128(r.Last)).sat()
}

// String writes r the shortest way ParseRange reads back: an address, a CIDR
// when r is exactly one network, or first-last.
func (r Range) String() string {
	if !r.First.IsValid() {
		return "<empty range>"
	}
	if r.First == r.Last {
		return r.First.String()
	}
	if p, ok := r.prefix(); ok {
		return p.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// prefix returns the network r is exactly, if it is one.
func (r Range) prefix() (netip.Prefix, bool) {
	if r.invalid() != "" {
		return netip.Prefix{}, false
	}
	for bits := 0; bits <= r.First.BitLen(); bits++ {
		p := netip.PrefixFrom(r.First, bits)
		if p.Masked().Addr() != r.First {
			continue
		}
		if prefixRange(p).Last == r.Last {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
