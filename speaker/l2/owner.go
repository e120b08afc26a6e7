// Package l2 announces LoadBalancer addresses at layer 2: it chooses which
// node owns each address (Owner, a pure function every speaker computes the
// same way) and answers ARP and NDP for the addresses this node owns
// (Announcer, Responder).
package l2

import (
	"hash/fnv"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/portico-lb/portico/lbservice"
)

// Node is what owner choice knows of one live speaker's node.
type Node struct {
	Name   string
	Labels map[string]string
	// NetworkUnavailable mirrors the Node condition of that name.
	NetworkUnavailable bool
	// Interfaces are the node's interfaces and their prefixes, as its
	// speaker reports them through memberlist.
	Interfaces map[string][]netip.Prefix
}

// Advertisement is an L2Advertisement that selects the address's pool,
// reduced to what owner choice needs.
type Advertisement struct {
	// NodeSelectors select the nodes that may own the address; none
	// selects every node.
	NodeSelectors []labels.Selector
	// Interfaces limit the interfaces the owner answers on; none means
	// the interfaces on the address's subnet.
	Interfaces []string
}

// selects tells whether the advertisement lets node own addresses.
func (a Advertisement) selects(n Node) bool {
	if len(a.NodeSelectors) == 0 {
		return true
	}
	set := labels.Set(n.Labels)
	for _, s := range a.NodeSelectors {
		if s.Matches(set) {
			return true
		}
	}
	return false
}

// Address is one LoadBalancer address to place.
type Address struct {
	IP netip.Addr
	// Advertisements are the L2Advertisements that select the address's
	// pool; with none, nobody announces the address at layer 2.
	Advertisements []Advertisement
	// LocalOnly is set when a Service using the address has
	// externalTrafficPolicy: Local; Endpoints then names the nodes that
	// may own it.
	LocalOnly bool
	// Endpoints are the nodes with a ready local endpoint for every
	// Local Service on the address.
	Endpoints map[string]bool
}

// Owner returns the node that announces addr among live, the nodes of the
// live speakers, or false when no node is eligible. It does no I/O: every
// speaker, given the same inputs, gets the same answer.
//
// A node is eligible when an advertisement selects it, it is not labelled
// lbservice.ExcludeLabel, it is not NetworkUnavailable, it has a ready local endpoint
// when the address is LocalOnly, it has an interface to answer on (one the
// advertisements name, when they all name some), and it has an interface
// on the address's subnet if any eligible node has one. The owner is the eligible node that
// ranks first by rendezvous hash of (node, address), so a node joining or
// leaving moves only the addresses it wins or owned.
func Owner(addr Address, live []Node) (string, bool) {
	eligible := Eligible(addr, live)
	if len(eligible) == 0 {
		return "", false
	}
	best, bestScore := "", uint64(0)
	for _, n := range eligible {
		s := score(n.Name, addr.IP)
		if best == "" || s > bestScore || (s == bestScore && n.Name < best) {
			best, bestScore = n.Name, s
		}
	}
	return best, true
}

// Eligible returns the nodes of live that may own addr, in the order given.
func Eligible(addr Address, live []Node) []Node {
	var out []Node
	onSubnet := false
	for _, n := range live {
		if !mayOwn(addr, n) {
			continue
		}
		if hasSubnet(n, addr.IP) {
			if !onSubnet {
				// The first node on the subnet: those seen before are off it.
				out, onSubnet = out[:0], true
			}
			out = append(out, n)
		} else if !onSubnet {
			out = append(out, n)
		}
	}
	return out
}

func mayOwn(addr Address, n Node) bool {
	if lbservice.Excluded(n.Labels) {
		return false
	}
	if n.NetworkUnavailable {
		return false
	}
	if addr.LocalOnly && !addr.Endpoints[n.Name] {
		return false
	}
	if !slices.ContainsFunc(addr.Advertisements, func(a Advertisement) bool { return a.selects(n) }) {
		return false
	}
	return len(Interfaces(addr, n, n.Interfaces)) > 0
}

func hasSubnet(n Node, ip netip.Addr) bool {
	for _, prefixes := range n.Interfaces {
		if slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			return true
		}
	}
	return false
}

// Interfaces returns the interfaces node answers on for addr, out of
// local, its interfaces and their prefixes: those the advertisements
// selecting the node name, if every one of them names some; otherwise the
// interfaces on the address's subnet, and when none is on it, all those
// with an address of its family (ARP needs an IPv4 address on the
// interface, NDP an IPv6 one).
// Owner choice applies it to the interfaces a node gossips; the owner
// applies it to the interfaces it has.
func Interfaces(addr Address, node Node, local map[string][]netip.Prefix) []string {
	named := map[string]bool{}
	anyUnnamed := false
	for _, a := range addr.Advertisements {
		if !a.selects(node) {
			continue
		}
		if len(a.Interfaces) == 0 {
			anyUnnamed = true
		}
		for _, i := range a.Interfaces {
			named[i] = true
		}
	}
	var out []string
	if !anyUnnamed && len(named) > 0 {
		for name := range local {
			if named[name] {
				out = append(out, name)
			}
		}
		slices.Sort(out)
		return out
	}
	for name, prefixes := range local {
		if slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(addr.IP) }) {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		for name, prefixes := range local {
			if slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Addr().Is4() == addr.IP.Is4() }) {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// score is the rendezvous weight of (node, ip): FNV-1a of "node/ip", then a
// 64-bit finalizer, because FNV alone mixes the last bytes poorly and
// addresses differ mostly in their last bytes.
func score(node string, ip netip.Addr) uint64 {
	h := fnv.New64a()
	h.Write([]byte(node))
	h.Write([]byte{'/'})
	b := ip.Unmap().As16()
	h.Write(b[:])
	return mix64(h.Sum64())
}

// mix64 is the splitmix64 / MurmurHash3 fmix64 finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
