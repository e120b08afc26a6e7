package pools

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Policy is a Service's spec.ipFamilyPolicy.
type Policy int

// The IP family policies of a Service.
const (
	SingleStack Policy = iota
	PreferDualStack
	RequireDualStack
)

func (p Policy) String() string {
	switch p {
	case SingleStack:
		return "SingleStack"
	case PreferDualStack:
		return "PreferDualStack"
	case RequireDualStack:
		return "RequireDualStack"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Port is one port of a Service, for the sharing rules.
type Port struct {
	Protocol string // TCP, UDP or SCTP; "" means TCP
	Port     int32
}

// Service is what the allocator needs to know of a LoadBalancer Service.
type Service struct {
	Key             string // "namespace/name"
	Namespace       string // "" means the part of Key before '/'
	Labels          map[string]string
	NamespaceLabels map[string]string
	Families        []Family // spec.ipFamilies, primary first; empty means IPv4
	Policy          Policy
	Pool            string       // requested pool; "" means any
	IPs             []netip.Addr // requested IPs; empty means any
	SharingKey      string       // "" means the Service shares no IP
	Ports           []Port
	Local           bool   // externalTrafficPolicy: Local
	Selector        string // canonical spec.selector, compared when Local Services share
	Ingress         bool   // the bundled ingress Service, which gets the reserved address
}

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
	mu       sync.Mutex
	pools    map[string]*poolState // every configured pool, usable or not
	order    []*poolState          // usable auto-assign pools, best first
	def      *poolState            // order[0], whose first addresses are reserved
	index    [2][]indexEntry       // ranges of usable pools by family, sorted
	services map[string]*record
	holders  map[netip.Addr][]string       // held address → keys of its Services, sorted
	byKey    map[string]map[netip.Addr]int // sharing key → addresses held under it → holders
	orphans  map[netip.Addr]struct{}       // held addresses outside every usable pool
}

type record struct {
	svc Service // normalized, without labels
	ips []netip.Addr
}

// New returns an Allocator with no pools.
func New() *Allocator {
	a := &Allocator{}
	a.init()
	return a
}

func (a *Allocator) init() {
	if a.services == nil {
		a.pools = map[string]*poolState{}
		a.services = map[string]*record{}
		a.holders = map[netip.Addr][]string{}
		a.byKey = map[string]map[netip.Addr]int{}
		a.orphans = map[netip.Addr]struct{}{}
	}
}

// DefaultPool returns the name of the pool tried first for automatic
// assignment (the usable auto-assign pool with the best priority, then the
// first name), or "" if there is none. Its first address of each family is
// reserved for the ingress Service.
func (a *Allocator) DefaultPool() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.def == nil {
		return ""
	}
	return a.def.Name
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
		ips := rec.ips
		if svc.Policy == PreferDualStack && len(svc.IPs) == 0 && len(ips) < len(svc.Families) {
			if more := a.fill(a.spaceOf(ips[0]).pool, missing(svc.Families, ips), &svc, rec); more != nil {
				ips = append(slices.Clone(ips), more...)
			}
		}
		return a.assignmentOf(a.replace(&svc, ips)), nil
	}
	var ips []netip.Addr
	if len(svc.IPs) > 0 {
		ips, err = a.planRequested(&svc, rec)
	} else {
		ips, err = a.planAuto(&svc, rec)
	}
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
	var pool *poolState
	for i, ip := range ips {
		if !slices.Contains(svc.Families, FamilyOf(ip)) {
			return Assignment{}, errorf(BadRequest, "%v is %v, but the Service's IP families are %v", ip, FamilyOf(ip), svc.Families)
		}
		if i > 0 && FamilyOf(ips[0]) == FamilyOf(ip) {
			return Assignment{}, errorf(BadRequest, "a Service holds at most one address per family, not %v and %v", ips[0], ip)
		}
		s, err := a.usableSpace(ip)
		if err != nil {
			return Assignment{}, err
		}
		if pool != nil && s.pool != pool {
			return Assignment{}, errorf(BadRequest, "%v and %v are in different address pools (%q and %q); a Service's addresses come from one pool",
				ips[0], ip, pool.Name, s.pool.Name)
		}
		pool = s.pool
	}
	if err := pool.admits(&svc); err != nil {
		return Assignment{}, err
	}
	for _, ip := range ips {
		if err := a.shareable(ip, &svc); err != nil {
			return Assignment{}, err
		}
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
	p := a.pools[pool]
	if p == nil || !p.usable {
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
	p := a.pools[pool]
	if p == nil || !p.usable {
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

// normalize checks a Service and fills in its defaults.
func normalize(in Service) (Service, *Error) {
	svc := in
	if svc.Key == "" {
		return svc, errorf(BadRequest, "the Service has no key")
	}
	if ns, _, ok := strings.Cut(svc.Key, "/"); ok && svc.Namespace == "" {
		svc.Namespace = ns
	}
	fams := make([]Family, 0, 2)
	for _, f := range in.Families {
		if f != IPv4 && f != IPv6 {
			return svc, errorf(BadRequest, "unknown IP family %v", f)
		}
		if !slices.Contains(fams, f) {
			fams = append(fams, f)
		}
	}
	if len(fams) == 0 {
		fams = append(fams, IPv4)
	}
	switch svc.Policy {
	case SingleStack:
		fams = fams[:1]
	case PreferDualStack:
	case RequireDualStack:
		if len(fams) == 1 {
			fams = append(fams, other(fams[0]))
		}
	default:
		return svc, errorf(BadRequest, "unknown IP family policy %v", svc.Policy)
	}
	svc.Families = fams
	svc.Ports = make([]Port, len(in.Ports))
	for i, p := range in.Ports {
		p.Protocol = strings.ToUpper(p.Protocol)
		if p.Protocol == "" {
			p.Protocol = "TCP"
		}
		svc.Ports[i] = p
	}
	svc.IPs = slices.Clone(in.IPs)
	if err := checkIPs(svc.IPs); err != nil {
		return svc, err
	}
	return svc, nil
}

// checkIPs refuses addresses no pool can hold and duplicates.
func checkIPs(ips []netip.Addr) *Error {
	for i, ip := range ips {
		switch {
		case !ip.IsValid():
			return errorf(BadRequest, "an empty IP address was requested")
		case ip.Zone() != "":
			return errorf(BadRequest, "%v has a zone; a LoadBalancer IP cannot be scoped to an interface", ip)
		case ip.Is4In6():
			return errorf(BadRequest, "%v is an IPv4-mapped IPv6 address; request %v instead", ip, ip.Unmap())
		case slices.Contains(ips[:i], ip):
			return errorf(BadRequest, "%v is requested twice", ip)
		}
	}
	return nil
}

func other(f Family) Family {
	if f == IPv4 {
		return IPv6
	}
	return IPv4
}

// missing returns the families in fams that no address in ips has.
func missing(fams []Family, ips []netip.Addr) []Family {
	var out []Family
	for _, f := range fams {
		if !slices.ContainsFunc(ips, func(ip netip.Addr) bool { return FamilyOf(ip) == f }) {
			out = append(out, f)
		}
	}
	return out
}

// fits reports whether svc may hold ips: all in one usable pool that admits
// it, one per family of its families, sharing compatible. With strict, ips
// must also meet the Service's request and policy.
func (a *Allocator) fits(ips []netip.Addr, svc *Service, strict bool) bool {
	if len(ips) == 0 {
		return false
	}
	var pool *poolState
	for i, ip := range ips {
		s := a.spaceOf(ip)
		if s == nil || pool != nil && s.pool != pool {
			return false
		}
		pool = s.pool
		if _, ok := s.pos(ip); !ok {
			return false
		}
		f := FamilyOf(ip)
		if !slices.Contains(svc.Families, f) ||
			slices.ContainsFunc(ips[:i], func(o netip.Addr) bool { return FamilyOf(o) == f }) ||
			a.shareable(ip, svc) != nil {
			return false
		}
	}
	if pool.admits(svc) != nil {
		return false
	}
	if !strict {
		return true
	}
	if svc.Pool != "" && pool.Name != svc.Pool {
		return false
	}
	if len(svc.IPs) > 0 && (len(svc.IPs) != len(ips) || len(missingIPs(svc.IPs, ips)) > 0) {
		return false
	}
	switch svc.Policy {
	case SingleStack:
		return len(ips) == 1
	case RequireDualStack:
		return len(ips) == 2
	}
	return true
}

func missingIPs(want, have []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, ip := range want {
		if !slices.Contains(have, ip) {
			out = append(out, ip)
		}
	}
	return out
}

// usableSpace returns the space of a usable pool that has ip, or an error
// saying why there is none.
func (a *Allocator) usableSpace(ip netip.Addr) (*space, *Error) {
	s := a.spaceOf(ip)
	if s == nil {
		if p := a.unusablePoolOf(ip); p != nil {
			return nil, errorf(PoolUnusable, "%v is in address pool %q, which is not usable: %s", ip, p.Name, p.why)
		}
		return nil, errorf(NotInPool, "%v is not in any address pool", ip)
	}
	if _, ok := s.pos(ip); !ok {
		return nil, errorf(NotInPool, "%v is left out of address pool %q, which avoids addresses ending in .0 and .255 (avoidBuggyIPs)", ip, s.pool.Name)
	}
	return s, nil
}

// planRequested checks the IPs a Service asks for.
func (a *Allocator) planRequested(svc *Service, rec *record) ([]netip.Addr, *Error) {
	var want *poolState
	if svc.Pool != "" {
		p, err := a.requestedPool(svc)
		if err != nil {
			return nil, err
		}
		want = p
	}
	ips := svc.IPs
	n := len(ips)
	switch {
	case svc.Policy == SingleStack && n != 1:
		return nil, errorf(BadRequest, "a SingleStack Service takes one IP, but %d were requested (%s)", n, joinIPs(ips))
	case svc.Policy == RequireDualStack && (n != 2 || FamilyOf(ips[0]) == FamilyOf(ips[1])):
		return nil, errorf(BadRequest, "a RequireDualStack Service needs one IPv4 and one IPv6 address, but %s was requested", joinIPs(ips))
	case svc.Policy == PreferDualStack && (n > 2 || n == 2 && FamilyOf(ips[0]) == FamilyOf(ips[1])):
		return nil, errorf(BadRequest, "a PreferDualStack Service takes one IP, or one IPv4 and one IPv6 address, but %s was requested", joinIPs(ips))
	}
	for _, ip := range ips {
		if !slices.Contains(svc.Families, FamilyOf(ip)) {
			return nil, errorf(BadRequest, "requested IP %v is %v, but the Service's IP families are %v", ip, FamilyOf(ip), svc.Families)
		}
	}
	var pool *poolState
	for _, ip := range ips {
		s, err := a.usableSpace(ip)
		if err != nil {
			return nil, err
		}
		if want != nil && s.pool != want {
			return nil, errorf(NotInPool, "%v is in address pool %q, not in the requested pool %q", ip, s.pool.Name, want.Name)
		}
		if pool != nil && s.pool != pool {
			return nil, errorf(BadRequest, "the requested IPs are in different address pools (%q and %q); a Service's addresses come from one pool",
				pool.Name, s.pool.Name)
		}
		pool = s.pool
	}
	if err := pool.admits(svc); err != nil {
		return nil, err
	}
	for _, ip := range ips {
		if err := a.shareable(ip, svc); err != nil {
			return nil, err
		}
		if !svc.Ingress && a.isReserved(ip) && !(rec != nil && slices.Contains(rec.ips, ip)) && !a.heldByIngress(ip, svc.Key) {
			return nil, errorf(Reserved, "%v is reserved for the ingress Service: it is the first address of the default pool %q",
				ip, a.def.Name)
		}
	}
	return ips, nil
}

func (a *Allocator) requestedPool(svc *Service) (*poolState, *Error) {
	p := a.pools[svc.Pool]
	switch {
	case p == nil:
		return nil, errorf(UnknownPool, "address pool %q does not exist", svc.Pool)
	case !p.usable:
		return nil, errorf(PoolUnusable, "address pool %q is not usable: %s", svc.Pool, p.why)
	}
	if err := p.admits(svc); err != nil {
		return nil, err
	}
	return p, nil
}

func (a *Allocator) heldByIngress(ip netip.Addr, self string) bool {
	for _, k := range a.holders[ip] {
		if k != self && a.services[k].svc.Ingress {
			return true
		}
	}
	return false
}

// planAuto picks addresses for a Service that asks for none in particular.
func (a *Allocator) planAuto(svc *Service, rec *record) ([]netip.Addr, *Error) {
	cands, sticky, err := a.candidates(svc, rec)
	if err != nil {
		return nil, err
	}
	try := func(pools []*poolState, fams []Family) []netip.Addr {
		for _, p := range pools {
			if ips := a.fill(p, fams, svc, rec); ips != nil {
				return ips
			}
		}
		return nil
	}
	fams := svc.Families
	var ips []netip.Addr
	switch {
	case svc.Policy != PreferDualStack || len(fams) == 1:
		ips = try(cands, fams)
	default:
		// Keeping a held address beats moving to a pool with both families.
		if sticky != nil {
			ips = try([]*poolState{sticky}, fams)
			for _, ip := range rec.ips {
				if s := a.spaceOf(ip); ips == nil && s != nil && s.pool == sticky && a.shareable(ip, svc) == nil {
					if _, ok := s.pos(ip); ok {
						ips = []netip.Addr{ip}
					}
				}
			}
		}
		if ips == nil {
			ips = try(cands, fams)
		}
		for _, f := range fams {
			if ips == nil {
				ips = try(cands, []Family{f})
			}
		}
	}
	if ips == nil {
		return nil, a.exhausted(svc, cands)
	}
	return ips, nil
}

// candidates returns the pools a Service without requested IPs may get
// addresses from, in the order to try them, and the pool of its current
// addresses if that comes first.
func (a *Allocator) candidates(svc *Service, rec *record) ([]*poolState, *poolState, *Error) {
	var sticky *poolState
	if rec != nil {
		for _, ip := range rec.ips {
			if s := a.spaceOf(ip); s != nil && s.pool.admits(svc) == nil && (svc.Pool == "" || s.pool.Name == svc.Pool) {
				sticky = s.pool
				break
			}
		}
	}
	if svc.Pool != "" {
		p, err := a.requestedPool(svc)
		if err != nil {
			return nil, nil, err
		}
		return []*poolState{p}, sticky, nil
	}

	var out []*poolState
	if sticky != nil {
		out = append(out, sticky) // even without autoAssign: addresses stay
	}
	if svc.Ingress && a.def != nil && a.def != sticky && a.def.admits(svc) == nil {
		out = append(out, a.def)
	}
	if held := a.byKey[svc.SharingKey]; svc.SharingKey != "" && len(held) > 0 {
		sharing := map[*poolState]bool{}
		for ip := range held {
			if s := a.spaceOf(ip); s != nil {
				sharing[s.pool] = true
			}
		}
		for _, p := range a.order {
			if sharing[p] && !slices.Contains(out, p) && p.admits(svc) == nil {
				out = append(out, p)
			}
		}
	}
	front := len(out)
	var refused []string
	for _, p := range a.order {
		if slices.Contains(out[:front], p) {
			continue
		}
		if err := p.admits(svc); err != nil {
			refused = append(refused, err.Msg)
			continue
		}
		out = append(out, p)
	}
	switch {
	case len(out) > 0:
		return out, sticky, nil
	case len(a.order) == 0:
		return nil, nil, errorf(UnknownPool, "no usable address pool has autoAssign enabled; create one, or name a pool for this Service")
	}
	if len(refused) > 3 {
		refused = append(refused[:3], fmt.Sprintf("and %d more", len(refused)-3))
	}
	return nil, nil, errorf(NotAllowed, "no address pool with autoAssign serves this Service: %s", strings.Join(refused, "; "))
}

// fill picks one address of each family in fams from pool p, or returns nil.
func (a *Allocator) fill(p *poolState, fams []Family, svc *Service, rec *record) []netip.Addr {
	out := make([]netip.Addr, 0, len(fams))
	for _, f := range fams {
		s := p.space(f)
		if s == nil {
			return nil
		}
		ip, ok := a.pick(s, svc, rec)
		if !ok {
			return nil
		}
		out = append(out, ip)
	}
	return out
}

// pick chooses the address a Service gets from space s: the one it holds
// already, else (for the ingress Service) the reserved one, else one it can
// share under its sharing key, else the lowest free one.
func (a *Allocator) pick(s *space, svc *Service, rec *record) (netip.Addr, bool) {
	if rec != nil {
		for _, ip := range rec.ips {
			if a.spaceOf(ip) != s {
				continue
			}
			if _, ok := s.pos(ip); ok && a.shareable(ip, svc) == nil {
				return ip, true
			}
		}
	}
	res, hasRes := a.reserved(s)
	if svc.Ingress && hasRes {
		if ip := s.addr(res); a.shareable(ip, svc) == nil {
			return ip, true
		}
	}
	if svc.SharingKey != "" {
		var best netip.Addr
		for ip := range a.byKey[svc.SharingKey] {
			if FamilyOf(ip) != s.fam || a.spaceOf(ip) != s || best.IsValid() && best.Less(ip) {
				continue
			}
			p, ok := s.pos(ip)
			if !ok || hasRes && !svc.Ingress && p == res || a.shareable(ip, svc) != nil {
				continue
			}
			best = ip
		}
		if best.IsValid() {
			return best, true
		}
	}
	var p u128
	var ok bool
	if hasRes && !svc.Ingress {
		p, ok = s.free.lowestExcept(res)
	} else {
		p, ok = s.free.lowest()
	}
	if !ok {
		return netip.Addr{}, false
	}
	return s.addr(p), true
}

// exhausted explains why no candidate pool could give svc its addresses.
func (a *Allocator) exhausted(svc *Service, cands []*poolState) *Error {
	fams := svc.Families
	what := "a free " + fams[0].String() + " address"
	switch {
	case svc.Policy == RequireDualStack:
		what = "both a free IPv4 and a free IPv6 address"
	case len(fams) == 2:
		what = "a free IPv4 or IPv6 address"
	}
	if svc.Pool != "" {
		p := cands[0]
		var absent []string
		for _, f := range fams {
			if p.space(f) == nil {
				absent = append(absent, f.String())
			}
		}
		if len(absent) == len(fams) || len(absent) > 0 && svc.Policy != PreferDualStack {
			return errorf(Exhausted, "address pool %q has no %s addresses, and this %v Service needs one", p.Name, strings.Join(absent, " or "), svc.Policy)
		}
		left := "no free " + fams[0].String() + " address is left"
		switch {
		case svc.Policy == RequireDualStack:
			left = "it cannot give both a free IPv4 and a free IPv6 address"
		case len(fams) == 2:
			left = "no free IPv4 or IPv6 address is left"
		}
		return errorf(Exhausted, "address pool %q is exhausted: %s", p.Name, left)
	}
	names := make([]string, 0, 5)
	for i, p := range cands {
		if i == 5 {
			names = append(names, fmt.Sprintf("and %d more", len(cands)-5))
			break
		}
		names = append(names, fmt.Sprintf("%q", p.Name))
	}
	msg := fmt.Sprintf("no address pool has %s for this Service (pools tried: %s)", what, strings.Join(names, ", "))
	if svc.Policy == RequireDualStack {
		msg += "; RequireDualStack needs both from one pool"
	}
	return &Error{Reason: Exhausted, Msg: msg}
}

// reserved returns the position of the ingress address in s, if s is a
// space of the default pool.
func (a *Allocator) reserved(s *space) (u128, bool) {
	if s == nil || s.pool != a.def || s.empty {
		return u128{}, false
	}
	return s.first, true
}

func (a *Allocator) isReserved(ip netip.Addr) bool {
	s := a.spaceOf(ip)
	r, ok := a.reserved(s)
	if !ok {
		return false
	}
	p, ok := s.pos(ip)
	return ok && p == r
}

// shareable checks that svc may hold ip together with its other holders.
func (a *Allocator) shareable(ip netip.Addr, svc *Service) *Error {
	for _, k := range a.holders[ip] {
		if k == svc.Key {
			continue
		}
		if why := clash(svc, &a.services[k].svc); why != "" {
			return errorf(InUse, "%v is in use by %s (%s)", ip, k, why)
		}
	}
	return nil
}

// clash says why two Services cannot share an address, or "" if they can.
func clash(x, y *Service) string {
	switch {
	case x.SharingKey == "" || y.SharingKey == "":
		return "addresses are shared only between Services with the same allow-shared-ip key"
	case x.SharingKey != y.SharingKey:
		return fmt.Sprintf("its allow-shared-ip key is %q, not %q", y.SharingKey, x.SharingKey)
	case x.Local != y.Local:
		return "one Service has externalTrafficPolicy Local and the other Cluster"
	case x.Local && x.Selector != y.Selector:
		return "both have externalTrafficPolicy Local, so they must select the same pods"
	}
	for _, p := range x.Ports {
		for _, q := range y.Ports {
			if p == q {
				return fmt.Sprintf("both use port %s/%d", p.Protocol, p.Port)
			}
		}
	}
	return ""
}

// replace makes ips the addresses of svc and returns its record.
func (a *Allocator) replace(svc *Service, ips []netip.Addr) *record {
	stored := *svc
	stored.Labels, stored.NamespaceLabels = nil, nil
	rec := &record{svc: stored, ips: slices.Clone(ips)}
	slices.SortStableFunc(rec.ips, func(x, y netip.Addr) int {
		return slices.Index(svc.Families, FamilyOf(x)) - slices.Index(svc.Families, FamilyOf(y))
	})
	old := a.services[svc.Key]
	if old != nil {
		for _, ip := range old.ips {
			a.unhold(ip, old)
		}
	}
	a.services[svc.Key] = rec
	for _, ip := range rec.ips {
		a.hold(ip, rec)
	}
	if old != nil {
		for _, ip := range old.ips {
			a.cleanup(ip)
		}
	}
	return rec
}

func (a *Allocator) release(key string) []netip.Addr {
	rec := a.services[key]
	if rec == nil {
		return nil
	}
	delete(a.services, key)
	var freed []netip.Addr
	for _, ip := range rec.ips {
		a.unhold(ip, rec)
		if a.cleanup(ip) {
			freed = append(freed, ip)
		}
	}
	return freed
}

func (a *Allocator) hold(ip netip.Addr, rec *record) {
	keys, held := a.holders[ip]
	if !held {
		s := a.spaceOf(ip)
		var p u128
		ok := s != nil
		if ok {
			p, ok = s.pos(ip)
		}
		if ok && s.free.take(p) {
			s.assigned++
		} else {
			a.orphans[ip] = struct{}{}
		}
	}
	i, _ := slices.BinarySearch(keys, rec.svc.Key)
	a.holders[ip] = slices.Insert(keys, i, rec.svc.Key)
	if k := rec.svc.SharingKey; k != "" {
		if a.byKey[k] == nil {
			a.byKey[k] = map[netip.Addr]int{}
		}
		a.byKey[k][ip]++
	}
}

// unhold removes rec's Service from the holders of ip but leaves ip taken
// until cleanup.
func (a *Allocator) unhold(ip netip.Addr, rec *record) {
	keys := a.holders[ip]
	if i, ok := slices.BinarySearch(keys, rec.svc.Key); ok {
		a.holders[ip] = slices.Delete(keys, i, i+1)
	}
	if k := rec.svc.SharingKey; k != "" {
		if a.byKey[k][ip]--; a.byKey[k][ip] <= 0 {
			delete(a.byKey[k], ip)
			if len(a.byKey[k]) == 0 {
				delete(a.byKey, k)
			}
		}
	}
}

// cleanup frees ip if nobody holds it any more, and reports whether it did.
func (a *Allocator) cleanup(ip netip.Addr) bool {
	keys, held := a.holders[ip]
	if !held || len(keys) > 0 {
		return false
	}
	delete(a.holders, ip)
	if _, ok := a.orphans[ip]; ok {
		delete(a.orphans, ip)
		return true
	}
	if s := a.spaceOf(ip); s != nil {
		p, _ := s.pos(ip)
		s.free.put(p)
		s.assigned--
	}
	return true
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

// note explains why the ingress Service does not hold the reserved address.
func (a *Allocator) note(rec *record) string {
	svc := &rec.svc
	if !svc.Ingress || a.def == nil {
		return ""
	}
	var notes []string
	for _, f := range svc.Families {
		r, ok := a.reserved(a.def.space(f))
		if !ok {
			continue
		}
		ip := a.def.space(f).addr(r)
		if slices.Contains(rec.ips, ip) {
			continue
		}
		var why string
		switch {
		case len(a.holders[ip]) > 0:
			why = fmt.Sprintf("it is held by %s, and an assigned address never moves", strings.Join(a.holders[ip], ", "))
		case len(svc.IPs) > 0:
			why = "this Service requests other IPs"
		case svc.Pool != "" && svc.Pool != a.def.Name:
			why = fmt.Sprintf("this Service requests address pool %q", svc.Pool)
		case a.def.admits(svc) != nil:
			why = a.def.admits(svc).Msg
		case a.assignmentPool(rec) != a.def.Name && slices.ContainsFunc(svc.Families, func(g Family) bool {
			s := a.def.space(g)
			return s == nil || s.free.count == count{}
		}):
			why = fmt.Sprintf("the default pool cannot give all the addresses this Service needs, so they came from %q", a.assignmentPool(rec))
		case !slices.ContainsFunc(rec.ips, func(ip netip.Addr) bool { return FamilyOf(ip) == f }):
			why = fmt.Sprintf("this Service has no %v address", f)
		default:
			why = "this Service already holds another address, and an assigned address never moves"
		}
		notes = append(notes, fmt.Sprintf("did not get %v, the first address of the default pool %q: %s", ip, a.def.Name, why))
	}
	return strings.Join(notes, "; ")
}

func joinIPs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}
