package pools

import (
	"math/bits"
	"math/rand/v2"
	"testing"
)

// checkFreeSet verifies the treap's order, heap property, interval shape and
// count, and returns the intervals in order.
func checkFreeSet(t testing.TB, fs *freeSet) []span {
	t.Helper()
	var out []span
	var walk func(n int32, lo, hi *u128) // bounds on the keys of the subtree
	walk = func(n int32, lo, hi *u128) {
		if n == 0 {
			return
		}
		nd := fs.nodes[n]
		if lo != nil && nd.lo.less(*lo) || hi != nil && hi.less(nd.lo) {
			t.Fatalf("node %d [%v] is out of order", n, nd.lo)
		}
		for _, c := range []int32{nd.left, nd.right} {
			if c != 0 && fs.nodes[c].prio > nd.prio {
				t.Fatalf("node %d breaks the heap order", c)
			}
		}
		walk(nd.left, lo, &nd.lo)
		out = append(out, span{nd.lo, nd.hi})
		walk(nd.right, &nd.lo, hi)
	}
	walk(fs.root, nil, nil)
	var n count
	for i, s := range out {
		if s.hi.less(s.lo) {
			t.Fatalf("interval %d is reversed: %v", i, s)
		}
		if i > 0 && !out[i-1].hi.inc().less(s.lo) {
			t.Fatalf("intervals %v and %v overlap or touch", out[i-1], s)
		}
		n = n.plus(sizeOf(s.lo, s.hi))
	}
	if n != fs.count {
		t.Fatalf("count %v, intervals hold %v", fs.count, n)
	}
	return out
}

func u(v uint64) u128 { return u128{0, v} }

// TestFreeSetModel drives a freeSet and a plain map over the same small
// universe and compares them after every step.
func TestFreeSetModel(t *testing.T) {
	const size = 300
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		var fs freeSet
		model := map[uint64]bool{}
		fs.add(u(0), u(size-1))
		for i := range uint64(size) {
			model[i] = true
		}
		for step := 0; step < 4000; step++ {
			p := rng.Uint64N(size)
			switch op := rng.IntN(10); {
			case op < 4:
				if got := fs.take(u(p)); got != model[p] {
					t.Fatalf("seed %d step %d: take(%d) = %v, want %v", seed, step, p, got, model[p])
				}
				model[p] = false
			case op < 8:
				if got := fs.put(u(p)); got == model[p] {
					t.Fatalf("seed %d step %d: put(%d) = %v, free was %v", seed, step, p, got, model[p])
				}
				model[p] = true
			case op == 8:
				hi := min(p+rng.Uint64N(20), size-1)
				var held []uint64
				fs.cut(u(p), u(hi), func(lo, hi u128) {
					for x := lo.lo; x <= hi.lo; x++ {
						held = append(held, x)
					}
				})
				var want []uint64
				for x := p; x <= hi; x++ {
					if !model[x] {
						want = append(want, x)
					}
					model[x] = false
				}
				if len(held) != len(want) {
					t.Fatalf("seed %d step %d: cut(%d, %d) reported %v held, want %v", seed, step, p, hi, held, want)
				}
				for i := range held {
					if held[i] != want[i] {
						t.Fatalf("seed %d step %d: cut(%d, %d) reported %v held, want %v", seed, step, p, hi, held, want)
					}
				}
			default:
				hi := min(p+rng.Uint64N(5), size-1)
				clear := true
				for x := p; x <= hi; x++ {
					clear = clear && !model[x]
				}
				if got := fs.add(u(p), u(hi)); got != clear {
					t.Fatalf("seed %d step %d: add(%d, %d) = %v, want %v", seed, step, p, hi, got, clear)
				}
				if clear {
					for x := p; x <= hi; x++ {
						model[x] = true
					}
				}
			}
			spans := checkFreeSet(t, &fs)
			var free []uint64
			for _, s := range spans {
				for x := s.lo.lo; x <= s.hi.lo; x++ {
					free = append(free, x)
				}
			}
			n := 0
			for x := range uint64(size) {
				if model[x] {
					if n >= len(free) || free[n] != x {
						t.Fatalf("seed %d step %d: free set %v differs from the model at %d", seed, step, spans, x)
					}
					n++
				}
			}
			if n != len(free) {
				t.Fatalf("seed %d step %d: free set has %d positions, model %d", seed, step, len(free), n)
			}
			low, ok := fs.lowest()
			if ok != (n > 0) || ok && low.lo != free[0] {
				t.Fatalf("seed %d step %d: lowest() = %v %v", seed, step, low, ok)
			}
			except, ok := fs.lowestExcept(u(free0(free)))
			if want, wantOK := second(free); ok != wantOK || ok && except.lo != want {
				t.Fatalf("seed %d step %d: lowestExcept = %v %v, want %v %v", seed, step, except, ok, want, wantOK)
			}
		}
	}
}

func free0(free []uint64) uint64 {
	if len(free) == 0 {
		return 0
	}
	return free[0]
}

func second(free []uint64) (uint64, bool) {
	if len(free) < 2 {
		return 0, false
	}
	return free[1], true
}

// TestFreeSetEdges covers the ends of the 128-bit space, where inc and dec
// wrap.
func TestFreeSetEdges(t *testing.T) {
	var fs freeSet
	fs.add(u128{}, maxU128)
	if fs.count != (count{c: 1}) {
		t.Fatalf("count of the whole space = %v", fs.count)
	}
	if !fs.take(maxU128) || !fs.take(u128{}) {
		t.Fatal("cannot take the ends")
	}
	if fs.contains(maxU128) || fs.contains(u128{}) || !fs.contains(u128{0, 1}) {
		t.Fatal("contains is wrong at the ends")
	}
	if !fs.put(maxU128) || !fs.put(u128{}) || fs.put(u128{}) {
		t.Fatal("cannot put the ends back")
	}
	if spans := checkFreeSet(t, &fs); len(spans) != 1 {
		t.Fatalf("the ends did not merge back: %v", spans)
	}
	var held []span
	fs.cut(u128{1, 0}, maxU128, func(lo, hi u128) { held = append(held, span{lo, hi}) })
	if len(held) != 0 || len(checkFreeSet(t, &fs)) != 1 {
		t.Fatalf("cut of a free tail reported %v", held)
	}
}

func TestFreeSetReusesNodes(t *testing.T) {
	var fs freeSet
	fs.add(u(0), u(1000))
	for i := uint64(1); i < 1000; i += 2 {
		fs.take(u(i))
	}
	n := len(fs.nodes)
	for i := uint64(1); i < 1000; i += 2 {
		fs.put(u(i))
	}
	for i := uint64(1); i < 1000; i += 2 {
		fs.take(u(i))
	}
	if len(fs.nodes) != n {
		t.Fatalf("node slice grew from %d to %d instead of reusing nodes", n, len(fs.nodes))
	}
	checkFreeSet(t, &fs)
}

// depth returns the number of nodes on the longest path from the root.
func (t *freeSet) depth() int {
	var walk func(n int32) int
	walk = func(n int32) int {
		if n == 0 {
			return 0
		}
		return 1 + max(walk(t.nodes[n].left), walk(t.nodes[n].right))
	}
	return walk(t.root)
}

// TestFreeSetStaysShallow takes addresses at random until only 1% of a /16
// is free, and the same count scattered in a /64: every operation walks at
// most a few root-to-leaf paths, so the depth bounds its cost.
func TestFreeSetStaysShallow(t *testing.T) {
	for _, tc := range []struct {
		name string
		last uint64
	}{{"/16", 1<<16 - 1}, {"/64", 1<<64 - 1}} {
		var fs freeSet
		fs.add(u(0), u(tc.last))
		rng := rand.New(rand.NewPCG(3, 3))
		for taken := 0; taken < 64880; {
			if fs.take(u(rng.Uint64N(tc.last))) {
				taken++
			}
		}
		n := len(checkFreeSet(t, &fs))
		limit := 4 * bits.Len(uint(n))
		if d := fs.depth(); d > limit {
			t.Errorf("%s: %d intervals, depth %d > %d", tc.name, n, d, limit)
		} else {
			t.Logf("%s: %d intervals, depth %d", tc.name, n, d)
		}
	}
}
