// Package member tells the speakers which of them are alive, through
// hashicorp/memberlist: gossip over UDP and TCP between the nodes, with no
// API server involved once the speakers have found each other. Each
// speaker also gossips its interfaces and their subnets, which owner
// choice needs for every node and which only the node itself knows.
package member

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Member is one live speaker.
type Member struct {
	Name       string // the node's name
	Addr       netip.AddrPort
	Interfaces Interfaces
}

// Config says how to run this node's member of the cluster.
type Config struct {
	Node     string     // this node's name, unique in the cluster
	BindAddr netip.Addr // address to listen on and advertise (the pod IP)
	Port     int
	// Key encrypts and authenticates gossip (16, 24 or 32 bytes, AES);
	// nil sends it in clear, for tests only.
	Key []byte
	// Interfaces are this node's interfaces, gossiped to the others.
	Interfaces Interfaces

	// Failure detection; zero means the Default. A dead member is noticed
	// after about one probe round over the members plus ProbeTimeout plus
	// SuspicionMult × ProbeInterval (× log10 of the member count, beyond 10).
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	SuspicionMult  int
	GossipInterval time.Duration

	// OnChange is called with the live members, this one included, each
	// time the set or a member's interfaces change, from the first Join
	// on. Calls come one at a time from one goroutine.
	//
	// Before the first Join a starting speaker knows only itself; told
	// so, it would own every address and claim them all by gratuitous
	// ARP, taking them from their owners until it learnt better.
	OnChange func([]Member)
	Log      *slog.Logger
}

// Defaults for sub-second failure detection on a LAN: memberlist's LAN
// defaults (1 s probes, suspicion of 4 × 1 s × log N) take 5 s or more.
//
// DefaultPort is not memberlist's and MetalLB's 7946: both speakers run on
// the node's own network, so with the same port a node could not run
// MetalLB and Portico side by side while Services move from one to the
// other. manifests/speaker/daemonset.yaml says the same number.
const (
	DefaultPort           = 7947
	DefaultProbeInterval  = 150 * time.Millisecond
	DefaultProbeTimeout   = 75 * time.Millisecond
	DefaultSuspicionMult  = 2
	DefaultGossipInterval = 50 * time.Millisecond
)

// members counts the speakers this one takes as live (Members: memberlist's
// alive and suspect ones) under state="alive"; dead and left ones are
// dropped from memberlist's list, so they have no series.
var members = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "portico_speaker_memberlist_members",
	Help: "Speakers this speaker sees in memberlist, itself included; state=\"alive\" counts those it may hand addresses to (alive or not yet declared dead).",
}, []string{"state"})

func init() { metrics.Registry.MustRegister(members) }

// List is this node's membership of the speakers' cluster.
type List struct {
	ml      *memberlist.Memberlist
	cfg     Config
	log     *slog.Logger
	meta    atomic.Pointer[[]byte]
	changed chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	left    atomic.Bool
	joined  atomic.Bool // OnChange is held back until the first Join
}

// Start joins no one yet: it opens the sockets and starts gossiping, so
// that others can join this node and Join can join others.
func Start(cfg Config) (*List, error) {
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	l := &List{cfg: cfg, log: cfg.Log, changed: make(chan struct{}, 1), stop: make(chan struct{})}
	l.setMeta(cfg.Interfaces)

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Node
	mc.BindAddr = cfg.BindAddr.String()
	mc.BindPort = cfg.Port
	mc.AdvertiseAddr = cfg.BindAddr.String()
	mc.AdvertisePort = cfg.Port
	mc.ProbeInterval = cmp.Or(cfg.ProbeInterval, DefaultProbeInterval)
	mc.ProbeTimeout = cmp.Or(cfg.ProbeTimeout, DefaultProbeTimeout)
	mc.SuspicionMult = cmp.Or(cfg.SuspicionMult, DefaultSuspicionMult)
	mc.GossipInterval = cmp.Or(cfg.GossipInterval, DefaultGossipInterval)
	// A node that restarts comes back under its name at once.
	mc.DeadNodeReclaimTime = time.Second
	// Join and state syncs use TCP; on a LAN 2s is ample, and a dead
	// peer must not hold a Join up for memberlist's default 10s.
	mc.TCPTimeout = 2 * time.Second
	mc.SecretKey = cfg.Key
	mc.Delegate = delegate{l}
	mc.Events = events{l}
	mc.Logger = log.New(&logWriter{l.log}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("memberlist on %s: %w", net.JoinHostPort(mc.BindAddr, fmt.Sprint(mc.BindPort)), err)
	}
	l.ml = ml
	l.wg.Add(1)
	go func() { defer l.wg.Done(); l.notify() }()
	l.poke()
	return l, nil
}

// Join contacts the given speakers (host:port or host, DefaultPort
// implied) and merges clusters with them. Addresses already members are
// left alone. Call it at start even with no one to join: OnChange is
// called only from the first Join on, whatever its result.
func (l *List) Join(addrs []string) (int, error) {
	defer func() {
		if l.joined.CompareAndSwap(false, true) {
			l.poke()
		}
	}()
	known := map[string]bool{}
	for _, n := range l.ml.Members() {
		known[n.Address()] = true
	}
	var todo []string
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, fmt.Sprint(l.cfg.Port))
		}
		if ap, err := netip.ParseAddrPort(a); err == nil {
			a = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
		}
		if !known[a] {
			todo = append(todo, a)
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	return l.ml.Join(todo)
}

// Members returns the live members, this one included, by name.
func (l *List) Members() []Member {
	var out []Member
	for _, n := range l.ml.Members() {
		if n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect {
			continue
		}
		ifaces, err := DecodeInterfaces(n.Meta)
		if err != nil {
			l.log.Info("member sent unreadable interfaces; taking what could be read", "node", n.Name, "err", err)
		}
		addr, _ := netip.AddrFromSlice(n.Addr)
		out = append(out, Member{Name: n.Name, Addr: netip.AddrPortFrom(addr.Unmap(), n.Port), Interfaces: ifaces})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// SetInterfaces changes the interfaces gossiped for this node.
func (l *List) SetInterfaces(ctx context.Context, ifaces Interfaces) error {
	if !l.setMeta(ifaces) {
		return nil
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	return l.ml.UpdateNode(timeout)
}

// setMeta encodes ifaces as this node's metadata and reports whether it
// changed.
func (l *List) setMeta(ifaces Interfaces) bool {
	meta, dropped := EncodeInterfaces(ifaces)
	if len(dropped) > 0 {
		l.log.Warn("too many interfaces to gossip them all; these are left out and cannot be chosen for announcing", "dropped", dropped)
	}
	if old := l.meta.Load(); old != nil && slices.Equal(*old, meta) {
		return false
	}
	l.meta.Store(&meta)
	return true
}

// Leave tells the others this node is going, so they stop counting on it
// at once instead of waiting for failure detection, then shuts down.
func (l *List) Leave(timeout time.Duration) error {
	if !l.left.CompareAndSwap(false, true) {
		return nil
	}
	err := l.ml.Leave(timeout)
	if serr := l.ml.Shutdown(); err == nil {
		err = serr
	}
	close(l.stop)
	l.wg.Wait()
	return err
}

// poke tells the notify goroutine that membership changed. memberlist
// calls the event delegate with its locks held, so the delegate must not
// call back into it: it only pokes.
func (l *List) poke() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *List) notify() {
	for {
		select {
		case <-l.stop:
			return
		case <-l.changed:
			live := l.Members()
			members.WithLabelValues("alive").Set(float64(len(live)))
			if l.cfg.OnChange != nil && l.joined.Load() {
				l.cfg.OnChange(live)
			}
		}
	}
}

type delegate struct{ l *List }

func (d delegate) NodeMeta(limit int) []byte {
	m := *d.l.meta.Load()
	if len(m) > limit {
		return m[:0]
	}
	return m
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

type events struct{ l *List }

func (e events) NotifyJoin(n *memberlist.Node) {
	e.l.log.Info("speaker joined", "node", n.Name, "addr", n.Address())
	e.l.poke()
}
func (e events) NotifyLeave(n *memberlist.Node) {
	e.l.log.Info("speaker left or failed", "node", n.Name, "addr", n.Address())
	e.l.poke()
}
func (e events) NotifyUpdate(n *memberlist.Node) { e.l.poke() }

// logWriter passes memberlist's warnings and errors to slog and drops its
// debug chatter.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(b []byte) (int, error) {
	line := strings.TrimSpace(string(b))
	switch {
	case strings.Contains(line, "[ERR]"):
		w.log.Error("memberlist", "msg", line)
	case strings.Contains(line, "[WARN]"):
		w.log.Warn("memberlist", "msg", line)
	}
	return len(b), nil
}

var _ io.Writer = (*logWriter)(nil)
