// Command ingress is Portico's bundled ingress controller: it serves HTTP
// and HTTPS for the Ingresses of its class and, on the leader replica,
// writes the ingress Service's addresses into their status.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-lb/portico/cmd/buildinfo"
	"github.com/portico-lb/portico/ingress"
	"github.com/portico-lb/portico/ingress/accesslog"
	"github.com/portico-lb/portico/ingress/proxy"
	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// version is the release, set at link time with -ldflags "-X main.version=...".
var version string

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ingress:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		httpAddr      = flag.String("http-address", ":8080", "address of the plain HTTP listener (the Service maps port 80 here)")
		httpsAddr     = flag.String("https-address", ":8443", "address of the HTTPS listener (the Service maps port 443 here)")
		publish       = flag.String("publish-service", "portico-system/portico-ingress", "namespace/name of the LoadBalancer Service whose addresses Ingresses get in their status")
		class         = flag.String("ingress-class", "portico", "name of the IngressClass served; its spec.controller must be "+ingress.ControllerName)
		withoutClass  = flag.Bool("watch-ingress-without-class", false, "also serve Ingresses that name no class when the class is not the cluster's default")
		defaultCert   = flag.String("default-ssl-certificate", "", "namespace/name of a kubernetes.io/tls Secret served to TLS clients no Ingress has a certificate for; empty: a self-signed one generated at start")
		metricsAddr   = flag.String("metrics-bind-address", ":7474", "address of the Prometheus metrics endpoint; 0 turns it off")
		healthAddr    = flag.String("health-probe-bind-address", ":7475", "address of /healthz and /readyz")
		leaderElect   = flag.Bool("leader-elect", true, "elect the replica that writes Ingress status with a Lease")
		leaderNS      = flag.String("leader-election-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the Lease (default: $POD_NAMESPACE)")
		accessLog     = flag.Bool("access-log", true, "log every request to stdout, one line each (--access-log=false turns it off)")
		accessFormat  = flag.String("access-log-format", "json", "format of access log lines: json, or combined (nginx's, with ingress-nginx's upstream fields)")
		trusted       = flag.String("trusted-proxies", "", "comma-separated CIDRs of proxies in front whose X-Forwarded-For is appended to rather than replaced, and names the client the allowlists and rate limits judge")
		proxyProto    = flag.String("proxy-protocol-from", "", "comma-separated CIDRs of balancers in front that send the PROXY protocol (v1 or v2); their connections must, and are served as the client it names")
		readHeader    = flag.Duration("read-header-timeout", 10*time.Second, "time a client has to send its request headers")
		idle          = flag.Duration("idle-timeout", 60*time.Second, "time a client keep-alive connection may stay idle")
		connect       = flag.Duration("proxy-connect-timeout", 5*time.Second, "time to connect to an endpoint")
		upstreamRead  = flag.Duration("proxy-read-timeout", 60*time.Second, "most time between two reads from an endpoint, response head and body: before the head, the client gets 504")
		upstreamSend  = flag.Duration("proxy-send-timeout", 60*time.Second, "most time between two writes of a request to an endpoint")
		clientBody    = flag.Duration("client-body-timeout", 60*time.Second, "most time between two reads of a request body from a client: past it, 408")
		clientSend    = flag.Duration("send-timeout", 60*time.Second, "most time between two writes of an answer to a client: past it, the connection ends")
		tunnelIdle    = flag.Duration("tunnel-idle-timeout", 60*time.Second, "a WebSocket connection with nothing sent either way for this long is closed")
		bodySize      = flag.String("proxy-body-size", "1m", "largest request body (nginx's client_max_body_size: k, m, g; 0 for no limit): larger ones get 413")
		bodyBuffer    = flag.String("client-body-buffer-size", "8k", "how much of a request body is kept in memory; the rest goes to a file in --client-body-temp-path until the body is whole")
		bodyTemp      = flag.String("client-body-temp-path", os.TempDir(), "directory of the files of request bodies larger than --client-body-buffer-size")
		maxConns      = flag.Int("max-connections", 16384, "client connections held at once; one more is closed at once (portico_ingress_connections_refused_total)")
		underscores   = flag.Bool("underscores-in-headers", false, "forward request headers whose names hold '_' (by default they are dropped, as nginx does)")
		nextUpstream  = flag.String("proxy-next-upstream", "error timeout", "failures after which a request goes to the next endpoint: error, timeout, invalid_header, or off")
		nextTries     = flag.Int("proxy-next-upstream-tries", 3, "endpoints one request is tried on, at most")
		limitStatus   = flag.Int("limit-req-status-code", 503, "status of an answer to a request over an Ingress's limit-rps or limit-rpm (503 as nginx, or 429)")
		grace         = flag.Duration("shutdown-grace", 10*time.Second, "time in-flight requests get to finish on shutdown")
		goroutineLoop = flag.Bool("goroutine-loop", false, "serve plain HTTP with a goroutine per connection alone, without the epoll event loops (one per CPU, each with a GOMAXPROCS of its own)")
		debug         = flag.Bool("debug", false, "debug logging")
	)
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("portico-ingress", buildinfo.Version(version))
		return nil
	}

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))

	pub, err := namespacedName(*publish)
	if err != nil {
		return fmt.Errorf("--publish-service: %w", err)
	}
	var defCert types.NamespacedName
	if *defaultCert != "" {
		if defCert, err = namespacedName(*defaultCert); err != nil {
			return fmt.Errorf("--default-ssl-certificate: %w", err)
		}
	}
	prefixes, err := parsePrefixes(*trusted)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	balancers, err := parsePrefixes(*proxyProto)
	if err != nil {
		return fmt.Errorf("--proxy-protocol-from: %w", err)
	}
	if *leaderElect && *leaderNS == "" {
		return errors.New("--leader-election-namespace (or $POD_NAMESPACE) is needed for leader election")
	}
	maxBody, err := exchange.ParseSize(*bodySize)
	if err != nil {
		return fmt.Errorf("--proxy-body-size: %w", err)
	}
	if maxBody == 0 {
		maxBody = -1 // nginx's 0: no limit
	}
	buffer, err := exchange.ParseSize(*bodyBuffer)
	if err != nil || buffer == 0 || buffer > 1<<30 {
		return fmt.Errorf("--client-body-buffer-size %q: want a size from 1 byte to 1g", *bodyBuffer)
	}
	next, err := exchange.ParseNextUpstream(*nextUpstream)
	if err != nil {
		return fmt.Errorf("--proxy-next-upstream: %w", err)
	}
	if *nextTries < 1 || *maxConns < 1 {
		return errors.New("--proxy-next-upstream-tries and --max-connections must be 1 or more")
	}
	if *limitStatus < 400 || *limitStatus > 599 {
		return errors.New("--limit-req-status-code must be a 4xx or 5xx status")
	}

	opts := proxy.Options{
		Policy: exchange.Settings{
			TrustedProxies:       prefixes,
			ProxyProtocol:        balancers,
			UnderscoresInHeaders: *underscores,
			Limits: exchange.Limits{
				ConnectTimeout:    *connect,
				SendTimeout:       *upstreamSend,
				ReadTimeout:       *upstreamRead,
				ClientBodyTimeout: *clientBody,
				ClientSendTimeout: *clientSend,
				TunnelIdleTimeout: *tunnelIdle,
				MaxBodySize:       maxBody,
			},
			Tries:        *nextTries,
			NextUpstream: next,
			LimitStatus:  *limitStatus,
		},
		ReadHeaderTimeout: *readHeader,
		IdleTimeout:       *idle,
		MaxConnections:    *maxConns,
		BodyBufferSize:    int(buffer),
		BodyTempDir:       *bodyTemp,
		GoroutineLoop:     *goroutineLoop,
	}
	var access *accesslog.Log
	if *accessLog {
		format, err := accesslog.ParseFormat(*accessFormat)
		if err != nil {
			return fmt.Errorf("--access-log-format: %w", err)
		}
		access = accesslog.New(os.Stdout, format)
	}
	opts.Observe = ingress.Observer(access)
	srv, err := proxy.New(opts, log.With("part", "proxy"))
	if err != nil {
		return err
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         ingress.CacheOptions(),
		Metrics:                       metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress:        *healthAddr,
		LeaderElection:                *leaderElect,
		LeaderElectionID:              "portico-ingress",
		LeaderElectionNamespace:       *leaderNS,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if access != nil {
		// The log outlives the manager: the requests of the shutdown grace
		// are logged too, and the last lines written before exit.
		logCtx, stopLog := context.WithCancel(context.Background())
		written := make(chan struct{})
		go func() { access.Run(logCtx); close(written) }()
		defer func() {
			stopLog()
			select { // a stdout nobody reads must not hold the exit
			case <-written:
			case <-time.After(5 * time.Second):
			}
		}()
	}

	c, err := ingress.Setup(mgr, srv, ingress.Options{
		ClassName:          *class,
		WithoutClass:       *withoutClass,
		PublishService:     pub,
		DefaultCertificate: defCert,
	}, log.With("part", "controller"))
	if err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready once the first configuration is in: a new pod gets traffic
	// only when it can route it.
	if err := mgr.AddReadyzCheck("config", func(*http.Request) error {
		if !c.Ready() {
			return errors.New("no configuration compiled yet")
		}
		return nil
	}); err != nil {
		return err
	}

	plain, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return err
	}
	secure, err := net.Listen("tcp", *httpsAddr)
	if err != nil {
		return err
	}
	if err := mgr.Add(serving{srv: srv, plain: plain, secure: secure, grace: *grace, loaded: c.Loaded()}); err != nil {
		return err
	}
	log.Info("starting", "http", plain.Addr().String(), "https", secure.Addr().String(), "class", *class, "publishService", pub.String())
	return mgr.Start(ctx)
}

// serving runs the proxy's listeners on every replica for as long as the
// manager runs, from the first configuration on.
type serving struct {
	srv           *proxy.Server
	plain, secure net.Listener
	grace         time.Duration
	loaded        <-chan struct{}
}

// Start serves once the first configuration is loaded. Until then
// connections wait in the listen backlog: answered at once, they would get
// 404 for routes not compiled yet, from a replica that a Service without
// readiness gating (or a client dialling the pod) may already reach.
func (s serving) Start(ctx context.Context) error {
	select {
	case <-s.loaded:
	case <-ctx.Done():
		s.plain.Close()
		s.secure.Close()
		return nil
	}
	return s.srv.Serve(ctx, s.plain, s.secure, s.grace)
}

func (serving) NeedLeaderElection() bool { return false }

func namespacedName(s string) (types.NamespacedName, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return types.NamespacedName{}, fmt.Errorf("%q is not namespace/name", s)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// parsePrefixes reads a comma-separated list of CIDRs.
func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
