package l2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/speaker"
)

// Announcer is the layer 2 speaker.Announcer: it works out which
// addresses this node owns and keeps one Responder per interface that has
// any, closing those that have none left.
type Announcer struct {
	opts    ResponderOptions
	exclude []string
	log     *slog.Logger
	// responders by interface, and the members of the last State; only
	// Announce's caller touches them.
	responders map[string]*Responder
	members    map[string]bool
	// opened holds, for each responder, what its interface looked like
	// when it was last opened, and when it may be opened again should it
	// lack a protocol its addresses need.
	opened map[string]reopen
	// last is what the previous Announce reported. When the interfaces
	// cannot be listed the responders are left as they are, and so is
	// the report: the addresses are still answered.
	last []speaker.Announcement
	// owns is the addresses this node answered for after the previous
	// Announce, to count owner changes.
	owns map[netip.Addr]bool

	// LocalInterfaces, Listen and time.Now, replaced in tests.
	interfaces func() (map[string][]netip.Prefix, error)
	listen     func(string, ResponderOptions) (*Responder, error)
	now        func() time.Time
}

// reopen is when a responder lacking a protocol is opened again: at once
// when its interface's addresses change, else not before at.
type reopen struct {
	prefixes []netip.Prefix
	at       time.Time
}

// ReopenEvery bounds how often a responder that lacks a protocol (an
// interface without an IPv4 address, or whose IPv6 link-local address is
// not ready yet) is opened again while its addresses stay the same. Every
// change in the cluster syncs the announcer; reopening raw sockets on each
// would churn them for nothing.
const ReopenEvery = 5 * time.Second

var _ speaker.Announcer = (*Announcer)(nil)

// NewAnnouncer returns an Announcer whose responders use opts, on the
// interfaces LocalInterfaces(exclude) finds.
func NewAnnouncer(opts ResponderOptions, exclude []string) *Announcer {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Announcer{
		opts: opts, exclude: exclude, log: opts.Log,
		responders: map[string]*Responder{}, opened: map[string]reopen{},
		interfaces: func() (map[string][]netip.Prefix, error) { return LocalInterfaces(exclude) },
		listen:     Listen,
		now:        time.Now,
	}
}

// Announce implements speaker.Announcer.
func (a *Announcer) Announce(ctx context.Context, st *speaker.State) ([]speaker.Announcement, error) {
	local, err := a.interfaces()
	if err != nil {
		return slices.Clone(a.last), err
	}
	owned := Owned(st, local)
	// A member that was not there last time may have been apart from us
	// (a partition, a cut link) and claiming our addresses; once it backs
	// off, nothing would tell its clients to come back. Announce again.
	newcomer := false
	members := map[string]bool{}
	for _, m := range st.Members {
		members[m.Name] = true
		if a.members != nil && !a.members[m.Name] {
			newcomer = true
		}
	}
	a.members = members
	want := map[string][]netip.Addr{}
	for _, an := range owned {
		for _, ifname := range an.Via {
			if !slices.Contains(want[ifname], an.IP) {
				want[ifname] = append(want[ifname], an.IP)
			}
		}
	}
	var errs []error
	type ifIP struct {
		ifname string
		ip     netip.Addr
	}
	failed := map[ifIP]bool{}
	for ifname, ips := range want {
		needARP := slices.ContainsFunc(ips, netip.Addr.Is4)
		needNDP := slices.ContainsFunc(ips, netip.Addr.Is6)
		r := a.responders[ifname]
		if r != nil && (needARP && !r.ServesARP() || needNDP && !r.ServesNDP()) && a.mayReopen(ifname, local[ifname]) {
			// Opened before the interface had the address it lacks? Try
			// again, and keep the new one only if it serves more.
			if fresh, err := a.listen(ifname, a.opts); err == nil {
				if (fresh.ServesARP() || !r.ServesARP()) && (fresh.ServesNDP() || !r.ServesNDP()) {
					r.Close()
					r = fresh
					a.responders[ifname] = r
				} else {
					fresh.Close()
				}
			}
			a.opened[ifname] = reopen{prefixes: local[ifname], at: a.now().Add(ReopenEvery)}
		}
		if r == nil {
			if r, err = a.listen(ifname, a.opts); err != nil {
				errs = append(errs, err)
				for _, ip := range ips {
					failed[ifIP{ifname, ip}] = true
				}
				continue
			}
			a.responders[ifname] = r
			a.opened[ifname] = reopen{prefixes: local[ifname], at: a.now().Add(ReopenEvery)}
		}
		r.SetAddresses(ips)
		if newcomer {
			r.Reannounce()
		}
		if needARP && !r.ServesARP() {
			errs = append(errs, fmt.Errorf("interface %s: cannot answer ARP: it has no IPv4 address", ifname))
		}
		if needNDP && !r.ServesNDP() {
			errs = append(errs, fmt.Errorf("interface %s: cannot answer NDP: it has no IPv6 link-local address", ifname))
		}
		for _, ip := range ips {
			if ip.Is4() && !r.ServesARP() || ip.Is6() && !r.ServesNDP() {
				failed[ifIP{ifname, ip}] = true
			}
		}
	}
	for ifname, r := range a.responders {
		if _, ok := want[ifname]; !ok {
			r.SetAddresses(nil)
			r.Close()
			delete(a.responders, ifname)
			delete(a.opened, ifname)
		}
	}
	// Report only what is really answered.
	out := owned[:0]
	for _, an := range owned {
		an.Via = slices.DeleteFunc(an.Via, func(i string) bool { return failed[ifIP{i, an.IP}] })
		if len(an.Via) > 0 {
			out = append(out, an)
		}
	}
	a.last = slices.Clone(out)
	a.owns = countOwnerChanges(a.owns, out)
	return out, errors.Join(append(errs, invalid(st)...)...)
}

// invalid returns the problems of the L2Advertisements that are left
// out: those whose service or namespace selectors do not parse.
func invalid(st *speaker.State) []error {
	var out []error
	for _, adv := range st.L2Advertisements {
		if _, err := lbservice.ParseServiceSelection(adv.Spec.ServiceSelectors, adv.Spec.NamespaceSelectors); err != nil {
			out = append(out, fmt.Errorf("L2Advertisement %q is left out: %w", adv.Name, err))
		}
	}
	return out
}

// countOwnerChanges counts each address this node starts or stops
// answering for, from what it answered for before (was) and what it
// announces now, and returns the addresses it answers for now.
func countOwnerChanges(was map[netip.Addr]bool, now []speaker.Announcement) map[netip.Addr]bool {
	owns := make(map[netip.Addr]bool, len(now))
	for _, an := range now {
		owns[an.IP] = true
	}
	changes := 0
	for ip := range owns {
		if !was[ip] {
			changes++
		}
	}
	for ip := range was {
		if !owns[ip] {
			changes++
		}
	}
	ownerChanges.Add(float64(changes))
	return owns
}

// mayReopen reports whether the responder on ifname, which lacks a
// protocol, may be opened again now that the interface has prefixes.
func (a *Announcer) mayReopen(ifname string, prefixes []netip.Prefix) bool {
	r, ok := a.opened[ifname]
	return !ok || !slices.Equal(r.prefixes, prefixes) || !a.now().Before(r.at)
}

// Close stops every responder.
func (a *Announcer) Close() {
	for ifname, r := range a.responders {
		r.Close()
		delete(a.responders, ifname)
	}
	clear(a.opened)
	a.last = nil
}

// Owned returns the layer 2 announcements this node (st.Node) makes given
// its local interfaces: for every address it owns, on which interfaces.
// It does no I/O.
func Owned(st *speaker.State, local map[string][]netip.Prefix) []speaker.Announcement {
	live := LiveNodes(st)
	self := slices.IndexFunc(live, func(n Node) bool { return n.Name == st.Node })
	if self < 0 {
		return nil
	}
	var out []speaker.Announcement
	for _, g := range groupByIP(st) {
		addr := AddressOf(st, g.ip, g.services)
		owner, ok := Owner(addr, live)
		if !ok || owner != st.Node {
			continue
		}
		via := Interfaces(addr, live[self], local)
		if len(via) == 0 {
			continue
		}
		for _, svc := range g.services {
			out = append(out, speaker.Announcement{Service: svc.Name, IP: g.ip, Protocol: speaker.ProtocolL2, Via: slices.Clone(via)})
		}
	}
	return out
}

type ipGroup struct {
	ip       netip.Addr
	services []speaker.Service
}

// groupByIP gathers the Services sharing each address, in address order.
func groupByIP(st *speaker.State) []ipGroup {
	idx := map[netip.Addr]int{}
	var out []ipGroup
	for _, svc := range st.Services {
		for _, ip := range svc.IPs {
			i, ok := idx[ip]
			if !ok {
				i = len(out)
				idx[ip] = i
				out = append(out, ipGroup{ip: ip})
			}
			out[i].services = append(out[i].services, svc)
		}
	}
	slices.SortFunc(out, func(a, b ipGroup) int { return a.ip.Compare(b.ip) })
	return out
}

// AddressOf describes ip, used by services, for owner choice: the
// L2Advertisements covering its pool that apply to any of the services
// (their service and namespace selectors), and when any Service is
// externalTrafficPolicy: Local, the nodes with a ready endpoint of every
// such Service.
func AddressOf(st *speaker.State, ip netip.Addr, services []speaker.Service) Address {
	addr := Address{IP: ip}
	pool := ""
	for _, svc := range services {
		if pool == "" {
			pool = svc.Pool
		}
		if !svc.LocalTraffic {
			continue
		}
		if !addr.LocalOnly {
			addr.LocalOnly = true
			addr.Endpoints = map[string]bool{}
			for n := range svc.ReadyNodes {
				addr.Endpoints[n] = true
			}
			continue
		}
		for n := range addr.Endpoints {
			if !svc.ReadyNodes[n] {
				delete(addr.Endpoints, n)
			}
		}
	}
	for _, adv := range st.L2Advertisements {
		if !st.SelectsPool(pool, adv.Spec.AddressPools, adv.Spec.AddressPoolSelectors) {
			continue
		}
		// An invalid selection is left out; Announce reports it.
		sel, err := lbservice.ParseServiceSelection(adv.Spec.ServiceSelectors, adv.Spec.NamespaceSelectors)
		if err != nil || !slices.ContainsFunc(services, func(svc speaker.Service) bool { return st.SelectsService(sel, svc) }) {
			continue
		}
		ifaces := make([]string, 0, len(adv.Spec.Interfaces))
		for _, i := range adv.Spec.Interfaces {
			ifaces = append(ifaces, string(i))
		}
		addr.Advertisements = append(addr.Advertisements, Advertisement{
			NodeSelectors: lbservice.NodeSelectors(adv.Spec.NodeSelectors),
			Interfaces:    ifaces,
		})
	}
	return addr
}

// LiveNodes are the live speakers' nodes that the API knows, in name order.
func LiveNodes(st *speaker.State) []Node {
	var out []Node
	for _, m := range st.Members {
		n, ok := st.Nodes[m.Name]
		if !ok {
			continue
		}
		out = append(out, Node{
			Name:               n.Name,
			Labels:             n.Labels,
			NetworkUnavailable: lbservice.NetworkUnavailable(n),
			Interfaces:         m.Interfaces,
		})
	}
	return out
}

// DefaultExclude are prefixes of the names of virtual devices that never
// face the LAN: pod bridges and veths of the common network plugins,
// overlay tunnels, kube-proxy's IPVS dummy, NodeLocal DNSCache's dummy.
var DefaultExclude = []string{
	"veth", "cali", "lxc", "cilium", "flannel", "vxlan", "tunl", "genev",
	"cni", "cbr", "docker", "kube-bridge", "kube-ipvs", "weave", "antrea", "ovn", "nodelocaldns",
}

// LocalInterfaces returns this host's interfaces that are up, have an
// Ethernet address and a global unicast address, and whose names start
// with none of exclude, with their global unicast prefixes.
func LocalInterfaces(exclude []string) (map[string][]netip.Prefix, error) {
	ifis, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	out := map[string][]netip.Prefix{}
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 || len(ifi.HardwareAddr) != 6 {
			continue
		}
		if slices.ContainsFunc(exclude, func(p string) bool { return p != "" && strings.HasPrefix(ifi.Name, p) }) {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		var prefixes []netip.Prefix
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok || !ip.Unmap().IsGlobalUnicast() {
				continue
			}
			bits, _ := ipn.Mask.Size()
			prefixes = append(prefixes, netip.PrefixFrom(ip.Unmap(), bits).Masked())
		}
		if len(prefixes) > 0 {
			out[ifi.Name] = prefixes
		}
	}
	return out, nil
}
