package pools

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Selector matches a set of labels. The controller builds it from a
// Kubernetes label selector. A nil Selector matches everything. It is called
// with the Allocator's lock held, so it must not call the Allocator.
type Selector func(labels map[string]string) bool

// Pool is an address pool as the allocator sees it.
type Pool struct {
	Name   string
	Ranges []Range // any mix of families; ranges may touch but not overlap

	// AutoAssign lets Services that ask for no pool and no IP get addresses
	// from this pool. Without it the pool serves only Services that name it
	// or one of its addresses.
	AutoAssign bool

	// AvoidBuggyIPs leaves out every IPv4 address ending in .0 or .255.
	AvoidBuggyIPs bool

	// Priority orders the auto-assign pools: a lower positive number is
	// tried first; 0 means unset, and unset pools come after all others.
	Priority int

	// The restrictions below apply to every Service using the pool, also
	// those that ask for it by name or by IP. An empty list restricts nothing.
	Namespaces         []string   // the Service's namespace must be one of these
	NamespaceSelectors []Selector // the namespace's labels must match one of these
	ServiceSelectors   []Selector // the Service's labels must match one of these

	// Created decides conflicts: of two overlapping pools the older one is
	// used, and on a tie the one whose name sorts first.
	Created time.Time
}

// Report is what SetPools found in a pool configuration.
type Report struct {
	// Invalid maps the name of each pool that cannot be used as written to
	// the reason, for example ranges that overlap each other.
	Invalid map[string]string
	// Conflicts maps the name of each pool that overlaps an older usable
	// pool to the reason. Such a pool is not used at all.
	Conflicts map[string]string
	// Orphaned lists, sorted, the keys of Services that hold an address
	// that is no longer in any usable pool. They keep it until the
	// controller releases it (Release) or re-allocates (Allocate).
	Orphaned []string
}

type poolState struct {
	Pool
	spaces [2]*space // by famIndex; nil when the pool has no range of that family
	usable bool
	why    string // why the pool is not usable
}

// admits checks the pool's restrictions against svc.
func (p *poolState) admits(svc *Service) *Error {
	if len(p.Namespaces) > 0 && !slices.Contains(p.Namespaces, svc.Namespace) {
		return errorf(NotAllowed, "address pool %q only serves the namespaces %s; this Service is in namespace %q",
			p.Name, quoteList(p.Namespaces), svc.Namespace)
	}
	if len(p.NamespaceSelectors) > 0 && !anyMatch(p.NamespaceSelectors, svc.NamespaceLabels) {
		return errorf(NotAllowed, "address pool %q only serves namespaces matching its namespaceSelectors, and the labels of namespace %q do not match",
			p.Name, svc.Namespace)
	}
	if len(p.ServiceSelectors) > 0 && !anyMatch(p.ServiceSelectors, svc.Labels) {
		return errorf(NotAllowed, "address pool %q only serves Services matching its serviceSelectors, and this Service's labels do not match",
			p.Name)
	}
	return nil
}

func anyMatch(sels []Selector, labels map[string]string) bool {
	for _, s := range sels {
		if s == nil || s(labels) {
			return true
		}
	}
	return false
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// space returns the pool's space of family f, or nil.
func (p *poolState) space(f Family) *space {
	if f != IPv4 && f != IPv6 {
		return nil
	}
	return p.spaces[famIndex(f)]
}

// invalid reports why p cannot be used as written, or "".
func invalid(p *Pool) string {
	if p.Name == "" {
		return "the pool has no name"
	}
	if len(p.Ranges) == 0 {
		return "the pool has no addresses"
	}
	if p.Priority < 0 {
		return fmt.Sprintf("priority %d is negative; use a positive number, or 0 for none", p.Priority)
	}
	for _, r := range p.Ranges {
		if why := r.invalid(); why != "" {
			return fmt.Sprintf("address range %v: %s", r, why)
		}
	}
	rs := slices.Clone(p.Ranges)
	sortRanges(rs)
	for i := 1; i < len(rs); i++ {
		if rs[i].Overlaps(rs[i-1]) {
			return fmt.Sprintf("addresses %v and %v overlap; each address may be listed once", rs[i-1], rs[i])
		}
	}
	return ""
}

// SetPools replaces the whole pool configuration at once and reports invalid
// and conflicting pools and orphaned Services.
//
// Assignments survive: a Service keeps every address that is still in some
// usable pool, whatever that pool is now called, and Lookup then reports the
// new pool. Editing one pool never moves an address of another.
func (a *Allocator) SetPools(pools []Pool) Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()

	rep := Report{Invalid: map[string]string{}, Conflicts: map[string]string{}}
	names := map[string]int{}
	for i := range pools {
		names[pools[i].Name]++
	}
	next := map[string]*poolState{}
	var valid []*poolState
	for i := range pools {
		p := &poolState{Pool: pools[i]}
		p.Ranges = slices.Clone(p.Ranges)
		sortRanges(p.Ranges)
		if names[p.Name] > 1 {
			p.why = fmt.Sprintf("%d pools are named %q; pool names must be unique", names[p.Name], p.Name)
		} else {
			p.why = invalid(&p.Pool)
		}
		if p.why != "" {
			rep.Invalid[p.Name] = p.why
			if next[p.Name] == nil {
				next[p.Name] = p
			}
			continue
		}
		next[p.Name] = p
		valid = append(valid, p)
	}

	// The oldest pool wins an overlap; a pool that lost is not used, so it
	// does not block younger pools either.
	slices.SortFunc(valid, func(x, y *poolState) int {
		return cmp.Or(x.Created.Compare(y.Created), strings.Compare(x.Name, y.Name))
	})
	var usable []*poolState
	for _, p := range valid {
		p.why = conflict(p, usable)
		if p.why != "" {
			rep.Conflicts[p.Name] = p.why
			continue
		}
		p.usable = true
		usable = append(usable, p)
	}

	a.rebuild(next, usable)

	seen := map[string]bool{}
	for ip := range a.orphans {
		for _, k := range a.holders[ip] {
			if !seen[k] {
				seen[k] = true
				rep.Orphaned = append(rep.Orphaned, k)
			}
		}
	}
	slices.Sort(rep.Orphaned)
	return rep
}

// conflict reports how p overlaps one of the pools already accepted, or "".
func conflict(p *poolState, accepted []*poolState) string {
	for _, q := range accepted {
		for _, r := range p.Ranges {
			for _, s := range q.Ranges {
				if !r.Overlaps(s) {
					continue
				}
				when := "created earlier"
				if q.Created.Equal(p.Created) {
					when = fmt.Sprintf("created at the same time; %q sorts first by name", q.Name)
				}
				return fmt.Sprintf("addresses %v overlap pool %q (%s)", r, q.Name, when)
			}
		}
	}
	return ""
}

// rebuild installs the new pools, reusing the spaces of the old ones so that
// held addresses stay held and nothing is rebuilt that did not change.
func (a *Allocator) rebuild(next map[string]*poolState, usable []*poolState) {
	type spaceKey struct {
		name  string
		fam   Family
		avoid bool
	}
	old := map[spaceKey]*space{}
	for _, p := range a.pools {
		for _, s := range p.spaces {
			if s != nil {
				old[spaceKey{p.Name, s.fam, s.avoid}] = s
			}
		}
	}

	// Each new space takes over the old space of the same pool, or else an
	// old space with exactly the same addresses (a renamed pool), or starts
	// empty.
	type plan struct {
		p      *poolState
		fam    Family
		avoid  bool
		ranges []Range
		s      *space
	}
	var plans []*plan
	for _, p := range usable {
		for _, f := range []Family{IPv4, IPv6} {
			pl := &plan{p: p, fam: f, avoid: f == IPv4 && p.AvoidBuggyIPs}
			for _, r := range p.Ranges {
				if r.Family() == f {
					pl.ranges = append(pl.ranges, r)
				}
			}
			if len(pl.ranges) == 0 {
				continue
			}
			k := spaceKey{p.Name, f, pl.avoid}
			if s := old[k]; s != nil {
				delete(old, k)
				pl.s = s
			}
			plans = append(plans, pl)
		}
	}
	for _, pl := range plans {
		if pl.s != nil {
			continue
		}
		for k, s := range old {
			if k.fam == pl.fam && k.avoid == pl.avoid && slices.Equal(s.ranges, pl.ranges) {
				delete(old, k)
				pl.s = s
				break
			}
		}
		if pl.s == nil {
			pl.s = &space{fam: pl.fam, avoid: pl.avoid}
		}
	}

	// Take out what left the spaces first, then add what came in, then
	// place the held addresses that were displaced or already orphaned.
	var moved []netip.Addr
	displaced := func(ip netip.Addr) { moved = append(moved, ip) }
	for _, s := range old {
		s.setRanges(nil, displaced)
	}
	for _, pl := range plans {
		pl.s.setRanges(pl.ranges, displaced)
		pl.s.pool = pl.p
		pl.p.spaces[famIndex(pl.fam)] = pl.s
	}

	a.pools = next
	a.index = [2][]indexEntry{}
	for _, p := range usable {
		for _, s := range p.spaces {
			if s == nil {
				continue
			}
			for _, r := range s.ranges {
				a.index[famIndex(s.fam)] = append(a.index[famIndex(s.fam)], indexEntry{r.Last, r.First, s})
			}
		}
	}
	for i := range a.index {
		slices.SortFunc(a.index[i], func(x, y indexEntry) int { return x.last.Compare(y.last) })
	}

	for ip := range a.orphans {
		moved = append(moved, ip)
	}
	for _, ip := range moved {
		s := a.spaceOf(ip)
		p, ok := u128{}, false
		if s != nil {
			p, ok = s.pos(ip)
		}
		if ok && s.free.take(p) {
			s.assigned++
			delete(a.orphans, ip)
		} else {
			a.orphans[ip] = struct{}{}
		}
	}

	a.order = a.order[:0]
	for _, p := range usable {
		if p.AutoAssign {
			a.order = append(a.order, p)
		}
	}
	slices.SortFunc(a.order, func(x, y *poolState) int {
		if (x.Priority > 0) != (y.Priority > 0) {
			if x.Priority > 0 {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(x.Priority, y.Priority), strings.Compare(x.Name, y.Name))
	})
	a.def = nil
	if len(a.order) > 0 {
		a.def = a.order[0]
	}
}

// indexEntry is one range of a usable pool, for finding an address's space.
type indexEntry struct {
	last, first netip.Addr
	s           *space
}

// spaceOf returns the usable space whose ranges hold ip, or nil. An avoided
// address is found in its space; callers check pos.
func (a *Allocator) spaceOf(ip netip.Addr) *space {
	f := FamilyOf(ip)
	if f == 0 || ip.Zone() != "" || ip.Is4In6() {
		return nil
	}
	idx := a.index[famIndex(f)]
	i, _ := slices.BinarySearchFunc(idx, ip, func(e indexEntry, ip netip.Addr) int { return e.last.Compare(ip) })
	if i < len(idx) && idx[i].first.Compare(ip) <= 0 {
		return idx[i].s
	}
	return nil
}

// unusablePoolOf names a pool that is not usable and lists ip, for errors.
func (a *Allocator) unusablePoolOf(ip netip.Addr) *poolState {
	var found *poolState
	for _, p := range a.pools {
		if p.usable {
			continue
		}
		for _, r := range p.Ranges {
			if r.Contains(ip) && (found == nil || p.Name < found.Name) {
				found = p
			}
		}
	}
	return found
}

// AutoAssignOrder returns the names of the usable auto-assign pools in the
// order Allocate tries them for a Service that names no pool and no
// address: best priority first, then name. The first is the default pool.
func (a *Allocator) AutoAssignOrder() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.order))
	for _, p := range a.order {
		out = append(out, p.Name)
	}
	return out
}

// Admits tells whether the named pool may give addresses to svc: nil when
// it may, else an *Error saying which restriction (namespaces, namespace
// or Service selectors) keeps it out (NotAllowed), or that the pool is
// unknown (UnknownPool) or not usable (PoolUnusable). It changes nothing; porticoctl explains choices with it.
func (a *Allocator) Admits(pool string, svc Service) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if svc.Namespace == "" {
		svc.Namespace, _, _ = strings.Cut(svc.Key, "/")
	}
	if _, err := a.admittingPool(pool, &svc); err != nil {
		return err
	}
	return nil
}
