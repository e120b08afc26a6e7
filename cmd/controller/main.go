// Command controller hands out LoadBalancer addresses from Portico's
// address pools. Run two replicas: a Lease elects the one that allocates.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/cmd/buildinfo"
	"github.com/portico-lb/portico/controller"
	"github.com/portico-lb/portico/lbservice"
)

// version is the release, set at link time with -ldflags "-X main.version=...".
var version string

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		ingress      = flag.String("ingress-service", "portico-system/portico-ingress", "namespace/name of the bundled ingress's Service; it gets the default pool's first address")
		metricsAddr  = flag.String("metrics-bind-address", ":7472", "address of the Prometheus metrics endpoint (0 to disable)")
		healthAddr   = flag.String("health-probe-bind-address", ":7473", "address of the /healthz and /readyz endpoints")
		leaderElect  = flag.Bool("leader-elect", true, "elect a leader with a Lease so that only one replica allocates")
		leaseNS      = flag.String("leader-election-namespace", "", "namespace of the Lease (default: the pod's namespace, else portico-system)")
		leaseTimeout = flag.Duration("lease-duration", 15*time.Second, "how long a leader's Lease lasts without renewal")
		qps          = flag.Float64("kube-api-qps", 200, "queries per second to the API server")
		burst        = flag.Int("kube-api-burst", 400, "burst of queries to the API server")
		workers      = flag.Int("workers", 4, "Services reconciled at once")
		requireClass = flag.Bool("require-class", false, "serve only Services of loadBalancerClass "+lbservice.Class+", leaving class-less ones to another load balancer (MetalLB, while moving from it)")
		logLevel     = flag.String("log-level", "info", "debug, info, warn or error")
	)
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("portico-controller", buildinfo.Version(version))
		return nil
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	ns, name, ok := strings.Cut(*ingress, "/")
	if !ok || ns == "" || name == "" {
		return fmt.Errorf("--ingress-service %q: want namespace/name", *ingress)
	}
	if *leaseNS == "" {
		*leaseNS = os.Getenv("POD_NAMESPACE")
		if *leaseNS == "" {
			*leaseNS = "portico-system"
		}
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
	cfg.QPS, cfg.Burst = float32(*qps), *burst
	cfg.UserAgent = "portico-controller"

	renew := *leaseTimeout * 2 / 3
	retry := *leaseTimeout / 5
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress:        *healthAddr,
		LeaderElection:                *leaderElect,
		LeaderElectionID:              "portico-controller",
		LeaderElectionNamespace:       *leaseNS,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 leaseTimeout,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
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
	opts := controller.Options{IngressService: types.NamespacedName{Namespace: ns, Name: name}, Workers: *workers, Classes: lbservice.Classes{RequireClass: *requireClass}}
	if err := controller.Setup(mgr, opts); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}
