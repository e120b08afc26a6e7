package member

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Interfaces are a node's LAN-facing interfaces and their prefixes, by
// interface name. Owner choice needs them for every node ("has an
// interface on the address's subnet", "has one of the advertisement's
// interfaces") and only the node itself knows them, so they travel in
// memberlist's node metadata.
type Interfaces map[string][]netip.Prefix

// The metadata is limited to 512 bytes. Layout: a version byte, then per
// interface its name's length, the name, its prefix count, and per prefix
// its length in bits (high bit set for IPv6) and 4 or 16 address bytes.
const (
	metaVersion = 2
	metaLimit   = 512
	v6Flag      = 0x80
)

// EncodeInterfaces encodes ifaces for the node metadata, in name order.
// Interfaces that do not fit in the limit are left out and named in
// dropped: a node with that many is better described in part than not at
// all.
func EncodeInterfaces(ifaces Interfaces) (meta []byte, dropped []string) {
	names := make([]string, 0, len(ifaces))
	for name := range ifaces {
		names = append(names, name)
	}
	slices.Sort(names)
	out := []byte{metaVersion}
	for _, name := range names {
		prefixes := ifaces[name]
		if len(name) == 0 || len(name) > 255 || len(prefixes) > 255 {
			dropped = append(dropped, name)
			continue
		}
		rec := []byte{byte(len(name))}
		rec = append(rec, name...)
		rec = append(rec, byte(len(prefixes)))
		for _, p := range prefixes {
			p = p.Masked()
			if p.Addr().Is4() {
				b := p.Addr().As4()
				rec = append(append(rec, byte(p.Bits())), b[:]...)
			} else {
				b := p.Addr().As16()
				rec = append(append(rec, byte(p.Bits())|v6Flag), b[:]...)
			}
		}
		if len(out)+len(rec) > metaLimit {
			dropped = append(dropped, name)
			continue
		}
		out = append(out, rec...)
	}
	return out, dropped
}

// DecodeInterfaces reverses EncodeInterfaces. Empty metadata is no
// interfaces.
func DecodeInterfaces(b []byte) (Interfaces, error) {
	out := Interfaces{}
	if len(b) == 0 {
		return out, nil
	}
	if b[0] != metaVersion {
		return out, fmt.Errorf("metadata version %d, want %d", b[0], metaVersion)
	}
	bad := errors.New("truncated or malformed interface list")
	for b = b[1:]; len(b) > 0; {
		n := int(b[0])
		if n == 0 || len(b) < 2+n {
			return out, bad
		}
		name := string(b[1 : 1+n])
		count := int(b[1+n])
		b = b[2+n:]
		prefixes := []netip.Prefix{}
		for range count {
			if len(b) == 0 {
				return out, bad
			}
			bits, v6 := int(b[0]&^v6Flag), b[0]&v6Flag != 0
			b = b[1:]
			var addr netip.Addr
			switch {
			case !v6 && len(b) >= 4 && bits <= 32:
				addr, b = netip.AddrFrom4([4]byte(b[:4])), b[4:]
			case v6 && len(b) >= 16 && bits <= 128:
				addr, b = netip.AddrFrom16([16]byte(b[:16])), b[16:]
			default:
				return out, bad
			}
			prefixes = append(prefixes, netip.PrefixFrom(addr, bits).Masked()) // subnets, as encoded
		}
		out[name] = prefixes
	}
	return out, nil
}

// String lists the interfaces for logs: "eth0=192.0.2.0/24,2001:db8::/64".
func (ifs Interfaces) String() string {
	names := make([]string, 0, len(ifs))
	for n := range ifs {
		names = append(names, n)
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names {
		var ps []string
		for _, p := range ifs[n] {
			ps = append(ps, p.String())
		}
		parts = append(parts, n+"="+strings.Join(ps, ","))
	}
	return strings.Join(parts, " ")
}
