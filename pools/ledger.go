package pools

import (
	"fmt"
	"net/netip"
	"slices"
)

// ledger records who holds which address. A held address is taken from
// the free set of its pool's space (hold) and given back when its last
// holder lets go (cleanup); one outside every usable pool is an orphan
// until SetPools brings it back into a pool or its holders release it.
type ledger struct {
	services map[string]*record            // Service key → what it holds
	holders  map[netip.Addr][]string       // held address → keys of its Services, sorted
	byKey    map[string]map[netip.Addr]int // sharing key → addresses held under it → holders
	orphans  map[netip.Addr]struct{}       // held addresses outside every usable pool
}

func newLedger() ledger {
	return ledger{
		services: map[string]*record{},
		holders:  map[netip.Addr][]string{},
		byKey:    map[string]map[netip.Addr]int{},
		orphans:  map[netip.Addr]struct{}{},
	}
}

// record is what one Service holds.
type record struct {
	svc Service // normalized, without labels
	ips []netip.Addr
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
func (l *ledger) unhold(ip netip.Addr, rec *record) {
	keys := l.holders[ip]
	if i, ok := slices.BinarySearch(keys, rec.svc.Key); ok {
		l.holders[ip] = slices.Delete(keys, i, i+1)
	}
	if k := rec.svc.SharingKey; k != "" {
		if l.byKey[k][ip]--; l.byKey[k][ip] <= 0 {
			delete(l.byKey[k], ip)
			if len(l.byKey[k]) == 0 {
				delete(l.byKey, k)
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

// shareable checks that svc may hold ip together with its other holders.
func (l *ledger) shareable(ip netip.Addr, svc *Service) *Error {
	for _, k := range l.holders[ip] {
		if k == svc.Key {
			continue
		}
		if why := clash(svc, &l.services[k].svc); why != "" {
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
