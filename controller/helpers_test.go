package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controller"
)

const waitFor = 20 * time.Second

// testLogger is silent unless PORTICO_TEST_LOG=1.
func testLogger() logr.Logger {
	if os.Getenv("PORTICO_TEST_LOG") == "1" {
		return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil))
	}
	return logr.Discard()
}

var ingressKey = types.NamespacedName{Namespace: "portico-system", Name: "portico-ingress"}

// runController starts a controller, as cmd/controller would, and stops it
// when the test ends. It returns a function that stops it earlier.
func runController(t testing.TB, leaderElect bool) (stop func()) {
	t.Helper()
	return runControllerWith(t, leaderElect, controller.Options{IngressService: ingressKey})
}

// runControllerWith is runController with these options.
func runControllerWith(t testing.TB, leaderElect bool, opts controller.Options) (stop func()) {
	t.Helper()
	needAPI(t)
	mgr, err := ctrl.NewManager(apiConfig, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		LeaderElection:                leaderElect,
		LeaderElectionID:              "portico-controller",
		LeaderElectionNamespace:       "portico-system",
		LeaderElectionReleaseOnCancel: true,
		// Short enough for quick failover tests, long enough that a
		// loaded machine's slow API server does not cost the lease.
		LeaseDuration: ptr.To(6 * time.Second),
		RenewDeadline: ptr.To(4 * time.Second),
		RetryPeriod:   ptr.To(500 * time.Millisecond),
		Controller:    ctrlConfig(),
		// Once, under a loaded CI machine, a stop took longer than the
		// default 30 s; stop() prints every goroutine if one ever hangs.
		GracefulShutdownTimeout: ptr.To(90 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.Setup(mgr, opts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			// Say what was still running: a stuck runnable is a bug.
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("controller: %v\ngoroutines:\n%s", err, buf)
		}
	}
	t.Cleanup(stop)
	return stop
}

// cleanup deletes every pool and Service the test made, so the next test
// starts from an empty allocator.
func cleanup(t testing.TB) {
	t.Helper()
	needAPI(t)
	t.Cleanup(func() {
		ctx := context.Background()
		for _, ns := range []string{"default", "team-a", "team-b", "portico-system"} {
			_ = apiClient.DeleteAllOf(ctx, &corev1.Service{}, client.InNamespace(ns), client.MatchingLabels{"test": "portico"})
		}
		_ = apiClient.DeleteAllOf(ctx, &v1alpha1.AddressPool{})
		waitUntil(t, "objects deleted", func() (bool, string) {
			var pl v1alpha1.AddressPoolList
			var sl corev1.ServiceList
			_ = apiClient.List(ctx, &pl)
			_ = apiClient.List(ctx, &sl, client.MatchingLabels{"test": "portico"})
			return len(pl.Items) == 0 && len(sl.Items) == 0, fmt.Sprintf("%d pools, %d services left", len(pl.Items), len(sl.Items))
		})
	})
}

type poolOpt func(*v1alpha1.AddressPool)

func notAuto(p *v1alpha1.AddressPool)    { p.Spec.AutoAssign = ptr.To(false) }
func avoidBuggy(p *v1alpha1.AddressPool) { p.Spec.AvoidBuggyIPs = true }
func priority(n int32) poolOpt {
	return func(p *v1alpha1.AddressPool) {
		if p.Spec.ServiceAllocation == nil {
			p.Spec.ServiceAllocation = &v1alpha1.ServiceAllocation{}
		}
		p.Spec.ServiceAllocation.Priority = n
	}
}
func namespaces(ns ...string) poolOpt {
	return func(p *v1alpha1.AddressPool) {
		if p.Spec.ServiceAllocation == nil {
			p.Spec.ServiceAllocation = &v1alpha1.ServiceAllocation{}
		}
		p.Spec.ServiceAllocation.Namespaces = ns
	}
}

func makePool(t testing.TB, name string, addrs []string, opts ...poolOpt) *v1alpha1.AddressPool {
	t.Helper()
	p := &v1alpha1.AddressPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
	}
	for _, o := range opts {
		o(p)
	}
	if err := apiClient.Create(context.Background(), p); err != nil {
		t.Fatalf("creating pool %s: %v", name, err)
	}
	return p
}

type svcOpt func(*corev1.Service)

func annotate(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}
func ports(ps ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ps {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p, TargetPort: intstr.FromInt32(p), Protocol: corev1.ProtocolTCP})
		}
	}
}
func udp(s *corev1.Service) {
	for i := range s.Spec.Ports {
		s.Spec.Ports[i].Protocol = corev1.ProtocolUDP
	}
}
func local(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}
func class(c string) svcOpt { return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c } }
func namespace(ns string) svcOpt {
	return func(s *corev1.Service) { s.Namespace = ns }
}
func selector(kv ...string) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Selector = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Spec.Selector[kv[i]] = kv[i+1]
		}
	}
}
func dualStack(p corev1.IPFamilyPolicy, fams ...corev1.IPFamily) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = &p
		s.Spec.IPFamilies = fams
	}
}
func labels(kv ...string) svcOpt {
	return func(s *corev1.Service) {
		for i := 0; i+1 < len(kv); i += 2 {
			s.Labels[kv[i]] = kv[i+1]
		}
	}
}

func makeService(t testing.TB, name string, opts ...svcOpt) *corev1.Service {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"test": "portico"}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
		},
	}
	ports(80)(s)
	for _, o := range opts {
		o(s)
	}
	if err := apiClient.Create(context.Background(), s); err != nil {
		t.Fatalf("creating service %s: %v", name, err)
	}
	return s
}

// update applies change to the latest version of obj (which it leaves
// alone) and writes it, retrying on conflicts with the controller's own
// writes, and returns what was written.
func update[T client.Object](t testing.TB, obj T, change func(T)) T {
	t.Helper()
	key := client.ObjectKeyFromObject(obj)
	for range 20 {
		cur := obj.DeepCopyObject().(T)
		if err := apiClient.Get(context.Background(), key, cur); err != nil {
			t.Fatal(err)
		}
		change(cur)
		err := apiClient.Update(context.Background(), cur)
		if err == nil {
			return cur
		}
		if !apierrors.IsConflict(err) {
			t.Fatalf("updating %s: %v", key, err)
		}
	}
	t.Fatalf("updating %s: too many conflicts", key)
	return obj
}

func updateService(t testing.TB, s *corev1.Service, change func(*corev1.Service)) {
	t.Helper()
	update(t, s, change)
}

func deleteObject(t testing.TB, obj client.Object) {
	t.Helper()
	if err := apiClient.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

// ips reads a Service's status addresses.
func ips(t testing.TB, s *corev1.Service) []string {
	t.Helper()
	var cur corev1.Service
	if err := apiClient.Get(context.Background(), client.ObjectKeyFromObject(s), &cur); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ing := range cur.Status.LoadBalancer.Ingress {
		out = append(out, ing.IP)
	}
	return out
}

func waitUntil(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last seen: %s", what, last)
}

// waitIPs waits until the Service's status holds exactly want (in order).
func waitIPs(t testing.TB, s *corev1.Service, want ...string) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%s/%s to have %v", s.Namespace, s.Name, want), func() (bool, string) {
		got := ips(t, s)
		return slices.Equal(got, want), fmt.Sprint(got)
	})
}

// waitAnyIP waits for the Service to get addresses and returns them.
func waitAnyIP(t testing.TB, s *corev1.Service) []string {
	t.Helper()
	var got []string
	waitUntil(t, fmt.Sprintf("%s/%s to get an address", s.Namespace, s.Name), func() (bool, string) {
		got = ips(t, s)
		return len(got) > 0, "none"
	})
	return got
}

// waitEvent waits for an Event on obj with the reason and a note holding
// every fragment, and returns the note.
func waitEvent(t testing.TB, obj client.Object, reason string, fragments ...string) string {
	t.Helper()
	var note string
	waitUntil(t, fmt.Sprintf("event %s %v on %s", reason, fragments, obj.GetName()), func() (bool, string) {
		var list eventsv1.EventList
		if err := apiClient.List(context.Background(), &list, client.InNamespace(eventNamespace(obj))); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range list.Items {
			if e.Regarding.Name != obj.GetName() || e.Regarding.UID != obj.GetUID() || e.Reason != reason {
				continue
			}
			seen = append(seen, e.Note)
			if containsAll(e.Note, fragments) {
				note = e.Note
				return true, ""
			}
		}
		return false, fmt.Sprint(seen)
	})
	return note
}

// noEvent asserts no Event with the reason exists on obj.
func noEvent(t testing.TB, obj client.Object, reason string) {
	t.Helper()
	var list eventsv1.EventList
	if err := apiClient.List(context.Background(), &list, client.InNamespace(eventNamespace(obj))); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Regarding.UID == obj.GetUID() && e.Reason == reason {
			t.Fatalf("unexpected %s event on %s: %s", reason, obj.GetName(), e.Note)
		}
	}
}

func eventNamespace(obj client.Object) string {
	if obj.GetNamespace() == "" {
		return "default"
	}
	return obj.GetNamespace()
}

func containsAll(s string, frags []string) bool {
	for _, f := range frags {
		if !strings.Contains(s, f) {
			return false
		}
	}
	return true
}

func getPool(t testing.TB, name string) *v1alpha1.AddressPool {
	t.Helper()
	var p v1alpha1.AddressPool
	if err := apiClient.Get(context.Background(), types.NamespacedName{Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// ctrlConfig lets each test start a fresh manager in this one process.
func ctrlConfig() config.Controller {
	return config.Controller{SkipNameValidation: ptr.To(true)}
}
