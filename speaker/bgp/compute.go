package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/portico-lb/portico/lbservice"
)

// Input is everything that decides what this node advertises over BGP.
type Input struct {
	Node     Node
	Services []Service
	// PoolLabels maps each AddressPool's name to its labels, for
	// addressPoolSelectors.
	PoolLabels     map[string]map[string]string
	Peers          []Peer
	Advertisements []Advertisement
}

// Path is one prefix advertised on one session. The next hop is not here:
// the session sets it to its own local address.
type Path struct {
	Prefix           netip.Prefix
	Communities      []uint32         // sorted, no duplicates
	LargeCommunities []LargeCommunity // sorted, no duplicates
	LocalPref        *uint32          // iBGP sessions only
}

// Equal reports whether p and q advertise the same thing.
func (p Path) Equal(q Path) bool {
	if p.Prefix != q.Prefix || !slices.Equal(p.Communities, q.Communities) ||
		!slices.Equal(p.LargeCommunities, q.LargeCommunities) {
		return false
	}
	if (p.LocalPref == nil) != (q.LocalPref == nil) {
		return false
	}
	return p.LocalPref == nil || *p.LocalPref == *q.LocalPref
}

func (p Path) String() string {
	s := p.Prefix.String()
	if len(p.Communities) > 0 {
		s += fmt.Sprintf(" communities=%v", communityStrings(p.Communities))
	}
	if len(p.LargeCommunities) > 0 {
		s += fmt.Sprintf(" large=%v", p.LargeCommunities)
	}
	if p.LocalPref != nil {
		s += fmt.Sprintf(" local-pref=%d", *p.LocalPref)
	}
	return s
}

func communityStrings(cs []uint32) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%d:%d", c>>16, c&0xffff)
	}
	return out
}

// PeerError is a problem with one BGPPeer's session on this node.
type PeerError struct {
	Peer string
	Err  error
}

func (e *PeerError) Error() string { return fmt.Sprintf("BGPPeer %q: %v", e.Peer, e.Err) }
func (e *PeerError) Unwrap() error { return e.Err }

// Plan is what this node should do: the sessions it opens and, per session
// name, the paths it advertises on it (sorted by prefix). A session with
// nothing to advertise is still opened.
type Plan struct {
	Sessions []Session
	Paths    map[string][]Path
	// Problems are configuration errors that left a session out; the glue
	// reports them as Events and conditions.
	Problems []error
}

// Compute decides the Plan for in.Node. It is a pure function of its input:
// a prefix disappears from the Plan (and Announcer withdraws it) when its
// Service goes, loses its last ready local endpoint under
// externalTrafficPolicy Local, or this node stops being selected.
//
// An advertisement applies to a Service when it selects the Service's pool
// and its service and namespace selectors select the Service. When several
// advertisements give the same prefix to the same session, the path
// carries the union of their communities and the highest local
// preference, so the result does not depend on the order of the input.
func Compute(in Input) Plan {
	plan := Plan{Paths: map[string][]Path{}}
	peers := slices.Clone(in.Peers)
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	// Two sessions from one node to one router address would collide on
	// the router and flap; the first by name wins.
	byAddr := map[netip.Addr]string{}
	for _, p := range peers {
		if !p.Nodes.Matches(in.Node.Labels) {
			continue
		}
		if other, dup := byAddr[p.Address]; dup {
			plan.Problems = append(plan.Problems, &PeerError{Peer: p.Name, Err: fmt.Errorf("node %q already has a session to %s from BGPPeer %q; only one session per router address is opened", in.Node.Name, p.Address, other)})
			continue
		}
		s := p.Session
		if !s.RouterID.IsValid() {
			s.RouterID = in.Node.RouterID
		}
		if !s.RouterID.Is4() {
			plan.Problems = append(plan.Problems, &PeerError{Peer: s.Name, Err: fmt.Errorf("node %q has no IPv4 address to use as router ID; set routerID", in.Node.Name)})
			continue
		}
		byAddr[p.Address] = p.Name
		plan.Sessions = append(plan.Sessions, s)
	}
	for _, s := range plan.Sessions {
		plan.Paths[s.Name] = nil
	}
	if lbservice.Excluded(in.Node.Labels) || in.Node.NetworkUnavailable {
		return plan
	}

	var advs []*Advertisement
	for i := range in.Advertisements {
		if in.Advertisements[i].Nodes.Matches(in.Node.Labels) {
			advs = append(advs, &in.Advertisements[i])
		}
	}

	acc := map[string]map[netip.Prefix]*Path{}
	for _, svc := range in.Services {
		if svc.LocalTraffic && !svc.ReadyNodes[in.Node.Name] {
			continue
		}
		for _, adv := range advs {
			if !adv.selectsPool(svc.Pool, in.PoolLabels[svc.Pool]) || !adv.Services.Matches(svc.Labels, svc.NamespaceLabels) {
				continue
			}
			for _, ip := range svc.IPs {
				ip = ip.Unmap()
				prefix := adv.prefix(ip)
				for _, s := range plan.Sessions {
					// A path's next hop is the session's local address, so
					// a family only goes over a session of that family.
					if s.Address.Is4() != ip.Is4() || !adv.selectsPeer(s.Name) {
						continue
					}
					merge(acc, s, prefix, adv)
				}
			}
		}
	}
	for name, byPrefix := range acc {
		paths := make([]Path, 0, len(byPrefix))
		for _, p := range byPrefix {
			slices.Sort(p.Communities)
			p.Communities = slices.Compact(p.Communities)
			slices.SortFunc(p.LargeCommunities, LargeCommunity.compare)
			p.LargeCommunities = slices.Compact(p.LargeCommunities)
			paths = append(paths, *p)
		}
		slices.SortFunc(paths, func(a, b Path) int { return comparePrefix(a.Prefix, b.Prefix) })
		plan.Paths[name] = paths
	}
	return plan
}

func merge(acc map[string]map[netip.Prefix]*Path, s Session, prefix netip.Prefix, adv *Advertisement) {
	byPrefix := acc[s.Name]
	if byPrefix == nil {
		byPrefix = map[netip.Prefix]*Path{}
		acc[s.Name] = byPrefix
	}
	p := byPrefix[prefix]
	if p == nil {
		p = &Path{Prefix: prefix}
		byPrefix[prefix] = p
	}
	p.Communities = append(p.Communities, adv.Communities...)
	p.LargeCommunities = append(p.LargeCommunities, adv.LargeCommunities...)
	if s.Internal() && adv.LocalPref != nil && (p.LocalPref == nil || *adv.LocalPref > *p.LocalPref) {
		v := *adv.LocalPref
		p.LocalPref = &v
	}
}

func (a *Advertisement) selectsPool(name string, poolLabels map[string]string) bool {
	if len(a.Pools) == 0 && len(a.PoolSelectors) == 0 {
		return true
	}
	if slices.Contains(a.Pools, name) {
		return true
	}
	for _, sel := range a.PoolSelectors {
		if sel.Matches(labels.Set(poolLabels)) {
			return true
		}
	}
	return false
}

func (a *Advertisement) selectsPeer(name string) bool {
	return len(a.Peers) == 0 || slices.Contains(a.Peers, name)
}

func (a *Advertisement) prefix(ip netip.Addr) netip.Prefix {
	bits := ip.BitLen()
	if ip.Is4() && a.AggregationLength != 0 {
		bits = a.AggregationLength
	}
	if ip.Is6() && a.AggregationLengthV6 != 0 {
		bits = a.AggregationLengthV6
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		// Lengths are validated on the way in; fall back to a host route
		// rather than advertise something wider than asked.
		return netip.PrefixFrom(ip, ip.BitLen())
	}
	return p
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
