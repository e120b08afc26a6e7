package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// Options tune an Announcer; the zero value is what a speaker wants.
type Options struct {
	Logger *slog.Logger
	// ListenPort, when positive, makes every session also accept the
	// router's connection on SourceAddress:ListenPort (sessions without a
	// SourceAddress do not listen). By default nothing listens: the
	// speaker always connects out.
	ListenPort int
	// ConnectRetry is the wait between connection attempts, which GoBGP
	// stretches by a random 0-100% (default 2s; GoBGP's own default of
	// 120s would leave a node silent for minutes after a router restart).
	// After an established session drops, GoBGP first idles a fixed 5s.
	ConnectRetry time.Duration
	// RestartTime is the graceful-restart time announced to peers of
	// sessions with GracefulRestart (default 120s).
	RestartTime time.Duration
	// OnChange, if set, is called when a session goes up or down, from a
	// goroutine of the Announcer; it must not block. The speaker turns it
	// into Events.
	OnChange func(SessionStatus)
}

// SessionStatus is what a session is doing, for Events, metrics and
// porticoctl.
type SessionStatus struct {
	Name    string
	Address netip.Addr
	// State is the BGP FSM state: idle, connect, active, opensent,
	// openconfirm or established.
	State string
	Up    bool
	// Since is the time of the last change of Up.
	Since time.Time
	// Prefixes is the number of prefixes advertised on the session; zero
	// while it is down.
	Prefixes int
}

// Announcer keeps BGP sessions and the paths advertised on them equal to
// the last Plan applied.
//
// Each session runs in its own embedded GoBGP server: a server has one
// RIB that goes to all its neighbors, and Plans give each session its own
// paths, router ID and local ASN. Servers of removed sessions are kept and
// reused, because a GoBGP server cannot be fully stopped.
type Announcer struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex // held by Apply and Close; guards sessions and spare
	sessions map[string]*session
	spare    []*server.BgpServer

	statusMu sync.Mutex // guards status and running; taken by GoBGP's watch goroutines
	status   map[string]*SessionStatus
	// running is sessions by name, for the metrics to read GoBGP's
	// counters without waiting for an Apply.
	running map[string]*session
}

type session struct {
	cfg   Session
	srv   *server.BgpServer
	stop  context.CancelFunc    // ends the watch of peer state
	paths map[netip.Prefix]Path // what GoBGP holds for this session
	// peerAdded is set once the neighbor is configured, after the first
	// paths.
	peerAdded bool
}

// NewAnnouncer returns an Announcer with no sessions.
func NewAnnouncer(opts Options) *Announcer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ConnectRetry <= 0 {
		opts.ConnectRetry = 2 * time.Second
	}
	if opts.RestartTime <= 0 {
		opts.RestartTime = 120 * time.Second
	}
	return &Announcer{
		opts:     opts,
		log:      opts.Logger.With("protocol", "bgp"),
		sessions: map[string]*session{},
		status:   map[string]*SessionStatus{},
		running:  map[string]*session{},
	}
}

// Apply makes the sessions and their paths match plan: new sessions are
// opened, removed ones withdraw their paths and close, changed ones are
// reset, and sessions whose configuration did not change keep running and
// only get their paths added or withdrawn. On error the rest of the plan is
// still applied, and the next Apply retries what failed.
func (a *Announcer) Apply(ctx context.Context, plan Plan) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	want := map[string]bool{}
	for _, cfg := range plan.Sessions {
		want[cfg.Name] = true
		if err := a.applySession(ctx, cfg, plan.Paths[cfg.Name]); err != nil {
			errs = append(errs, &PeerError{Peer: cfg.Name, Err: fmt.Errorf("session: %w", err)})
		}
	}
	for name, s := range a.sessions {
		if !want[name] {
			a.log.Info("closing session", "peer", name, "address", s.cfg.Address)
			a.closeSession(ctx, s, true)
			delete(a.sessions, name)
		}
	}
	return errors.Join(errs...)
}

func (a *Announcer) applySession(ctx context.Context, cfg Session, paths []Path) error {
	s := a.sessions[cfg.Name]
	if s != nil && s.cfg != cfg {
		// A changed session is reset: BGP cannot renegotiate ASNs, timers
		// or capabilities on a running session.
		a.log.Info("resetting session for a configuration change", "peer", cfg.Name, "address", cfg.Address)
		a.closeSession(ctx, s, false)
		delete(a.sessions, cfg.Name)
		s = nil
	}
	if s == nil {
		var err error
		if s, err = a.openSession(ctx, cfg); err != nil {
			return err
		}
		a.sessions[cfg.Name] = s
	}
	// syncPaths records only what GoBGP took, so whatever failed is
	// retried by the next Apply without resetting the session.
	err := a.syncPaths(ctx, s, paths)
	a.statusMu.Lock()
	if st := a.status[cfg.Name]; st != nil {
		st.Prefixes = len(s.paths)
	}
	a.statusMu.Unlock()
	// The neighbor comes after the paths: a session that came up first
	// would send an empty table and End-of-RIB, and a router that kept our
	// routes through a graceful restart would drop them.
	if !s.peerAdded {
		if perr := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: a.peer(cfg)}); perr != nil {
			a.closeSession(ctx, s, false)
			delete(a.sessions, cfg.Name)
			return errors.Join(err, fmt.Errorf("adding the neighbor: %w", perr))
		}
		s.peerAdded = true
		a.log.Info("opened session", "peer", cfg.Name, "address", cfg.Address, "asn", cfg.PeerASN, "local_asn", cfg.MyASN, "router_id", cfg.RouterID)
	}
	return err
}

func (a *Announcer) openSession(ctx context.Context, cfg Session) (*session, error) {
	var srv *server.BgpServer
	if n := len(a.spare); n > 0 {
		srv, a.spare = a.spare[n-1], a.spare[:n-1]
	} else {
		// Servers are reused across sessions, so their logs name the
		// neighbor by address (GoBGP's "Key"), not by BGPPeer.
		srv = server.NewBgpServer(server.LoggerOption(&logger{a.log.With("component", "gobgp")}))
		go srv.Serve() // runs for the life of the process; see Announcer
	}
	global := &api.Global{
		Asn:        cfg.MyASN,
		RouterId:   cfg.RouterID.String(),
		ListenPort: -1,
	}
	if a.opts.ListenPort > 0 && cfg.SourceAddress.IsValid() {
		global.ListenPort = int32(a.opts.ListenPort)
		global.ListenAddresses = []string{cfg.SourceAddress.String()}
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		a.spare = append(a.spare, srv)
		return nil, fmt.Errorf("starting BGP: %w", err)
	}
	s := &session{cfg: cfg, srv: srv, paths: map[netip.Prefix]Path{}}

	a.statusMu.Lock()
	a.status[cfg.Name] = &SessionStatus{Name: cfg.Name, Address: cfg.Address, State: "idle", Since: time.Now()}
	a.running[cfg.Name] = s
	a.statusMu.Unlock()
	watchCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	err := srv.WatchEvent(watchCtx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		if pe := r.GetPeer(); pe != nil && pe.Type == api.WatchEventResponse_PeerEvent_STATE && pe.Peer.GetState() != nil {
			a.peerState(cfg.Name, pe.Peer.State.SessionState)
		}
	})
	if err != nil {
		a.closeSession(ctx, s, false)
		return nil, fmt.Errorf("watching the session: %w", err)
	}
	return s, nil
}

// closeSession stops s. Withdrawing first makes the router drop the routes
// at once even when graceful restart would otherwise keep them.
func (a *Announcer) closeSession(ctx context.Context, s *session, withdraw bool) {
	if withdraw {
		_ = a.syncPaths(ctx, s, nil)
	}
	if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		a.log.Error("stopping session", "peer", s.cfg.Name, "err", err)
	}
	s.stop()
	a.spare = append(a.spare, s.srv)
	a.statusMu.Lock()
	st := a.status[s.cfg.Name]
	delete(a.status, s.cfg.Name)
	delete(a.running, s.cfg.Name)
	a.statusMu.Unlock()
	if st != nil && st.Up && a.opts.OnChange != nil {
		st.Up, st.State, st.Since, st.Prefixes = false, "idle", time.Now(), 0
		a.opts.OnChange(*st)
	}
}

func (a *Announcer) peer(cfg Session) *api.Peer {
	port := uint32(cfg.Port)
	if port == 0 {
		port = DefaultPort
	}
	family := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if cfg.Address.Is6() {
		family = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	}
	afi := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: family, Enabled: true}}
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: cfg.Address.String(),
			PeerAsn:         cfg.PeerASN,
			LocalAsn:        cfg.MyASN,
			AuthPassword:    cfg.Password,
		},
		Transport: &api.Transport{
			RemotePort: port,
			// Without a listener the router's own connection attempts are
			// refused; only ours count.
			PassiveMode: false,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:           uint64(a.opts.ConnectRetry.Seconds()),
			HoldTime:               uint64(cfg.HoldTime.Seconds()),
			KeepaliveInterval:      uint64(cfg.KeepaliveTime.Seconds()),
			IdleHoldTimeAfterReset: uint64(a.opts.ConnectRetry.Seconds()),
		}},
		AfiSafis: []*api.AfiSafi{afi},
	}
	if p.Timers.Config.ConnectRetry == 0 {
		p.Timers.Config.ConnectRetry = 1
		p.Timers.Config.IdleHoldTimeAfterReset = 1
	}
	if cfg.SourceAddress.IsValid() {
		p.Transport.LocalAddress = cfg.SourceAddress.String()
	}
	if cfg.EBGPMultiHop && !cfg.Internal() {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: 255}
	}
	if cfg.GracefulRestart {
		p.GracefulRestart = &api.GracefulRestart{
			Enabled:     true,
			RestartTime: uint32(a.opts.RestartTime.Seconds()),
			// RFC 8538: a NOTIFICATION such as Hold Timer Expired keeps
			// the routes too; our deliberate Cease goes as a Hard Reset.
			NotificationEnabled: true,
		}
		afi.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	return p
}

func (a *Announcer) syncPaths(ctx context.Context, s *session, paths []Path) error {
	want := make(map[netip.Prefix]Path, len(paths))
	for _, p := range paths {
		want[p.Prefix] = p
	}
	var errs []error
	for prefix, old := range s.paths {
		if _, keep := want[prefix]; keep {
			continue
		}
		ap, err := apiPath(old)
		if err == nil {
			err = s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: ap.Family, Path: ap})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %s: %w", prefix, err))
			continue
		}
		delete(s.paths, prefix)
		a.log.Debug("withdrew", "peer", s.cfg.Name, "prefix", prefix)
	}
	for _, p := range paths {
		if old, ok := s.paths[p.Prefix]; ok && old.Equal(p) {
			continue
		}
		ap, err := apiPath(p)
		if err == nil {
			_, err = s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: ap})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("advertising %s: %w", p.Prefix, err))
			continue
		}
		s.paths[p.Prefix] = p
		a.log.Debug("advertised", "peer", s.cfg.Name, "path", p.String())
	}
	return errors.Join(errs...)
}

// apiPath builds GoBGP's form of p. The next hop is unspecified, which
// GoBGP replaces with the session's local address.
func apiPath(p Path) (*api.Path, error) {
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	var nlri bgp.AddrPrefixInterface
	if p.Prefix.Addr().Is4() {
		nlri = bgp.NewIPAddrPrefix(uint8(p.Prefix.Bits()), p.Prefix.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeNextHop("0.0.0.0"))
	} else {
		nlri = bgp.NewIPv6AddrPrefix(uint8(p.Prefix.Bits()), p.Prefix.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI("::", []bgp.AddrPrefixInterface{nlri}))
	}
	if len(p.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(p.Communities))
	}
	if len(p.LargeCommunities) > 0 {
		lcs := make([]*bgp.LargeCommunity, len(p.LargeCommunities))
		for i, c := range p.LargeCommunities {
			lcs[i] = bgp.NewLargeCommunity(c.ASN, c.Data1, c.Data2)
		}
		attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(lcs))
	}
	if p.LocalPref != nil {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(*p.LocalPref))
	}
	return apiutil.NewPath(nlri, false, attrs, time.Now())
}

func (a *Announcer) peerState(name string, state api.PeerState_SessionState) {
	a.statusMu.Lock()
	st := a.status[name]
	if st == nil { // closed meanwhile
		a.statusMu.Unlock()
		return
	}
	st.State = stateName(state)
	up := state == api.PeerState_ESTABLISHED
	changed := up != st.Up
	if changed {
		st.Up, st.Since = up, time.Now()
	}
	snapshot := *st
	a.statusMu.Unlock()
	if !changed {
		return
	}
	if !up {
		snapshot.Prefixes = 0
	}
	a.log.Info("session "+map[bool]string{true: "up", false: "down"}[up], "peer", name, "address", snapshot.Address, "state", snapshot.State)
	if a.opts.OnChange != nil {
		a.opts.OnChange(snapshot)
	}
}

func stateName(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_IDLE:
		return "idle"
	case api.PeerState_CONNECT:
		return "connect"
	case api.PeerState_ACTIVE:
		return "active"
	case api.PeerState_OPENSENT:
		return "opensent"
	case api.PeerState_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// Status returns the state of every session, sorted by name.
func (a *Announcer) Status() []SessionStatus {
	a.statusMu.Lock()
	out := make([]SessionStatus, 0, len(a.status))
	for _, st := range a.status {
		s := *st
		if !s.Up {
			s.Prefixes = 0
		}
		out = append(out, s)
	}
	a.statusMu.Unlock()
	slices.SortFunc(out, func(x, y SessionStatus) int {
		switch {
		case x.Name < y.Name:
			return -1
		case x.Name > y.Name:
			return 1
		}
		return 0
	})
	return out
}

// Close ends every session with a Cease, which makes routers drop this
// node's routes at once, graceful restart or not (GoBGP sends it as an
// RFC 8538 Hard Reset). A speaker that is only restarting and wants
// routers to keep its routes must exit without calling Close: the kernel
// then closes the connections with no NOTIFICATION, and routers keep the
// routes of sessions with GracefulRestart, as stale, for RestartTime.
func (a *Announcer) Close(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, s := range a.sessions {
		a.closeSession(ctx, s, false)
		delete(a.sessions, name)
	}
}

// logger sends GoBGP's logs to slog. GoBGP's Panic and Fatal mark its own
// bugs; they are logged as errors rather than taking the speaker down.
type logger struct{ l *slog.Logger }

func (l *logger) attrs(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}

func (l *logger) Panic(msg string, f gobgplog.Fields) { l.l.Error(msg, l.attrs(f)...) }
func (l *logger) Fatal(msg string, f gobgplog.Fields) { l.l.Error(msg, l.attrs(f)...) }
func (l *logger) Error(msg string, f gobgplog.Fields) { l.l.Error(msg, l.attrs(f)...) }
func (l *logger) Warn(msg string, f gobgplog.Fields)  { l.l.Warn(msg, l.attrs(f)...) }
func (l *logger) Info(msg string, f gobgplog.Fields)  { l.l.Debug(msg, l.attrs(f)...) }
func (l *logger) Debug(msg string, f gobgplog.Fields) { l.l.Debug(msg, l.attrs(f)...) }
func (l *logger) SetLevel(gobgplog.LogLevel)          {}
func (l *logger) GetLevel() gobgplog.LogLevel         { return gobgplog.DebugLevel }
