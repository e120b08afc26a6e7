package pools

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// reserved returns the position of the ingress address in s, if s is a
// space of the default pool.
func (a *Allocator) reserved(s *space) (u128, bool) {
	if s == nil || s.pool != a.def || s.empty {
		return u128{}, false
	}
	return s.first, true
}

// checkReserved refuses the ingress address to svc when it asks for it by
// IP, unless svc is the ingress Service, holds it already, or shares it
// with the ingress Service.
func (a *Allocator) checkReserved(ip netip.Addr, svc *Service, rec *record) *Error {
	if !svc.Ingress && a.isReserved(ip) && !(rec != nil && slices.Contains(rec.ips, ip)) && !a.heldByIngress(ip, svc.Key) {
		return errorf(Reserved, "%v is reserved for the ingress Service: it is the first address of the default pool %q",
			ip, a.def.Name)
	}
	return nil
}

// isReserved reports whether ip is the ingress address of the default pool.
func (a *Allocator) isReserved(ip netip.Addr) bool {
	s := a.spaceOf(ip)
	r, ok := a.reserved(s)
	if !ok {
		return false
	}
	p, ok := s.pos(ip)
	return ok && p == r
}

// heldByIngress reports whether the ingress Service, if it is not self,
// holds ip.
func (l *ledger) heldByIngress(ip netip.Addr, self string) bool {
	for _, k := range l.holders[ip] {
		if k != self && l.services[k].svc.Ingress {
			return true
		}
	}
	return false
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
