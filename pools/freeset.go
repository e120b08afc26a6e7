package pools

// freeSet is a set of positions kept as disjoint, non-adjacent inclusive
// intervals in a treap ordered by the intervals' first position. Finding the
// lowest free position, taking one and giving one back cost O(log n) in the
// number of intervals, never in the number of positions, so a /64 is as cheap
// as a /24.
//
// Nodes live in one slice and point at each other by index (0 is "none"), so
// the set is a few flat allocations the garbage collector need not trace, and
// deleted nodes are reused.
type freeSet struct {
	nodes []fnode
	root  int32
	spare int32 // first reusable node, chained through left
	count count // free positions
	seed  uint64
}

type fnode struct {
	lo, hi      u128
	left, right int32
	prio        uint32
}

func (t *freeSet) newNode(lo, hi u128) int32 {
	var i int32
	if t.spare != 0 {
		i = t.spare
		t.spare = t.nodes[i].left
	} else {
		if len(t.nodes) == 0 {
			t.nodes = append(t.nodes, fnode{}) // index 0 means none
		}
		t.nodes = append(t.nodes, fnode{})
		i = int32(len(t.nodes) - 1)
	}
	// A fixed-seed LCG is enough: priorities only need to look random to the
	// keys, and a deterministic tree keeps runs reproducible.
	t.seed = t.seed*6364136223846793005 + 1442695040888963407
	t.nodes[i] = fnode{lo: lo, hi: hi, prio: uint32(t.seed >> 32)}
	return i
}

func (t *freeSet) freeNode(i int32) {
	t.nodes[i] = fnode{left: t.spare}
	t.spare = i
}

// floor returns the interval with the greatest lo <= p, or 0.
func (t *freeSet) floor(p u128) int32 {
	var best int32
	for i := t.root; i != 0; {
		if n := &t.nodes[i]; p.less(n.lo) {
			i = n.left
		} else {
			best, i = i, n.right
		}
	}
	return best
}

// above returns the interval with the smallest lo > p, or 0.
func (t *freeSet) above(p u128) int32 {
	var best int32
	for i := t.root; i != 0; {
		if n := &t.nodes[i]; p.less(n.lo) {
			best, i = i, n.left
		} else {
			i = n.right
		}
	}
	return best
}

func (t *freeSet) first() int32 {
	i := t.root
	for i != 0 && t.nodes[i].left != 0 {
		i = t.nodes[i].left
	}
	return i
}

func (t *freeSet) insert(i int32) { t.root = t.ins(t.root, i) }

func (t *freeSet) ins(n, i int32) int32 {
	if n == 0 {
		return i
	}
	if t.nodes[i].prio > t.nodes[n].prio {
		l, r := t.split(n, t.nodes[i].lo)
		t.nodes[i].left, t.nodes[i].right = l, r
		return i
	}
	if t.nodes[i].lo.less(t.nodes[n].lo) {
		t.nodes[n].left = t.ins(t.nodes[n].left, i)
	} else {
		t.nodes[n].right = t.ins(t.nodes[n].right, i)
	}
	return n
}

// split cuts subtree n into the intervals starting before k and the rest.
func (t *freeSet) split(n int32, k u128) (int32, int32) {
	if n == 0 {
		return 0, 0
	}
	if t.nodes[n].lo.less(k) {
		l, r := t.split(t.nodes[n].right, k)
		t.nodes[n].right = l
		return n, r
	}
	l, r := t.split(t.nodes[n].left, k)
	t.nodes[n].left = r
	return l, n
}

// join joins two subtrees; every interval of a comes before every one of b.
func (t *freeSet) join(a, b int32) int32 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	case t.nodes[a].prio > t.nodes[b].prio:
		t.nodes[a].right = t.join(t.nodes[a].right, b)
		return a
	}
	t.nodes[b].left = t.join(a, t.nodes[b].left)
	return b
}

// remove deletes the interval starting at k.
func (t *freeSet) remove(k u128) { t.root = t.del(t.root, k) }

func (t *freeSet) del(n int32, k u128) int32 {
	if n == 0 {
		return 0
	}
	switch c := k.cmp(t.nodes[n].lo); {
	case c < 0:
		t.nodes[n].left = t.del(t.nodes[n].left, k)
	case c > 0:
		t.nodes[n].right = t.del(t.nodes[n].right, k)
	default:
		j := t.join(t.nodes[n].left, t.nodes[n].right)
		t.freeNode(n)
		return j
	}
	return n
}

// contains reports whether p is free.
func (t *freeSet) contains(p u128) bool {
	i := t.floor(p)
	return i != 0 && !t.nodes[i].hi.less(p)
}

// lowest returns the lowest free position.
func (t *freeSet) lowest() (u128, bool) {
	i := t.first()
	if i == 0 {
		return u128{}, false
	}
	return t.nodes[i].lo, true
}

// lowestExcept returns the lowest free position other than x.
func (t *freeSet) lowestExcept(x u128) (u128, bool) {
	i := t.first()
	if i == 0 {
		return u128{}, false
	}
	n := t.nodes[i]
	switch {
	case n.lo != x:
		return n.lo, true
	case n.hi != x:
		return x.inc(), true
	}
	if j := t.above(x); j != 0 {
		return t.nodes[j].lo, true
	}
	return u128{}, false
}

// take removes p from the set; it reports false if p was not free.
func (t *freeSet) take(p u128) bool {
	i := t.floor(p)
	if i == 0 || t.nodes[i].hi.less(p) {
		return false
	}
	n := &t.nodes[i]
	switch {
	case n.lo == p && n.hi == p:
		t.remove(p)
	case n.lo == p:
		n.lo = p.inc() // still between its neighbours: the order holds
	case n.hi == p:
		n.hi = p.dec()
	default:
		hi := n.hi
		n.hi = p.dec()
		t.insert(t.newNode(p.inc(), hi))
	}
	t.count = t.count.minus(one)
	return true
}

// put adds p back; it reports false if p was already free.
func (t *freeSet) put(p u128) bool { return t.add(p, p) }

// add adds the positions lo..hi, none of which may be free already (it
// reports false and changes nothing if lo or hi is), merging with the
// neighbouring intervals.
func (t *freeSet) add(lo, hi u128) bool {
	l := t.floor(hi)
	if l != 0 && !t.nodes[l].hi.less(lo) {
		return false
	}
	r := t.above(hi)
	joinL := l != 0 && t.nodes[l].hi.inc() == lo && lo != (u128{})
	joinR := r != 0 && hi.inc() == t.nodes[r].lo
	switch {
	case joinL && joinR:
		rhi := t.nodes[r].hi
		t.remove(t.nodes[r].lo)
		t.nodes[l].hi = rhi
	case joinL:
		t.nodes[l].hi = hi
	case joinR:
		t.nodes[r].lo = lo
	default:
		t.insert(t.newNode(lo, hi))
	}
	t.count = t.count.plus(sizeOf(lo, hi))
	return true
}

// cut removes every free position in lo..hi and calls held for each maximal
// run of positions in lo..hi that were not free.
func (t *freeSet) cut(lo, hi u128, held func(lo, hi u128)) {
	at := lo // positions before at are dealt with
	done := false
	i := t.floor(lo)
	if i == 0 || t.nodes[i].hi.less(lo) {
		i = t.above(lo)
	}
	for i != 0 && !done && !hi.less(t.nodes[i].lo) {
		n := t.nodes[i]
		if at.less(n.lo) {
			held(at, n.lo.dec())
		}
		cutLo, cutHi := n.lo, n.hi
		if cutLo.less(lo) {
			cutLo = lo
		}
		if hi.less(cutHi) {
			cutHi = hi
		}
		t.count = t.count.minus(sizeOf(cutLo, cutHi))
		switch {
		case n.lo.less(lo) && hi.less(n.hi): // the cut is inside this interval
			t.nodes[i].hi = lo.dec()
			t.insert(t.newNode(hi.inc(), n.hi))
		case n.lo.less(lo):
			t.nodes[i].hi = lo.dec()
		case hi.less(n.hi):
			t.nodes[i].lo = hi.inc()
		default:
			t.remove(n.lo)
		}
		if cutHi == hi {
			done = true
			break
		}
		at = cutHi.inc()
		i = t.above(cutHi)
	}
	if !done {
		held(at, hi)
	}
}
