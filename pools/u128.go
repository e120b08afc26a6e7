package pools

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
)

// u128 is an unsigned 128-bit integer: an address (IPv4 in the low 32 bits)
// or a position inside a pool's address space.
type u128 struct{ hi, lo uint64 }

var maxU128 = u128{math.MaxUint64, math.MaxUint64}

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func fromU128(f Family, v u128) netip.Addr {
	if f == IPv4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(v.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], v.hi)
	binary.BigEndian.PutUint64(b[8:], v.lo)
	return netip.AddrFrom16(b)
}

func (a u128) cmp(b u128) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

// sub returns a-b; a must not be less than b.
func (a u128) sub(b u128) u128 {
	lo, br := bits.Sub64(a.lo, b.lo, 0)
	hi, _ := bits.Sub64(a.hi, b.hi, br)
	return u128{hi, lo}
}

// inc and dec wrap around; callers check the bounds that matter to them.
func (a u128) inc() u128 {
	lo, c := bits.Add64(a.lo, 1, 0)
	return u128{a.hi + c, lo}
}

func (a u128) dec() u128 {
	lo, br := bits.Sub64(a.lo, 1, 0)
	return u128{a.hi - br, lo}
}

func (a u128) not() u128       { return u128{^a.hi, ^a.lo} }
func (a u128) and(b u128) u128 { return u128{a.hi & b.hi, a.lo & b.lo} }
func (a u128) or(b u128) u128  { return u128{a.hi | b.hi, a.lo | b.lo} }

func (a u128) shr(n uint) u128 {
	switch {
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{0, a.hi >> (n - 64)}
	case n == 0:
		return a
	}
	return u128{a.hi >> n, a.lo>>n | a.hi<<(64-n)}
}

// count is a number of positions, up to 2^128 and a little more: c*2^128 + v.
type count struct {
	c uint64
	v u128
}

var one = count{v: u128{0, 1}}

// sizeOf returns the number of positions lo..hi.
func sizeOf(lo, hi u128) count {
	d := hi.sub(lo)
	if d == maxU128 {
		return count{c: 1}
	}
	return count{v: d.inc()}
}

func (a count) plus(b count) count {
	lo, c := bits.Add64(a.v.lo, b.v.lo, 0)
	hi, c := bits.Add64(a.v.hi, b.v.hi, c)
	return count{a.c + b.c + c, u128{hi, lo}}
}

// minus returns a-b; a must not be less than b.
func (a count) minus(b count) count {
	lo, br := bits.Sub64(a.v.lo, b.v.lo, 0)
	hi, br := bits.Sub64(a.v.hi, b.v.hi, br)
	return count{a.c - b.c - br, u128{hi, lo}}
}

// sat returns a as a uint64, saturating at math.MaxUint64.
func (a count) sat() uint64 {
	if a.c != 0 || a.v.hi != 0 {
		return math.MaxUint64
	}
	return a.v.lo
}
