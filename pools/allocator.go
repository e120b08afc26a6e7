package pools

import (
	"net/netip"
	"slices"
	"sync"
)

// Assignment is the addresses a Service holds and the pool they come from.
type Assignment struct {
	Pool string
	IPs  []netip.Addr // in the order of the Service's Families, primary first
	// Note is set for the ingress Service when it does not hold the
	// reserved first address of the default pool, and says why.
	Note string
}

// Counts are the address counts of one family of a pool.
type Counts struct {
	Assigned  uint64 // addresses held by at least one Service
	Available uint64 // addresses nobody holds, without avoided ones and the ingress address
}

// Allocator assigns addresses from pools to Services.
//
// An Allocator is safe for concurrent use: one mutex guards all of it. The
// zero value is ready to use and has no pools.
//
// On start the controller loads the pools (SetPools) and every assignment
// already in the cluster (Assign) before it allocates anything, so that a
// restart moves no address.
type Allocator struct {
	mu    sync.Mutex
	pools map[string]*poolState // every configured pool, usable or not
	order []*poolState          // usable auto-assign pools, best first
	def   *poolState            // order[0], whose first addresses are reserved
	index [2][]indexEntry       // ranges of usable pools by family, sorted
	ledger
}

// New returns an Allocator with no pools.
func New() *Allocator {
	a := &Allocator{}
	a.init()
	return a
}

// init makes the zero Allocator ready.
func (a *Allocator) init() {
	if a.services == nil {
		a.pools = map[string]*poolState{}
		a.ledger = newLedger()
	}
}

// Allocate gives a Service its addresses.
//
// A Service that asks for no IP gets, in each family it needs, the lowest
// free address of the first pool that can give them all. Pools are tried in
// this order: the pool of the Service's current addresses, then for the
// ingress Service the default pool, then pools where its sharing key already
// holds an address it may share (the lowest such address is reused), then
// the auto-assign pools by priority and name. A requested pool or requested
// IPs replace that order. Pool restrictions (namespaces, selectors) apply in
// every case.
//
// The first address of each family of the default pool is reserved for the
// ingress Service (Service.Ingress), which takes it when it is free or can
// be shared; otherwise the ingress Service gets another address and
// Assignment.Note says why. No other Service is given the reserved address
// automatically, and asking for it fails with Reserved unless the Service
// shares it with the ingress Service.
//
// If the Service already holds addresses that still meet its request (same
// requested pool and IPs, families that satisfy its policy, sharing still
// compatible, all in one usable pool that admits it), they are returned
// unchanged: calling Allocate again never moves an address. A
// PreferDualStack Service holding one family gains the other when its pool
// can give it, keeping the first.
//
// Otherwise Allocate computes a new assignment, keeping those of the held
// addresses that still fit, and on success it replaces the old one.
//
// On failure it returns an *Error and the Service keeps its old assignment
// if that is still valid (in a usable pool that admits the Service, sharing
// compatible), even though it does not meet the new request; the returned
// Assignment is then that old one, so the controller can warn "keeping
// current IP". If the old assignment is not valid any more it is released
// and the returned Assignment is empty. A Service that cannot be understood
// at all (no key, an unknown family or policy) changes nothing.
func (a *Allocator) Allocate(in Service) (Assignment, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()

	svc, err := normalize(in)
	rec := a.services[in.Key]
	if err != nil {
		return a.assignmentOf(rec), err
	}
	if rec != nil && a.fits(rec.ips, &svc, true) {
		return a.assignmentOf(a.replace(&svc, a.keep(&svc, rec))), nil
	}
	ips, err := a.plan(&svc, rec)
	if err != nil {
		if rec != nil && a.fits(rec.ips, &svc, false) {
			return a.assignmentOf(a.replace(&svc, rec.ips)), err
		}
		a.release(in.Key)
		return Assignment{}, err
	}
	return a.assignmentOf(a.replace(&svc, ips)), nil
}

// Assign records an assignment that already exists in the cluster, such as
// status.loadBalancer of a Service found on start. The addresses must be in
// one usable pool that admits the Service and must not clash with what is
// recorded already (sharing rules). The ingress address is accepted for any
// Service: an address once assigned stays. It replaces what the Service had
// recorded. On error nothing changes, and the controller should Allocate
// the Service afresh.
func (a *Allocator) Assign(in Service, ips []netip.Addr) (Assignment, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()

	svc, err := normalize(in)
	if err != nil {
		return Assignment{}, err
	}
	if len(ips) == 0 {
		return Assignment{}, errorf(BadRequest, "no IP to record for %s", svc.Key)
	}
	if err := checkIPs(ips); err != nil {
		return Assignment{}, err
	}
	if err := a.checkHeld(&svc, ips); err != nil {
		return Assignment{}, err
	}
	return a.assignmentOf(a.replace(&svc, ips)), nil
}

// Release frees the addresses of the Service with the given key and returns
// those that became free. An address shared with other Services stays held
// by them and is not returned. Releasing an unknown key does nothing.
func (a *Allocator) Release(key string) (freed []netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	return a.release(key)
}

// Lookup returns the assignment of the Service with the given key. Its Pool
// is "" while all of the Service's addresses are outside every usable pool
// (see Report.Orphaned).
func (a *Allocator) Lookup(key string) (Assignment, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	rec := a.services[key]
	return a.assignmentOf(rec), rec != nil
}

// Counters returns the counts of each family the pool has addresses of, or
// nil if the pool does not exist or is not usable. An address shared by
// several Services counts once; counts saturate at math.MaxUint64.
func (a *Allocator) Counters(pool string) map[Family]Counts {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	p := a.usablePool(pool)
	if p == nil {
		return nil
	}
	out := map[Family]Counts{}
	for _, s := range p.spaces {
		if s == nil {
			continue
		}
		avail := s.free.count
		if r, ok := a.reserved(s); ok && s.free.contains(r) {
			avail = avail.minus(one)
		}
		out[s.fam] = Counts{Assigned: s.assigned, Available: avail.sat()}
	}
	return out
}

// Size returns how many addresses of each family the pool has (avoided
// .0 and .255 addresses left out, the ingress address counted), or nil if
// the pool does not exist or is not usable. Sizes saturate at
// math.MaxUint64.
func (a *Allocator) Size(pool string) map[Family]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	p := a.usablePool(pool)
	if p == nil {
		return nil
	}
	out := map[Family]uint64{}
	for _, s := range p.spaces {
		if s != nil {
			out[s.fam] = s.total.sat()
		}
	}
	return out
}

// usablePool returns the named pool if it exists and is usable, else nil.
func (a *Allocator) usablePool(name string) *poolState {
	if p := a.pools[name]; p != nil && p.usable {
		return p
	}
	return nil
}

func (a *Allocator) assignmentOf(rec *record) Assignment {
	if rec == nil {
		return Assignment{}
	}
	return Assignment{Pool: a.assignmentPool(rec), IPs: slices.Clone(rec.ips), Note: a.note(rec)}
}

// assignmentPool names the pool of the first of rec's addresses that is in
// a usable pool, or "" if none is.
func (a *Allocator) assignmentPool(rec *record) string {
	for _, ip := range rec.ips {
		if s := a.spaceOf(ip); s != nil {
			return s.pool.Name
		}
	}
	return ""
}
