package ingress_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-lb/portico/e2e/apitest"
	"github.com/portico-lb/portico/ingress"
	"github.com/portico-lb/portico/ingress/proxy"
)

// The integration tests share one real etcd and kube-apiserver (package
// apitest). Each test runs its own ingress controllers against it, in its
// own namespace, with its own publish Service and Lease.
var api *apitest.Env

func TestMain(m *testing.M) {
	logf.SetLogger(logr.Discard())
	apitest.Main(m, func(e *apitest.Env) error {
		api = e
		return setupCluster()
	})
}

const className = "portico"

func setupCluster() error {
	ctx := context.Background()
	ns := &corev1.Namespace{}
	ns.Name = "portico-system"
	if err := api.Client.Create(ctx, ns); err != nil {
		return err
	}
	ic := &networkingv1.IngressClass{}
	ic.Name = className
	ic.Spec.Controller = ingress.ControllerName
	return api.Client.Create(ctx, ic)
}

func needAPI(t testing.TB) {
	t.Helper()
	apitest.Require(t)
}

// instance is one running ingress controller: a manager and its proxy.
type instance struct {
	srv    *proxy.Server
	plain  string // the proxy's HTTP address
	secure string // its HTTPS address
	stop   func()
}

// startInstance runs an ingress controller that publishes the addresses of
// portico-system/<publish> and elects its status writer with Lease lease.
func startInstance(t *testing.T, lease, publish string) *instance {
	t.Helper()
	mgr, err := ctrl.NewManager(api.Config, ctrl.Options{
		Scheme:                        api.Scheme,
		Cache:                         ingress.CacheOptions(),
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                true,
		LeaderElectionID:              lease,
		LeaderElectionNamespace:       "portico-system",
		LeaderElectionReleaseOnCancel: true,
		// Leadership moves on stop (ReleaseOnCancel), so the lease can be
		// long enough that a loaded machine's slow API server keeps it.
		LeaseDuration: ptr.To(6 * time.Second),
		RenewDeadline: ptr.To(4 * time.Second),
		RetryPeriod:   ptr.To(100 * time.Millisecond),
		Controller:    config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(proxy.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := ingress.Setup(mgr, srv, ingress.Options{
		ClassName:      className,
		PublishService: types.NamespacedName{Namespace: "portico-system", Name: publish},
	}, nil); err != nil {
		t.Fatal(err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mgrDone, srvDone := make(chan error, 1), make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()
	go func() { srvDone <- srv.Serve(ctx, pl, sl, time.Second) }()
	stopped := false
	in := &instance{srv: srv, plain: pl.Addr().String(), secure: sl.Addr().String()}
	in.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-mgrDone; err != nil {
			t.Errorf("manager: %v", err)
		}
		<-srvDone
	}
	t.Cleanup(in.stop)
	return in
}

func makeNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{}
	ns.Name = name
	if err := api.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
}

// publishService creates portico-system/name of type LoadBalancer with ip in
// its status, as Portico's controller would.
func publishService(t *testing.T, name, ip string) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{}
	svc.Namespace, svc.Name = "portico-system", name
	svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "https", Port: 443}}
	ctx := context.Background()
	if err := api.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	setServiceIP(t, svc, ip)
	return svc
}

func setServiceIP(t *testing.T, svc *corev1.Service, ip string) {
	t.Helper()
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
	if err := api.Client.Status().Update(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// addresses returns the IPs in an Ingress's status.
func addresses(t *testing.T, ns, name string) ([]string, error) {
	var ing networkingv1.Ingress
	if err := api.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &ing); err != nil {
		return nil, err
	}
	var ips []string
	for _, a := range ing.Status.LoadBalancer.Ingress {
		ips = append(ips, a.IP)
	}
	return ips, nil
}

func wantAddresses(t *testing.T, ns, name string, want ...string) func() error {
	return func() error {
		got, err := addresses(t, ns, name)
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("Ingress %s/%s has addresses %v, want %v", ns, name, got, want)
		}
		return nil
	}
}
