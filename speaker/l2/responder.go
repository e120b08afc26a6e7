package l2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// DefaultGratuitous is when a new owner announces itself, counted from the
// moment it becomes owner: at once, then twice more in case the first
// packets are lost or a switch is still learning.
var DefaultGratuitous = []time.Duration{0, 500 * time.Millisecond, 2 * time.Second}

// ResponderOptions tune a Responder.
type ResponderOptions struct {
	// Gratuitous is the schedule of gratuitous ARP / unsolicited NA after
	// an address is taken, increasing; empty means DefaultGratuitous.
	Gratuitous []time.Duration
	// Refresh, when positive, repeats the gratuitous packets this often
	// for as long as the address is owned.
	Refresh time.Duration
	Log     *slog.Logger
}

// Responder answers ARP (IPv4) and NDP (IPv6) on one interface for the
// addresses it owns, and announces each address when it takes it.
//
// One goroutine (run) owns the set of addresses, the gratuitous schedule
// and the multicast groups; SetAddresses sends it the new set. The readers
// only look at an immutable copy of the set, swapped atomically, so an
// address stops being answered the moment it is dropped.
type Responder struct {
	ifi  *net.Interface
	opts ResponderOptions
	log  *slog.Logger

	arp *arp.Client // nil when the interface has no IPv4 address
	ndp *ndp.Conn   // nil when it has no IPv6 link-local address
	// na sends neighbor advertisements from the owned address itself, as
	// the kernel does for its own addresses; some hosts (ndisc6 among
	// them) ignore an answer from any other source. Sending from an
	// address the host does not have needs IPV6_FREEBIND.
	na *ipv6.PacketConn

	owned  atomic.Pointer[map[netip.Addr]bool]
	update chan []netip.Addr
	again  chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Listen opens the ARP and NDP sockets of the named interface and starts
// answering, for no address until SetAddresses. It fails only when neither
// protocol can be served.
func Listen(ifname string, opts ResponderOptions) (*Responder, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s: no Ethernet address, cannot answer ARP or NDP", ifname)
	}
	if len(opts.Gratuitous) == 0 {
		opts.Gratuitous = DefaultGratuitous
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	r := &Responder{ifi: ifi, opts: opts, log: opts.Log.With("interface", ifname), update: make(chan []netip.Addr, 1), again: make(chan struct{}, 1)}
	r.owned.Store(&map[netip.Addr]bool{})

	var arpErr, ndpErr error
	if r.arp, arpErr = arp.Dial(ifi); arpErr != nil {
		r.arp = nil
	}
	if r.ndp, _, ndpErr = ndp.Listen(ifi, ndp.LinkLocal); ndpErr == nil {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeNeighborSolicitation)
		if ndpErr = r.ndp.SetICMPFilter(&f); ndpErr != nil {
			r.ndp.Close()
		}
	}
	if ndpErr == nil {
		if r.na, ndpErr = listenNA(); ndpErr != nil {
			r.ndp.Close()
		}
	}
	if ndpErr != nil {
		r.ndp = nil
	}
	if r.arp == nil && r.ndp == nil {
		return nil, fmt.Errorf("interface %s: ARP: %v; NDP: %v", ifname, arpErr, ndpErr)
	}
	if arpErr != nil {
		r.log.Info("not answering ARP on this interface", "err", arpErr)
	}
	if ndpErr != nil {
		r.log.Info("not answering NDP on this interface", "err", ndpErr)
	}

	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.run(ctx) }()
	if r.arp != nil {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.readARP(ctx) }()
	}
	if r.ndp != nil {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.readNDP(ctx) }()
	}
	return r, nil
}

// ServesARP reports whether the interface answers ARP: it needs an IPv4
// address for that.
func (r *Responder) ServesARP() bool { return r.arp != nil }

// ServesNDP reports whether the interface answers NDP: it needs an IPv6
// link-local address for that.
func (r *Responder) ServesNDP() bool { return r.ndp != nil }

// Name is the interface's name.
func (r *Responder) Name() string { return r.ifi.Name }

// HardwareAddr is the MAC address the responder answers with.
func (r *Responder) HardwareAddr() net.HardwareAddr { return r.ifi.HardwareAddr }

// SetAddresses makes addrs the addresses answered for. Addresses no longer
// in the set stop being answered at once; new ones are announced. Only the
// latest set matters, so a set not yet taken up is replaced.
func (r *Responder) SetAddresses(addrs []netip.Addr) {
	addrs = slices.Clone(addrs)
	// Drop the dropped addresses right now rather than when run gets to it:
	// a reply from a node that lost an address splits the traffic.
	cur := *r.owned.Load()
	keep := make(map[netip.Addr]bool, len(cur))
	for _, a := range addrs {
		if cur[a] {
			keep[a] = true
		}
	}
	if len(keep) != len(cur) {
		r.owned.Store(&keep)
	}
	for {
		select {
		case r.update <- addrs:
			return
		default:
		}
		select {
		case <-r.update: // replace the stale set
		default:
		}
	}
}

// Reannounce sends the gratuitous packets for every owned address again,
// on the same schedule as when they were taken: for when another node may
// have claimed them meanwhile.
func (r *Responder) Reannounce() {
	select {
	case r.again <- struct{}{}:
	default:
	}
}

// Close stops answering and closes the sockets.
func (r *Responder) Close() {
	r.cancel()
	if r.arp != nil {
		r.arp.Close()
	}
	if r.ndp != nil {
		r.ndp.Close()
		r.na.Close()
	}
	r.wg.Wait()
	ownedAddresses.DeleteLabelValues(r.ifi.Name)
}

// run owns the address set, the gratuitous schedule and the groups joined.
func (r *Responder) run(ctx context.Context) {
	owned := map[netip.Addr]bool{}
	groups := map[netip.Addr]int{} // solicited-node group → owned addresses in it
	next := map[netip.Addr]time.Time{}
	step := map[netip.Addr]int{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	schedule := func(now time.Time) {
		var first time.Time
		for _, t := range next {
			if first.IsZero() || t.Before(first) {
				first = t
			}
		}
		timer.Stop()
		if !first.IsZero() {
			timer.Reset(max(first.Sub(now), 0))
		}
	}

	for {
		select {
		case <-ctx.Done():
			for g := range groups {
				_ = r.ndp.LeaveGroup(g)
			}
			return
		case addrs := <-r.update:
			now := time.Now()
			want := map[netip.Addr]bool{}
			for _, a := range addrs {
				want[a] = true
			}
			for a := range owned {
				if !want[a] {
					delete(next, a)
					delete(step, a)
					r.leave(groups, a)
					r.log.Info("stopped answering", "ip", a)
				}
			}
			for a := range want {
				if !owned[a] {
					r.join(groups, a)
					next[a], step[a] = now.Add(r.opts.Gratuitous[0]), 0
					r.log.Info("answering", "ip", a)
				}
			}
			owned = want
			snapshot := maps.Clone(want)
			r.owned.Store(&snapshot)
			ownedAddresses.WithLabelValues(r.ifi.Name).Set(float64(len(owned)))
			schedule(now)
		case <-r.again:
			now := time.Now()
			for a := range owned {
				next[a], step[a] = now.Add(r.opts.Gratuitous[0]), 0
			}
			schedule(now)
		case <-timer.C:
			now := time.Now()
			for a, t := range next {
				if t.After(now) {
					continue
				}
				r.announce(a)
				step[a]++
				switch {
				case step[a] < len(r.opts.Gratuitous):
					next[a] = now.Add(r.opts.Gratuitous[step[a]] - r.opts.Gratuitous[step[a]-1])
				case r.opts.Refresh > 0:
					next[a] = now.Add(r.opts.Refresh)
				default:
					delete(next, a)
					delete(step, a)
				}
			}
			schedule(now)
		}
	}
}

func (r *Responder) join(groups map[netip.Addr]int, a netip.Addr) {
	if !a.Is6() || r.ndp == nil {
		return
	}
	g, err := ndp.SolicitedNodeMulticast(a)
	if err != nil {
		return
	}
	if groups[g] == 0 {
		if err := r.ndp.JoinGroup(g); err != nil {
			r.log.Error("joining the solicited-node group failed; solicitations may not arrive", "ip", a, "group", g, "err", err)
		}
	}
	groups[g]++
}

func (r *Responder) leave(groups map[netip.Addr]int, a netip.Addr) {
	if !a.Is6() || r.ndp == nil {
		return
	}
	g, err := ndp.SolicitedNodeMulticast(a)
	if err != nil {
		return
	}
	if groups[g]--; groups[g] <= 0 {
		delete(groups, g)
		_ = r.ndp.LeaveGroup(g)
	}
}

// announce sends the gratuitous packets for a: for IPv4 both the request
// and the reply form, since hosts differ in which they heed; for IPv6 an
// unsolicited NA with the override flag to all nodes.
func (r *Responder) announce(a netip.Addr) {
	mac := r.ifi.HardwareAddr
	if a.Is4() && r.arp != nil {
		// The reply form must name the sender as target too, or Linux
		// does not take it as gratuitous (arp_is_garp).
		forms := []struct {
			op     arp.Operation
			target net.HardwareAddr
		}{{arp.OperationRequest, make(net.HardwareAddr, 6)}, {arp.OperationReply, mac}}
		for _, f := range forms {
			p, err := arp.NewPacket(f.op, mac, a, f.target, a)
			if err == nil {
				err = r.arp.WriteTo(p, ethernet.Broadcast)
			}
			if err != nil {
				r.log.Error("gratuitous ARP failed", "ip", a, "err", err)
				continue
			}
			gratuitousSent.WithLabelValues("ipv4").Inc()
		}
	}
	if a.Is6() && r.ndp != nil {
		na := &ndp.NeighborAdvertisement{
			Override:      true,
			TargetAddress: a,
			Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
		}
		if err := r.sendNA(na, netip.IPv6LinkLocalAllNodes()); err != nil {
			r.log.Error("unsolicited neighbor advertisement failed", "ip", a, "err", err)
			return
		}
		gratuitousSent.WithLabelValues("ipv6").Inc()
	}
}

func (r *Responder) readARP(ctx context.Context) {
	mac := r.ifi.HardwareAddr
	for {
		p, _, err := r.arp.Read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Error("reading ARP failed", "err", err)
			if !sleep(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		if p.Operation != arp.OperationRequest || slices.Equal(p.SenderHardwareAddr, mac) {
			continue
		}
		if !(*r.owned.Load())[p.TargetIP] {
			continue
		}
		requestsReceived.WithLabelValues(r.ifi.Name, "arp").Inc()
		if err := r.arp.Reply(p, mac, p.TargetIP); err != nil {
			r.log.Error("ARP reply failed", "ip", p.TargetIP, "err", err)
			continue
		}
		responsesSent.WithLabelValues(r.ifi.Name, "arp").Inc()
	}
}

func (r *Responder) readNDP(ctx context.Context) {
	mac := r.ifi.HardwareAddr
	for {
		m, _, src, err := r.ndp.ReadFrom()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Error("reading NDP failed", "err", err)
			if !sleep(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		ns, ok := m.(*ndp.NeighborSolicitation)
		if !ok || !(*r.owned.Load())[ns.TargetAddress] {
			continue
		}
		requestsReceived.WithLabelValues(r.ifi.Name, "ndp").Inc()
		na := &ndp.NeighborAdvertisement{
			Solicited:     true,
			Override:      true,
			TargetAddress: ns.TargetAddress,
			Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
		}
		dst := src
		if src.IsUnspecified() {
			// Duplicate address detection: answer all nodes, unsolicited.
			na.Solicited, dst = false, netip.IPv6LinkLocalAllNodes()
		}
		if err := r.sendNA(na, dst); err != nil {
			r.log.Error("neighbor advertisement failed", "ip", ns.TargetAddress, "err", err)
			continue
		}
		responsesSent.WithLabelValues(r.ifi.Name, "ndp").Inc()
	}
}

// listenNA opens the socket neighbor advertisements are sent on. It
// receives nothing: its filter blocks every ICMPv6 type.
func listenNA() (*ipv6.PacketConn, error) {
	var serr error
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("neighbor advertisement socket: %w", err)
	}
	pc := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	for _, err := range []error{
		pc.SetICMPFilter(&f),
		pc.SetHopLimit(ndp.HopLimit),
		pc.SetMulticastHopLimit(ndp.HopLimit),
		pc.SetChecksum(true, 2),
	} {
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("neighbor advertisement socket: %w", err)
		}
	}
	return pc, nil
}

// sendNA sends na from its target address out of this interface.
func (r *Responder) sendNA(na *ndp.NeighborAdvertisement, dst netip.Addr) error {
	b, err := ndp.MarshalMessage(na)
	if err != nil {
		return err
	}
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: na.TargetAddress.AsSlice(), IfIndex: r.ifi.Index}
	_, err = r.na.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice(), Zone: r.ifi.Name})
	return err
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
