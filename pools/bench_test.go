package pools

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// fill assigns n addresses of the prefix, chosen at random (fixed seed) among
// its first span addresses, so the free addresses are scattered in many
// intervals, the hard case for the free set.
func fill(b *testing.B, a *Allocator, prefix string, span uint64, n int) {
	b.Helper()
	p := netip.MustParsePrefix(prefix)
	fam := FamilyOf(p.Addr())
	base := toU128(p.Addr())
	rng := rand.New(rand.NewPCG(42, 42))
	taken := make(map[uint64]bool, n)
	s := Service{Key: "", Families: []Family{fam}}
	for i := 0; i < n; {
		off := rng.Uint64N(span)
		if taken[off] {
			continue
		}
		taken[off] = true
		s.Key = fmt.Sprintf("fill/%d", i)
		ip := fromU128(fam, u128{base.hi, base.lo + off})
		if _, err := a.Assign(s, []netip.Addr{ip}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkAllocate measures one Allocate and one Release of a new Service
// in a pool with some addresses held.
//
// A /64 cannot be filled, so its "50%" and "99%" hold as many addresses as
// those of the /16 (32,768 and 64,880), scattered over the whole /64; the
// held-addrs metric shows the count. tree-depth is the depth of the pool's
// free-interval treap, which bounds the work of each call.
func BenchmarkAllocate(b *testing.B) {
	for _, tc := range []struct {
		name   string
		prefix string
		span   uint64
		held   int
	}{
		{"v4-16/0%", "10.0.0.0/16", 1 << 16, 0},
		{"v4-16/50%", "10.0.0.0/16", 1 << 16, 32768},
		{"v4-16/99%", "10.0.0.0/16", 1 << 16, 64880},
		{"v6-64/0%", "2001:db8::/64", 1<<64 - 1, 0},
		{"v6-64/50%", "2001:db8::/64", 1<<64 - 1, 32768},
		{"v6-64/99%", "2001:db8::/64", 1<<64 - 1, 64880},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := Pool{Name: "p", AutoAssign: true, Ranges: []Range{prefixRange(netip.MustParsePrefix(tc.prefix))}}
			a := newAllocator(b, p)
			fill(b, a, tc.prefix, tc.span, tc.held)
			fam := p.Ranges[0].Family()
			keys := make([]string, 1024)
			for i := range keys {
				keys[i] = fmt.Sprintf("bench/s%d", i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s := Service{Key: keys[i%len(keys)], Families: []Family{fam}, Ports: []Port{{"TCP", 80}}}
				if _, err := a.Allocate(s); err != nil {
					b.Fatal(err)
				}
				a.Release(s.Key)
				i++
			}
			b.ReportMetric(float64(tc.held), "held-addrs")
			fs := &a.pools["p"].space(fam).free
			b.ReportMetric(float64(fs.depth()), "tree-depth")
		})
	}
}

// BenchmarkSetPools measures SetPools on a /16 pool with 60,000 addresses
// held (scattered) and a few small pools beside it. Each op applies one of
// two configurations in turn.
func BenchmarkSetPools(b *testing.B) {
	big := func(name string, ranges ...string) Pool {
		p := Pool{Name: name, AutoAssign: true, Created: t0}
		for _, r := range ranges {
			p.Ranges = append(p.Ranges, mustParse(r))
		}
		return p
	}
	others := func(prio int) []Pool {
		var out []Pool
		for i := range 10 {
			out = append(out, Pool{Name: fmt.Sprintf("small%d", i), AutoAssign: true, Priority: prio,
				Created: t0, Ranges: []Range{mustParse(fmt.Sprintf("192.168.%d.0/24", i))}})
		}
		return out
	}
	with := func(p Pool, prio int) []Pool { return append(others(prio), p) }
	for _, tc := range []struct {
		name string
		x, y []Pool
	}{
		// The same configuration again: a resync.
		{"resync", with(big("big", "10.0.0.0/16"), 0), with(big("big", "10.0.0.0/16"), 0)},
		// Other pools change priority.
		{"edit-others", with(big("big", "10.0.0.0/16"), 0), with(big("big", "10.0.0.0/16"), 1)},
		// The big pool is renamed back and forth.
		{"rename", with(big("big", "10.0.0.0/16"), 0), with(big("big2", "10.0.0.0/16"), 0)},
		// The big pool gains and loses a /24.
		{"grow", with(big("big", "10.0.0.0/16"), 0), with(big("big", "10.0.0.0/16", "10.1.0.0/24"), 0)},
		// The big pool loses its last /24 and gets it back: about 230
		// Services are orphaned and re-adopted each time.
		{"shrink", with(big("big", "10.0.0.0/16"), 0), with(big("big", "10.0.0.0-10.0.254.255"), 0)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a := newAllocator(b, tc.x...)
			fill(b, a, "10.0.0.0/16", 1<<16, 60000)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					a.SetPools(tc.y)
				} else {
					a.SetPools(tc.x)
				}
				i++
			}
		})
	}
}
