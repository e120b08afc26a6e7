package pools

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// checkHeld checks that svc may hold ips, whatever it asks for: one address
// of each of some of its families, all in one usable pool that admits it,
// sharing compatible. ips must not be empty.
func (a *Allocator) checkHeld(svc *Service, ips []netip.Addr) *Error {
	var pool *poolState
	for i, ip := range ips {
		f := FamilyOf(ip)
		if !slices.Contains(svc.Families, f) {
			return errorf(BadRequest, "%v is %v, but the Service's IP families are %v", ip, f, svc.Families)
		}
		if j := slices.IndexFunc(ips[:i], func(o netip.Addr) bool { return FamilyOf(o) == f }); j >= 0 {
			return errorf(BadRequest, "a Service holds at most one address per family, not %v and %v", ips[j], ip)
		}
		s, err := a.usableSpace(ip)
		if err != nil {
			return err
		}
		if pool != nil && s.pool != pool {
			return errorf(BadRequest, "%v and %v are in different address pools (%q and %q); a Service's addresses come from one pool",
				ips[0], ip, pool.Name, s.pool.Name)
		}
		pool = s.pool
	}
	if err := pool.admits(svc); err != nil {
		return err
	}
	for _, ip := range ips {
		if err := a.shareable(ip, svc); err != nil {
			return err
		}
	}
	return nil
}

// fits reports whether svc may hold ips (checkHeld). With strict, ips must
// also meet the Service's request and policy.
func (a *Allocator) fits(ips []netip.Addr, svc *Service, strict bool) bool {
	if len(ips) == 0 || a.checkHeld(svc, ips) != nil {
		return false
	}
	if !strict {
		return true
	}
	if svc.Pool != "" && a.spaceOf(ips[0]).pool.Name != svc.Pool {
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

// keep returns the addresses a Service holds, which fit its request, plus
// for a PreferDualStack Service holding one family the other one when its
// pool can give it.
func (a *Allocator) keep(svc *Service, rec *record) []netip.Addr {
	ips := rec.ips
	if svc.Policy == PreferDualStack && len(svc.IPs) == 0 && len(ips) < len(svc.Families) {
		if more := a.fill(a.spaceOf(ips[0]).pool, missing(svc.Families, ips), svc, rec); more != nil {
			ips = append(slices.Clone(ips), more...)
		}
	}
	return ips
}

// plan computes new addresses for a Service whose held ones, if any, do not
// meet its request.
func (a *Allocator) plan(svc *Service, rec *record) ([]netip.Addr, *Error) {
	if len(svc.IPs) > 0 {
		return a.planRequested(svc, rec)
	}
	return a.planAuto(svc, rec)
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
		p, err := a.admittingPool(svc.Pool, svc)
		if err != nil {
			return nil, err
		}
		want = p
	}
	if err := checkRequestedIPs(svc); err != nil {
		return nil, err
	}
	ips := svc.IPs
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
		if err := a.checkReserved(ip, svc, rec); err != nil {
			return nil, err
		}
	}
	return ips, nil
}

// admittingPool returns the named pool if it exists, is usable and admits
// svc, or an error saying which of these fails.
func (a *Allocator) admittingPool(name string, svc *Service) (*poolState, *Error) {
	p := a.pools[name]
	switch {
	case p == nil:
		return nil, errorf(UnknownPool, "address pool %q does not exist", name)
	case !p.usable:
		return nil, errorf(PoolUnusable, "address pool %q is not usable: %s", name, p.why)
	}
	if err := p.admits(svc); err != nil {
		return nil, err
	}
	return p, nil
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
		return nil, exhausted(svc, cands)
	}
	return ips, nil
}

// candidates returns the pools a Service without requested IPs may get
// addresses from, in the order to try them, and the pool of its current
// addresses if that comes first.
func (a *Allocator) candidates(svc *Service, rec *record) ([]*poolState, *poolState, *Error) {
	sticky := a.heldPool(svc, rec)
	if svc.Pool != "" {
		p, err := a.admittingPool(svc.Pool, svc)
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
	if len(out) == 0 {
		return nil, nil, noneServes(refused)
	}
	return out, sticky, nil
}

// heldPool returns the pool of the first of rec's addresses whose pool
// admits svc and is the one it asks for, if any: the pool its addresses
// stay in.
func (a *Allocator) heldPool(svc *Service, rec *record) *poolState {
	if rec == nil {
		return nil
	}
	for _, ip := range rec.ips {
		if s := a.spaceOf(ip); s != nil && s.pool.admits(svc) == nil && (svc.Pool == "" || s.pool.Name == svc.Pool) {
			return s.pool
		}
	}
	return nil
}

// noneServes explains why no auto-assign pool is a candidate: there is
// none, or each refused the Service for the reason in refused.
func noneServes(refused []string) *Error {
	if len(refused) == 0 {
		return errorf(UnknownPool, "no usable address pool has autoAssign enabled; create one, or name a pool for this Service")
	}
	if len(refused) > 3 {
		refused = append(refused[:3], fmt.Sprintf("and %d more", len(refused)-3))
	}
	return errorf(NotAllowed, "no address pool with autoAssign serves this Service: %s", strings.Join(refused, "; "))
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
func exhausted(svc *Service, cands []*poolState) *Error {
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
