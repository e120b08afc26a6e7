package member

import (
	"errors"
	"fmt"
	"net/netip"
)

// Subnets travel in memberlist's node metadata, which is limited to 512
// bytes: one version byte, then per prefix its length in bits and 4 or 16
// address bytes, the family told by the high bit of the length byte.
const (
	metaVersion = 1
	metaLimit   = 512
	v6Flag      = 0x80
)

// EncodeSubnets encodes prefixes for the node metadata. It fails when they
// do not fit; a node with that many subnets must be given fewer
// (L2Advertisement interfaces do not change what is gossiped).
func EncodeSubnets(prefixes []netip.Prefix) ([]byte, error) {
	out := []byte{metaVersion}
	for _, p := range prefixes {
		p = p.Masked()
		if p.Addr().Is4() {
			b := p.Addr().As4()
			out = append(out, byte(p.Bits()))
			out = append(out, b[:]...)
		} else {
			b := p.Addr().As16()
			out = append(out, byte(p.Bits())|v6Flag)
			out = append(out, b[:]...)
		}
	}
	if len(out) > metaLimit {
		return nil, fmt.Errorf("%d subnets take %d bytes, more than the %d memberlist allows", len(prefixes), len(out), metaLimit)
	}
	return out, nil
}

// DecodeSubnets reverses EncodeSubnets. Empty metadata is no subnets.
func DecodeSubnets(b []byte) ([]netip.Prefix, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != metaVersion {
		return nil, fmt.Errorf("metadata version %d, want %d", b[0], metaVersion)
	}
	var out []netip.Prefix
	for b = b[1:]; len(b) > 0; {
		bits, v6 := int(b[0]&^v6Flag), b[0]&v6Flag != 0
		b = b[1:]
		var addr netip.Addr
		switch {
		case !v6 && len(b) >= 4 && bits <= 32:
			addr, b = netip.AddrFrom4([4]byte(b[:4])), b[4:]
		case v6 && len(b) >= 16 && bits <= 128:
			addr, b = netip.AddrFrom16([16]byte(b[:16])), b[16:]
		default:
			return out, errors.New("truncated or malformed subnet")
		}
		out = append(out, netip.PrefixFrom(addr, bits))
	}
	return out, nil
}
