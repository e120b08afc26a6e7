package status_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/e2e/apitest"
	"github.com/portico-lb/portico/speaker/status"
)

// The writers run against a real API server, through a manager's cache as
// in the speaker.

var (
	envErr error
	api    *apitest.Env
)

func TestMain(m *testing.M) {
	logf.SetLogger(logr.Discard())
	code := func() int {
		api, envErr = apitest.Start()
		if envErr != nil {
			fmt.Fprintln(os.Stderr, "integration tests cannot run:", envErr)
		} else {
			defer api.Stop()
		}
		return m.Run()
	}()
	os.Exit(code)
}

// manager runs a manager until the test ends and returns its client,
// which reads from the cache.
func manager(t *testing.T) client.Client {
	t.Helper()
	mgr, err := ctrl.NewManager(api.Config, ctrl.Options{
		Scheme:                  api.Scheme,
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		GracefulShutdownTimeout: ptr.To(2 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return mgr.GetClient()
}

// runAnnouncements runs node's writer; stop stops it (and it cleans up),
// and waits for it.
func runAnnouncements(t *testing.T, node string) (w *status.Announcements, stop func()) {
	t.Helper()
	w = status.NewAnnouncements(manager(t), node, status.Options{Retry: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return w, stop
}

func service(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	ctx := context.Background()
	if err := api.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if err := api.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Client.Delete(ctx, svc) })
	return svc
}

func get(t *testing.T, ns, name string) (*v1alpha1.ServiceAnnouncement, bool) {
	t.Helper()
	var sa v1alpha1.ServiceAnnouncement
	err := api.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &sa)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return &sa, true
}

// put makes the object a node's speaker would have written, as that node
// would: for a node that is gone since.
func put(t *testing.T, svc *corev1.Service, node, protocol string, ips ...string) {
	t.Helper()
	ctx := context.Background()
	sa := &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{
		Namespace: svc.Namespace,
		Name:      v1alpha1.ServiceAnnouncementName(svc.Name, node, protocol),
		Labels:    map[string]string{v1alpha1.ServiceNameLabel: svc.Name, v1alpha1.NodeNameLabel: node},
	}}
	if err := api.Client.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	sa.Status = v1alpha1.ServiceAnnouncementStatus{Service: svc.Name, Node: node, Protocol: protocol, IPs: ips, Since: metav1.Now()}
	if err := api.Client.Status().Update(ctx, sa); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %s", what, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func announcement(svc *corev1.Service, protocol string, via []string, ips ...string) status.Announcement {
	return status.Announcement{Service: client.ObjectKeyFromObject(svc), ServiceUID: svc.UID, Protocol: protocol, IPs: ips, Via: via}
}

// TestAnnouncementLifecycle: the object comes when the node announces,
// owned by the Service, follows what it announces, and goes when it stops
// and when the speaker stops.
func TestAnnouncementLifecycle(t *testing.T) {
	apitest.Need(t, envErr)
	svc := service(t, "life", "web")
	w, stop := runAnnouncements(t, "n1")
	name := "web-n1-layer2"

	w.Set([]status.Announcement{announcement(svc, v1alpha1.ProtocolLayer2, []string{"eth0"}, "192.0.2.10")}, []string{"n1"})
	var first *v1alpha1.ServiceAnnouncement
	waitUntil(t, "the ServiceAnnouncement", func() (bool, string) {
		sa, ok := get(t, "life", name)
		if !ok || sa.Status.Node == "" {
			return false, fmt.Sprintf("%s: %+v", name, sa)
		}
		first = sa
		return true, ""
	})
	st := first.Status
	if st.Service != "web" || st.Node != "n1" || st.Protocol != v1alpha1.ProtocolLayer2 || !slices.Equal(st.IPs, []string{"192.0.2.10"}) || !slices.Equal(st.Interfaces, []string{"eth0"}) || st.Peers != nil || st.Since.IsZero() {
		t.Errorf("status %+v", st)
	}
	if first.Labels[v1alpha1.ServiceNameLabel] != "web" || first.Labels[v1alpha1.NodeNameLabel] != "n1" {
		t.Errorf("labels %v", first.Labels)
	}
	if len(first.OwnerReferences) != 1 {
		t.Fatalf("owner references %+v, want the Service", first.OwnerReferences)
	}
	o := first.OwnerReferences[0]
	if o.Kind != "Service" || o.APIVersion != "v1" || o.Name != "web" || o.UID != svc.UID || o.Controller != nil || o.BlockOwnerDeletion == nil || *o.BlockOwnerDeletion {
		t.Errorf("owner reference %+v: want the Service, not as controller, not blocking its deletion", o)
	}

	// A second address and interface: the status follows, since stays.
	w.Set([]status.Announcement{announcement(svc, v1alpha1.ProtocolLayer2, []string{"eth1", "eth0", "eth0"}, "2001:db8::10", "192.0.2.10")}, []string{"n1"})
	waitUntil(t, "the status to follow", func() (bool, string) {
		sa, _ := get(t, "life", name)
		if sa == nil {
			return false, "gone"
		}
		ok := slices.Equal(sa.Status.IPs, []string{"192.0.2.10", "2001:db8::10"}) && slices.Equal(sa.Status.Interfaces, []string{"eth0", "eth1"})
		return ok, fmt.Sprintf("status %+v", sa.Status)
	})
	if sa, _ := get(t, "life", name); sa == nil || !sa.Status.Since.Equal(&first.Status.Since) {
		t.Errorf("since changed: %+v, was %v", sa, first.Status.Since)
	}

	// BGP as well, then layer 2 stops.
	w.Set([]status.Announcement{
		announcement(svc, v1alpha1.ProtocolLayer2, []string{"eth0"}, "192.0.2.10"),
		announcement(svc, v1alpha1.ProtocolBGP, []string{"router-a", "router-b"}, "192.0.2.10"),
	}, []string{"n1"})
	waitUntil(t, "the bgp ServiceAnnouncement", func() (bool, string) {
		sa, ok := get(t, "life", "web-n1-bgp")
		return ok && slices.Equal(sa.Status.Peers, []string{"router-a", "router-b"}) && sa.Status.Interfaces == nil, fmt.Sprintf("%+v", sa)
	})
	w.Set([]status.Announcement{announcement(svc, v1alpha1.ProtocolBGP, []string{"router-a", "router-b"}, "192.0.2.10")}, []string{"n1"})
	waitUntil(t, "the layer2 ServiceAnnouncement to go", func() (bool, string) {
		_, ok := get(t, "life", name)
		return !ok, "still there"
	})

	// Deleted by someone else: made again at the next resync or change.
	if err := api.Client.Delete(context.Background(), &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Namespace: "life", Name: "web-n1-bgp"}}); err != nil {
		t.Fatal(err)
	}
	w.Set([]status.Announcement{
		announcement(svc, v1alpha1.ProtocolBGP, []string{"router-a"}, "192.0.2.10"),
	}, []string{"n1"})
	waitUntil(t, "the bgp ServiceAnnouncement again", func() (bool, string) {
		sa, ok := get(t, "life", "web-n1-bgp")
		return ok && slices.Equal(sa.Status.Peers, []string{"router-a"}), fmt.Sprintf("%+v", sa)
	})

	// The speaker stops: its objects go.
	stop()
	if _, ok := get(t, "life", "web-n1-bgp"); ok {
		t.Error("the ServiceAnnouncement outlived its speaker")
	}
}

// TestFailoverMovesAnnouncement: the new layer 2 owner's object comes and
// the old owner's, which the old owner cannot delete any more, goes, in
// one pass; a live speaker's object is left to that speaker.
func TestFailoverMovesAnnouncement(t *testing.T) {
	apitest.Need(t, envErr)
	svc := service(t, "failover", "web")
	other := service(t, "failover", "other")
	put(t, svc, "n1", v1alpha1.ProtocolLayer2, "192.0.2.20")
	put(t, svc, "n3", v1alpha1.ProtocolLayer2, "192.0.2.20")   // live: left alone
	put(t, other, "n1", v1alpha1.ProtocolLayer2, "192.0.2.21") // not taken over by n2
	put(t, svc, "n1", v1alpha1.ProtocolBGP, "192.0.2.20")      // not layer 2
	w, _ := runAnnouncements(t, "n2")
	// Let the writer's cache fill first, so that what is measured is a
	// failover, not a start.
	// n0 is live and ranks first: it, not n2, would sweep.
	w.Set(nil, []string{"n0", "n1", "n2", "n3"})
	time.Sleep(time.Second)
	if _, ok := get(t, "failover", "web-n1-layer2"); !ok {
		t.Fatal("n2 deleted n1's object while n1 was live")
	}

	w.Set([]status.Announcement{announcement(svc, v1alpha1.ProtocolLayer2, []string{"eth0"}, "192.0.2.20")}, []string{"n0", "n2", "n3"})
	took := waitUntil(t, "n2's object to replace n1's", func() (bool, string) {
		_, n1 := get(t, "failover", "web-n1-layer2")
		_, n2 := get(t, "failover", "web-n2-layer2")
		return !n1 && n2, fmt.Sprintf("n1's there: %v, n2's there: %v", n1, n2)
	})
	t.Logf("ServiceAnnouncement moved %v after the new owner took the address", took)
	if took > time.Second {
		t.Errorf("the ServiceAnnouncement moved after %v, want within a second", took)
	}
	for _, name := range []string{"web-n3-layer2", "other-n1-layer2", "web-n1-bgp"} {
		if _, ok := get(t, "failover", name); !ok {
			t.Errorf("%s was deleted by the new owner of web", name)
		}
	}
}

// TestSweepRemovesGoneNodes: the first live speaker by name deletes the
// objects of nodes that are not live; the others do not.
func TestSweepRemovesGoneNodes(t *testing.T) {
	apitest.Need(t, envErr)
	svc := service(t, "sweep", "web")
	put(t, svc, "gone", v1alpha1.ProtocolBGP, "192.0.2.30")
	put(t, svc, "c-live", v1alpha1.ProtocolBGP, "192.0.2.30")

	second, _ := runAnnouncements(t, "b-live")
	second.Set(nil, []string{"a-live", "b-live", "c-live"})
	time.Sleep(time.Second)
	if _, ok := get(t, "sweep", "web-gone-bgp"); !ok {
		t.Fatal("a speaker that is not the first swept")
	}
	first, _ := runAnnouncements(t, "a-live")
	first.Set(nil, []string{"a-live", "b-live", "c-live"})
	waitUntil(t, "the gone node's object to go", func() (bool, string) {
		_, ok := get(t, "sweep", "web-gone-bgp")
		return !ok, "still there"
	})
	if _, ok := get(t, "sweep", "web-c-live-bgp"); !ok {
		t.Error("the sweep deleted a live node's object")
	}
}

// TestSetNeverBlocks: the announcing path hands the writer its picture
// without waiting, even when the writer is not running at all.
func TestSetNeverBlocks(t *testing.T) {
	w := status.NewAnnouncements(nil, "n1", status.Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10000 {
			w.Set([]status.Announcement{{Service: types.NamespacedName{Namespace: "a", Name: "b"}, Protocol: v1alpha1.ProtocolLayer2, IPs: []string{"192.0.2.1"}}}, []string{"n1"})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Set blocked with no writer running")
	}
}
