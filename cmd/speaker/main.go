// Command speaker announces LoadBalancer addresses from every node: run it
// as a hostNetwork DaemonSet. It needs NODE_NAME, POD_IP and POD_NAMESPACE
// from the downward API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/cmd/buildinfo"
	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/speaker"
	"github.com/portico-lb/portico/speaker/bgp"
	"github.com/portico-lb/portico/speaker/l2"
	"github.com/portico-lb/portico/speaker/member"
	"github.com/portico-lb/portico/speaker/status"
)

// version is the release, set at link time with -ldflags "-X main.version=...".
var version string

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "speaker:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		node           = flag.String("node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
		podIP          = flag.String("bind-address", os.Getenv("POD_IP"), "address memberlist listens on and advertises (default $POD_IP, the node's address under hostNetwork)")
		namespace      = flag.String("namespace", os.Getenv("POD_NAMESPACE"), "namespace of the speaker pods and the memberlist Secret (default $POD_NAMESPACE, else portico-system)")
		selector       = flag.String("speaker-selector", "app.kubernetes.io/name=portico-speaker", "label selector of the speaker pods, to find the others")
		secret         = flag.String("memberlist-secret", "portico-memberlist", "Secret holding the gossip key, created when missing")
		mlPort         = flag.Int("memberlist-port", member.DefaultPort, "memberlist TCP and UDP port")
		probeInterval  = flag.Duration("memberlist-probe-interval", member.DefaultProbeInterval, "how often each speaker probes another")
		probeTimeout   = flag.Duration("memberlist-probe-timeout", member.DefaultProbeTimeout, "how long a probe waits for an answer")
		suspicionMult  = flag.Int("memberlist-suspicion-mult", member.DefaultSuspicionMult, "a suspected speaker is declared dead after this many probe intervals (× log10 of the member count beyond 10)")
		gossipInterval = flag.Duration("memberlist-gossip-interval", member.DefaultGossipInterval, "how often news is gossiped")
		gratuitous     = flag.String("gratuitous", "0s,500ms,2s", "when a new owner sends gratuitous ARP / unsolicited NA, counted from taking the address")
		refresh        = flag.Duration("gratuitous-refresh", 0, "repeat gratuitous ARP / unsolicited NA this often while owning an address (0: never)")
		exclude        = flag.String("exclude-interfaces", strings.Join(l2.DefaultExclude, ","), "never announce on interfaces whose names start with one of these (comma-separated)")
		bgpListen      = flag.Int("bgp-listen-port", -1, "TCP port the embedded BGP speaker listens on for routers that connect first (-1: none; the speaker always connects out)")
		metricsAddr    = flag.String("metrics-bind-address", ":7474", "address of the Prometheus metrics endpoint (0 to disable)")
		healthAddr     = flag.String("health-probe-bind-address", ":7475", "address of the /healthz and /readyz endpoints")
		requireClass   = flag.Bool("require-class", false, "announce only Services of loadBalancerClass "+lbservice.Class+", leaving class-less ones to another load balancer (MetalLB, while moving from it); give the controller the same flag")
		logLevel       = flag.String("log-level", "info", "debug, info, warn or error")
	)
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("portico-speaker", buildinfo.Version(version))
		return nil
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	slogger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(slogger)
	log := logr.FromSlogHandler(slogger.Handler())
	ctrl.SetLogger(log)

	if *node == "" {
		return errors.New("--node-name (or $NODE_NAME) is required")
	}
	bind, err := netip.ParseAddr(*podIP)
	if err != nil {
		return fmt.Errorf("--bind-address (or $POD_IP) %q: %w", *podIP, err)
	}
	if *namespace == "" {
		*namespace = "portico-system"
	}
	sel, err := labels.Parse(*selector)
	if err != nil {
		return fmt.Errorf("--speaker-selector: %w", err)
	}
	var schedule []time.Duration
	for _, s := range strings.Split(*gratuitous, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < 0 {
			return fmt.Errorf("--gratuitous %q: want increasing durations such as 0s,500ms,2s", *gratuitous)
		}
		if len(schedule) > 0 && d < schedule[len(schedule)-1] {
			return fmt.Errorf("--gratuitous %q: durations must increase", *gratuitous)
		}
		schedule = append(schedule, d)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "portico-speaker"

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress: *healthAddr,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			// Only the speaker pods, to find the other speakers.
			&corev1.Pod{}: {Namespaces: map[string]cache.Config{*namespace: {}}, Label: sel},
		}},
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}

	// SIGTERM: leave the cluster first, so the others take the addresses
	// at once, then stop answering.
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()

	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	keyCtx, cancel := context.WithTimeout(sigCtx, time.Minute)
	key, err := member.Key(keyCtx, direct, *namespace, *secret)
	cancel()
	if err != nil {
		return fmt.Errorf("memberlist key: %w", err)
	}

	excluded := strings.Split(*exclude, ",")
	local, err := l2.LocalInterfaces(excluded)
	if err != nil {
		return err
	}
	slogger.Info("interfaces", "node", *node, "interfaces", member.Interfaces(local).String())
	announcer := l2.NewAnnouncer(l2.ResponderOptions{Gratuitous: schedule, Refresh: *refresh, Log: slogger}, excluded)
	defer announcer.Close()
	// BGP sessions are not closed on exit (bgp.Protocol is a
	// speaker.Keeper): with graceful restart the router keeps the routes
	// while the speaker restarts, and without it the router drops them as
	// the connection goes anyway.
	recorder := mgr.GetEventRecorderFor("portico-speaker") //nolint:staticcheck // see speaker.Speaker.events
	// This node's entry in each BGPPeer's status, read from the sessions
	// on the writer's own goroutine.
	var bgpProtocol *bgp.Protocol
	peerStatus := status.NewPeers(mgr.GetClient(), *node, func() []status.PeerSession {
		var out []status.PeerSession
		for _, p := range bgpProtocol.Peers() {
			out = append(out, status.PeerSession{
				Peer: p.Name, Generation: p.Generation, State: p.State, Up: p.Up,
				Prefixes: p.Prefixes, Problem: p.Problem, Since: p.Since,
			})
		}
		return out
	}, status.Options{Log: log.WithName("status")})
	sessions := bgp.NewAnnouncer(bgp.Options{
		Logger:     slogger.With("component", "bgp"),
		ListenPort: *bgpListen,
		// Each change of a session is an Event on its BGPPeer.
		OnChange: func(st bgp.SessionStatus) {
			reason, note := bgp.SessionEvent(*node, st)
			typ := corev1.EventTypeNormal
			if !st.Up {
				typ = corev1.EventTypeWarning
			}
			peer := &v1alpha1.BGPPeer{}
			peer.Name = st.Name
			recorder.Event(peer, typ, reason, note)
			peerStatus.Poke()
		},
	})
	metrics.Registry.MustRegister(sessions)
	bgpProtocol = bgp.NewProtocol(sessions, func(ctx context.Context, ref v1alpha1.SecretKeyRef) (string, error) {
		var s corev1.Secret
		if err := direct.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &s); err != nil {
			if apierrors.IsNotFound(err) {
				return "", fmt.Errorf("%w: %v", bgp.ErrNoPassword, err)
			}
			return "", err
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			return "", fmt.Errorf("the Secret has no key %q: %w", ref.Key, bgp.ErrNoPassword)
		}
		return string(v), nil
	})
	sp, err := speaker.New(mgr, recorder, speaker.Options{
		Node:       *node,
		Announcers: []speaker.Announcer{announcer, bgpProtocol},
		Classes:    lbservice.Classes{RequireClass: *requireClass},
		Status:     status.NewAnnouncements(mgr.GetClient(), *node, status.Options{Log: log.WithName("status")}),
		Log:        log.WithName("speaker"),
	})
	if err != nil {
		return err
	}
	if err := mgr.Add(peerStatus); err != nil {
		return err
	}

	members, err := member.Start(member.Config{
		Node:           *node,
		BindAddr:       bind,
		Port:           *mlPort,
		Key:            key,
		Interfaces:     local,
		ProbeInterval:  *probeInterval,
		ProbeTimeout:   *probeTimeout,
		SuspicionMult:  *suspicionMult,
		GossipInterval: *gossipInterval,
		OnChange: func(ms []member.Member) {
			sp.SetMembers(ms)
			names := make([]string, len(ms))
			for i, m := range ms {
				names[i] = m.Name
			}
			peerStatus.SetMembers(names)
		},
		Log: slogger.With("component", "memberlist"),
	})
	if err != nil {
		return err
	}
	left := false
	defer func() {
		if !left {
			_ = members.Leave(time.Second)
		}
	}()
	// Join the others before anything is announced (memberlist holds back
	// the member list until then): alone, this speaker would claim every
	// address. Then keep joining from the pod list, through the cache.
	first := &upkeep{client: direct, namespace: *namespace, selector: sel, self: bind, port: *mlPort, exclude: excluded, members: members, log: slogger}
	first.joinFirst(sigCtx)
	keep := *first
	keep.client, keep.selector = mgr.GetClient(), labels.Everything() // the cache holds only speaker pods
	if err := mgr.Add(&keep); err != nil {
		return err
	}

	mgrCtx, stopMgr := context.WithCancel(context.Background())
	defer stopMgr()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	select {
	case err := <-done:
		return err
	case <-sigCtx.Done():
	}
	slogger.Info("leaving the cluster", "node", *node)
	if err := members.Leave(2 * time.Second); err != nil {
		slogger.Error("leaving memberlist", "err", err)
	}
	left = true
	stopMgr()
	return <-done
}

// upkeep joins the speakers it finds through the API and keeps this
// node's gossiped interfaces current. Gossip does the rest: once joined, the
// speakers need the API for nothing to know who is alive.
type upkeep struct {
	client    client.Reader
	namespace string
	selector  labels.Selector
	self      netip.Addr
	port      int
	exclude   []string
	members   *member.List
	log       *slog.Logger
}

func (u *upkeep) NeedLeaderElection() bool { return false }

func (u *upkeep) Start(ctx context.Context) error {
	// Often: memberlist never probes a member it declared dead, so after
	// a partition heals only a Join merges the two sides again, and until
	// then a node that was cut off still claims every address.
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		u.join(ctx)
		if local, err := l2.LocalInterfaces(u.exclude); err == nil {
			if err := u.members.SetInterfaces(ctx, local); err != nil {
				u.log.Error("gossiping interfaces", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// joinFirst joins the speakers running now, trying for a few seconds
// while there are some and none answers (they may be starting too).
func (u *upkeep) joinFirst(ctx context.Context) {
	for try := 0; ; try++ {
		peers, joined := u.join(ctx)
		if peers == 0 || joined > 0 || try == 10 || ctx.Err() != nil {
			u.log.Info("joined the speakers", "found", peers, "reached", joined)
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// join joins the speaker pods that are not members yet and returns how
// many pods it found and how many speakers it reached.
func (u *upkeep) join(ctx context.Context) (peers, joined int) {
	var pods corev1.PodList
	if err := u.client.List(ctx, &pods, client.InNamespace(u.namespace), client.MatchingLabelsSelector{Selector: u.selector}); err != nil {
		u.log.Error("listing speaker pods", "err", err)
		_, _ = u.members.Join(nil)
		return 0, 0
	}
	var addrs []string
	for _, p := range pods.Items {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || ip == u.self || p.DeletionTimestamp != nil {
			continue
		}
		addrs = append(addrs, netip.AddrPortFrom(ip, uint16(u.port)).String())
	}
	n, err := u.members.Join(addrs)
	if err != nil {
		u.log.Info("could not reach every speaker yet", "joined", n, "err", err)
	}
	return len(addrs), n
}
