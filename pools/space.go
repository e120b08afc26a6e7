package pools

import (
	"net/netip"
	"slices"
)

// space is the addresses of one family in one usable pool.
//
// Addresses are handled as positions. Normally a position is the address
// itself. In an IPv4 space that avoids buggy addresses the positions skip
// every .0 and .255, so those addresses are simply not part of the space:
// nothing has to be excluded at build time or skipped at allocation time.
type space struct {
	fam      Family
	avoid    bool
	ranges   []Range // sorted, disjoint
	free     freeSet // positions nobody holds
	total    count   // positions in ranges
	assigned uint64  // positions somebody holds
	first    u128    // lowest position: the ingress address if the pool is the default
	empty    bool    // the ranges hold no position at all
	pool     *poolState
}

// pos returns the position of ip; ok is false when ip is an avoided address.
// ip must be of the space's family.
func (s *space) pos(ip netip.Addr) (p u128, ok bool) {
	v := toU128(ip)
	if !s.avoid {
		return v, true
	}
	o := v.lo & 0xff
	if o == 0 || o == 255 {
		return u128{}, false
	}
	return u128{0, v.lo>>8*254 + o - 1}, true
}

// addr returns the address at position p.
func (s *space) addr(p u128) netip.Addr {
	if s.avoid {
		p = u128{0, p.lo/254<<8 | (p.lo%254 + 1)}
	}
	return fromU128(s.fam, p)
}

// positions returns the positions of the addresses lo..hi; ok is false if
// there are none (a range of avoided addresses only).
func (s *space) positions(lo, hi u128) (plo, phi u128, ok bool) {
	if !s.avoid {
		return lo, hi, true
	}
	a, b := lo.lo, hi.lo // IPv4: 32 bits, so +2 cannot overflow
	switch a & 0xff {
	case 0:
		a++
	case 255:
		a += 2
	}
	switch b & 0xff {
	case 255:
		b--
	case 0:
		if b < 2 {
			return u128{}, u128{}, false
		}
		b -= 2
	}
	if a > b {
		return u128{}, u128{}, false
	}
	return u128{0, a>>8*254 + a&0xff - 1}, u128{0, b>>8*254 + b&0xff - 1}, true
}

// setRanges changes the space's ranges, keeping what is held where it still
// is in the space. Each address that was held and is no longer in the space
// is passed to displaced. New addresses come in free.
func (s *space) setRanges(ranges []Range, displaced func(netip.Addr)) {
	old := spansOf(s.ranges)
	now := spansOf(ranges)
	for _, sp := range subtractSpans(old, now) {
		plo, phi, ok := s.positions(sp.lo, sp.hi)
		if !ok {
			continue
		}
		s.total = s.total.minus(sizeOf(plo, phi))
		s.free.cut(plo, phi, func(lo, hi u128) {
			for p := lo; ; p = p.inc() {
				s.assigned--
				displaced(s.addr(p))
				if p == hi {
					break
				}
			}
		})
	}
	for _, sp := range subtractSpans(now, old) {
		plo, phi, ok := s.positions(sp.lo, sp.hi)
		if !ok {
			continue
		}
		s.total = s.total.plus(sizeOf(plo, phi))
		s.free.add(plo, phi)
	}
	s.ranges = ranges
	s.empty = true
	for _, r := range ranges {
		if lo, _, ok := s.positions(toU128(r.First), toU128(r.Last)); ok {
			s.first, s.empty = lo, false
			break
		}
	}
}

type span struct{ lo, hi u128 }

// spansOf turns sorted, disjoint ranges of one family into spans.
func spansOf(rs []Range) []span {
	out := make([]span, len(rs))
	for i, r := range rs {
		out[i] = span{toU128(r.First), toU128(r.Last)}
	}
	return out
}

// subtractSpans returns a minus b; both are sorted and disjoint.
func subtractSpans(a, b []span) []span {
	var out []span
	j := 0
	for _, s := range a {
		lo := s.lo
		for j < len(b) && b[j].hi.less(lo) {
			j++
		}
		cut := false
		for k := j; k < len(b) && !s.hi.less(b[k].lo); k++ {
			if lo.less(b[k].lo) {
				out = append(out, span{lo, b[k].lo.dec()})
			}
			if !b[k].hi.less(s.hi) {
				cut = true
				break
			}
			lo = b[k].hi.inc()
		}
		if !cut {
			out = append(out, span{lo, s.hi})
		}
	}
	return out
}

// sortRanges sorts ranges by family, then first address.
func sortRanges(rs []Range) {
	slices.SortFunc(rs, func(a, b Range) int { return a.First.Compare(b.First) })
}
