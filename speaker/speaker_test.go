package speaker_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/go-logr/logr"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/e2e/apitest"
	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/speaker"
	"github.com/portico-lb/portico/speaker/l2"
	"github.com/portico-lb/portico/speaker/member"
	"github.com/portico-lb/portico/speaker/status"
)

// The integration tests run the glue against a real API server. The
// announcer is layer 2's owner choice (l2.Owned) without sockets, so the
// tests see what the speaker would announce, which is what the glue is
// responsible for; the sockets have their own namespace tests.

var (
	lan    = netip.MustParsePrefix("192.0.2.0/24")
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
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "portico-system"}}
			if envErr = api.Client.Create(context.Background(), ns); envErr != nil {
				fmt.Fprintln(os.Stderr, "integration tests cannot run:", envErr)
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// recorder is an Announcer that computes layer 2 ownership purely and
// remembers the last State and answer.
type recorder struct {
	mu    sync.Mutex
	state *speaker.State
	got   []speaker.Announcement
	calls int
}

func (r *recorder) Announce(_ context.Context, st *speaker.State) ([]speaker.Announcement, error) {
	got := l2.Owned(st, map[string][]netip.Prefix{"eth0": {lan}})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state, r.got = st, got
	r.calls++
	return got, nil
}

func (r *recorder) announced() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, a := range r.got {
		out = append(out, fmt.Sprintf("%s %s %s", a.Service, a.IP, strings.Join(a.Via, ",")))
	}
	slices.Sort(out)
	return out
}

func runSpeaker(t *testing.T, env *apitest.Env, node string, members ...string) (*speaker.Speaker, *recorder) {
	t.Helper()
	return runSpeakerAs(t, env.Config, env, node, members...)
}

// runSpeakerAs runs the glue with cfg's credentials.
func runSpeakerAs(t *testing.T, cfg *rest.Config, env *apitest.Env, node string, members ...string) (*speaker.Speaker, *recorder) {
	t.Helper()
	return runSpeakerClasses(t, cfg, env, node, lbservice.Classes{}, members...)
}

// runSpeakerClasses runs the glue serving these classes.
func runSpeakerClasses(t *testing.T, cfg *rest.Config, env *apitest.Env, node string, classes lbservice.Classes, members ...string) (*speaker.Speaker, *recorder) {
	t.Helper()
	rec := &recorder{}
	sp, stop := startSpeaker(t, cfg, env, node, rec, true, classes, members...)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return sp, rec
}

// startSpeaker starts a manager running a speaker with announcer a, serving
// classes, with a ServiceAnnouncement writer if withStatus, members the
// live speakers; stop stops the manager and returns what its Start
// returned.
func startSpeaker(t *testing.T, cfg *rest.Config, env *apitest.Env, node string, a speaker.Announcer, withStatus bool, classes lbservice.Classes, members ...string) (sp *speaker.Speaker, stop func() error) {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  env.Scheme,
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		GracefulShutdownTimeout: ptr.To(2 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := speaker.Options{Node: node, Announcers: []speaker.Announcer{a}, Log: logr.Discard(), RetryAfter: 100 * time.Millisecond, Classes: classes}
	if withStatus {
		opts.Status = status.NewAnnouncements(mgr.GetClient(), node, status.Options{Retry: 100 * time.Millisecond, CleanupTimeout: 500 * time.Millisecond})
	}
	sp, err = speaker.New(mgr, mgr.GetEventRecorderFor("portico-speaker") /*nolint:staticcheck // see Speaker.events*/, opts)
	if err != nil {
		t.Fatal(err)
	}
	setMembers(sp, members...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return sp, sync.OnceValue(func() error {
		cancel()
		return <-done
	})
}

func setMembers(sp *speaker.Speaker, names ...string) {
	var ms []member.Member
	for _, n := range names {
		ms = append(ms, member.Member{Name: n, Interfaces: member.Interfaces{"eth0": {lan}}})
	}
	sp.SetMembers(ms)
}

func waitUntil(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %s", what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// seed creates nodes n1..n3, a pool, an L2Advertisement and a
// LoadBalancer Service with the address the controller would have given.
func seed(t *testing.T, c client.Client, ip string, local bool) *corev1.Service {
	t.Helper()
	ctx := context.Background()
	for _, n := range []string{"n1", "n2", "n3"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"kubernetes.io/hostname": n}}}
		if err := c.Create(ctx, node); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(ctx, node) })
	}
	pool := &v1alpha1.AddressPool{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.AddressPoolSpec{Addresses: []v1alpha1.AddressRange{"192.0.2.0/24"}}}
	adv := &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan"}}
	for _, o := range []client.Object{pool, adv} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(ctx, o) })
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", Annotations: map[string]string{lbservice.AnnotationAllocatedFrom: "lan"}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80}},
		},
	}
	if local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, svc) })
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
	if err := c.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestAnnouncesServiceAndPostsEvent: a Service with an address reaches
// the announcer; with this node the only live speaker it owns the address
// and says so in an Announced Event; when another
// speaker is alone eligible, it withdraws.
func TestAnnouncesServiceAndPostsEvent(t *testing.T) {
	apitest.Need(t, envErr)
	svc := seed(t, api.Client, "192.0.2.10", false)
	sp, rec := runSpeaker(t, api, "n1", "n1")

	want := []string{"default/web 192.0.2.10 eth0"}
	waitUntil(t, "the announcer to announce the Service", func() (bool, string) {
		got := rec.announced()
		return slices.Equal(got, want), fmt.Sprintf("announced %v, want %v", got, want)
	})
	waitUntil(t, "an Announced Event", func() (bool, string) {
		notes := events(t, svc, speaker.ReasonAnnounced)
		want := "announcing 192.0.2.10 by layer2 from node n1 via eth0"
		if slices.Contains(notes, want) {
			return true, ""
		}
		return false, fmt.Sprintf("Announced notes %q", notes)
	})

	// n1 is excluded from load balancing: it lets the address go.
	var n1 corev1.Node
	if err := api.Client.Get(context.Background(), types.NamespacedName{Name: "n1"}, &n1); err != nil {
		t.Fatal(err)
	}
	n1.Labels[lbservice.ExcludeLabel] = ""
	if err := api.Client.Update(context.Background(), &n1); err != nil {
		t.Fatal(err)
	}
	setMembers(sp, "n1", "n2")
	waitUntil(t, "the address to be withdrawn", func() (bool, string) {
		got := rec.announced()
		return len(got) == 0, fmt.Sprintf("announced %v", got)
	})
	waitUntil(t, "a Withdrawn Event", func() (bool, string) {
		notes := events(t, svc, speaker.ReasonWithdrawn)
		return len(notes) > 0, "none"
	})
}

// TestRequireClass: with --require-class the speaker announces Services of
// our class only; a class-less one is another load balancer's (MetalLB's,
// during a move) even when it has an address in one of our pools.
func TestRequireClass(t *testing.T) {
	apitest.Need(t, envErr)
	ctx := context.Background()
	seed(t, api.Client, "192.0.2.10", false) // class-less
	moved := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "moved", Annotations: map[string]string{lbservice.AnnotationAllocatedFrom: "lan"}},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: ptr.To(lbservice.Class),
			Selector:          map[string]string{"app": "web"},
			Ports:             []corev1.ServicePort{{Port: 80}},
		},
	}
	if err := api.Client.Create(ctx, moved); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Client.Delete(ctx, moved) })
	moved.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.11", IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
	if err := api.Client.Status().Update(ctx, moved); err != nil {
		t.Fatal(err)
	}
	sp, rec := runSpeakerClasses(t, api.Config, api, "n1", lbservice.Classes{RequireClass: true}, "n1")

	want := []string{"default/moved 192.0.2.11 eth0"}
	waitUntil(t, "the announcer to announce the Service of our class only", func() (bool, string) {
		got := rec.announced()
		return slices.Equal(got, want), fmt.Sprintf("announced %v, want %v", got, want)
	})
	st, err := sp.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range st.Services {
		if svc.Name.Name == "web" {
			t.Fatalf("the class-less Service is in the speaker's state: %+v", svc)
		}
	}
}

// TestLocalTrafficFollowsEndpoints: with externalTrafficPolicy: Local,
// only a node with a ready endpoint may own the address.
func TestLocalTrafficFollowsEndpoints(t *testing.T) {
	apitest.Need(t, envErr)
	seed(t, api.Client, "192.0.2.11", true)
	_, rec1 := runSpeaker(t, api, "n1", "n1", "n2", "n3")
	_, rec3 := runSpeaker(t, api, "n3", "n1", "n2", "n3")
	time.Sleep(500 * time.Millisecond)
	if got := append(rec1.announced(), rec3.announced()...); len(got) != 0 {
		t.Fatalf("announced %v with no endpoints at all", got)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.3.5"}, NodeName: ptr.To("n3"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.244.1.5"}, NodeName: ptr.To("n1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}
	if err := api.Client.Create(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Client.Delete(context.Background(), es) })
	waitUntil(t, "n3, the only node with a ready endpoint, to announce", func() (bool, string) {
		one, three := rec1.announced(), rec3.announced()
		return len(one) == 0 && len(three) == 1, fmt.Sprintf("n1 announces %v, n3 %v", one, three)
	})
}

// TestKeepsAnnouncingWithoutAPI: with the API server gone, the speaker
// still knows the Services and still moves addresses when members change.
func TestKeepsAnnouncingWithoutAPI(t *testing.T) {
	apitest.Need(t, envErr)
	env, err := apitest.Start()
	apitest.Need(t, err)
	stopped := false
	defer func() {
		if !stopped {
			env.Stop()
		}
	}()
	seed(t, env.Client, "192.0.2.12", false)
	// Which of n1 and n2 owns the address when both are live?
	st := &speaker.State{Services: []speaker.Service{{IPs: []netip.Addr{netip.MustParseAddr("192.0.2.12")}}}}
	addr := l2.AddressOf(st, netip.MustParseAddr("192.0.2.12"), st.Services)
	addr.Advertisements = []l2.Advertisement{{}}
	owner, _ := l2.Owner(addr, []l2.Node{{Name: "n1", Interfaces: member.Interfaces{"eth0": {lan}}}, {Name: "n2", Interfaces: member.Interfaces{"eth0": {lan}}}})
	other := map[string]string{"n1": "n2", "n2": "n1"}[owner]

	// Run the speaker of the node that does not own it, while the owner is live.
	sp, rec := runSpeaker(t, env, other, "n1", "n2")
	waitUntil(t, "the first State", func() (bool, string) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.state != nil && len(rec.state.Services) == 1, "no State with the Service yet"
	})
	if got := rec.announced(); len(got) != 0 {
		t.Fatalf("%s announces %v while %s owns it", other, got, owner)
	}
	stopped = true
	env.Stop() // waits out the API server's shutdown of open watches (~20s)
	// The owner dies; memberlist tells us, not the API.
	setMembers(sp, other)
	want := []string{"default/web 192.0.2.12 eth0"}
	waitUntil(t, "the address to move with the API server down", func() (bool, string) {
		got := rec.announced()
		return slices.Equal(got, want), fmt.Sprintf("announced %v, want %v", got, want)
	})
}

// TestMemberlistKey: the first speaker makes the Secret; the others read it.
func TestMemberlistKey(t *testing.T) {
	apitest.Need(t, envErr)
	ctx := context.Background()
	k1, err := member.Key(ctx, api.Client, "portico-system", "portico-memberlist")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := member.Key(ctx, api.Client, "portico-system", "portico-memberlist")
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != 32 || string(k1) != string(k2) {
		t.Fatalf("keys %x and %x: want the same 32 bytes", k1, k2)
	}
	bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "portico-system", Name: "short"}, Data: map[string][]byte{member.KeyField: []byte("short")}}
	if err := api.Client.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := member.Key(ctx, api.Client, "portico-system", "short"); err == nil || !strings.Contains(err.Error(), "16, 24 or 32") {
		t.Fatalf("a 5-byte key: err %v, want one saying what sizes are valid", err)
	}
}

func events(t *testing.T, svc *corev1.Service, reason string) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := api.Client.List(context.Background(), &list, client.InNamespace(svc.Namespace)); err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, e := range list.Items {
		if e.Regarding.Name == svc.Name && e.Reason == reason {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

// TestManifestRBACIsEnough applies manifests/speaker to the API server and
// runs the glue and the key Secret's code as the speaker's service
// account: the least-privilege RBAC must let it do all it needs.
func TestManifestRBACIsEnough(t *testing.T) {
	apitest.Need(t, envErr)
	ctx := context.Background()
	out, err := exec.Command(api.Kubectl, "--kubeconfig", api.Kubeconfig, "apply", "-k", filepath.Join("..", "manifests", "speaker")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply -k manifests/speaker: %v\n%s", err, out)
	}
	sa := rest.CopyConfig(api.Config)
	sa.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:portico-system:portico-speaker",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:portico-system", "system:authenticated"},
	}
	c, err := client.New(sa, client.Options{Scheme: api.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	// The gossip key: made when missing, read when present.
	_ = api.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "portico-system", Name: "portico-memberlist"}})
	k1, err := member.Key(ctx, c, "portico-system", "portico-memberlist")
	if err != nil {
		t.Fatalf("creating the key as the speaker: %v", err)
	}
	k2, err := member.Key(ctx, c, "portico-system", "portico-memberlist")
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("reading the key as the speaker: %v", err)
	}
	// BGPPeers' passwordSecrets live in portico-system, so the speaker
	// reads Secrets there, and nowhere else.
	var other corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: "portico-system", Name: "short"}, &other); err != nil {
		t.Fatalf("the speaker cannot read a password Secret in portico-system: %v", err)
	}
	elsewhere := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "not-for-speakers"}, StringData: map[string]string{"password": "x"}}
	if err := api.Client.Create(ctx, elsewhere); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(elsewhere), &other); err == nil {
		t.Fatal("the speaker can read Secrets outside portico-system")
	}
	// The other speakers' pods.
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace("portico-system")); err != nil {
		t.Fatalf("listing speaker pods as the speaker: %v", err)
	}

	// The glue: everything it watches, and the Event it posts.
	svc := seed(t, api.Client, "192.0.2.13", false)
	_, rec := runSpeakerAs(t, sa, api, "n1", "n1")
	waitUntil(t, "the speaker, as its service account, to announce", func() (bool, string) {
		got := rec.announced()
		return len(got) == 1, fmt.Sprintf("announced %v", got)
	})
	waitUntil(t, "its Announced Event", func() (bool, string) {
		return len(events(t, svc, speaker.ReasonAnnounced)) > 0, "none"
	})
	waitUntil(t, "its ServiceAnnouncement", func() (bool, string) {
		got := announcements(t, svc)
		return slices.Equal(got, []string{"n1 layer2 192.0.2.13 eth0"}), fmt.Sprintf("%q", got)
	})

	// Its entry in a BGPPeer's status, by server-side apply.
	bp := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "rbac-router"}, Spec: v1alpha1.BGPPeerSpec{MyASN: 64512, PeerASN: 64500, PeerAddress: "192.0.2.1"}}
	if err := api.Client.Create(ctx, bp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Client.Delete(ctx, bp) })
	src := []status.PeerSession{{Peer: "rbac-router", State: "active", Since: time.Now()}}
	peers := status.NewPeers(c, "n1", func() []status.PeerSession { return src }, status.Options{})
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- peers.Start(pctx) }()
	peers.Poke()
	waitUntil(t, "the speaker's BGPPeer status entry", func() (bool, string) {
		if err := api.Client.Get(ctx, client.ObjectKeyFromObject(bp), bp); err != nil {
			return false, err.Error()
		}
		return len(bp.Status.Nodes) == 1 && bp.Status.Nodes[0].State == "Active", fmt.Sprintf("%+v", bp.Status)
	})
	stop()
	<-done
}

// announcements lists a Service's ServiceAnnouncements as "node protocol
// ips via".
func announcements(t *testing.T, svc *corev1.Service) []string {
	t.Helper()
	var list v1alpha1.ServiceAnnouncementList
	if err := api.Client.List(context.Background(), &list, client.InNamespace(svc.Namespace), client.MatchingLabels{v1alpha1.ServiceNameLabel: svc.Name}); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, sa := range list.Items {
		st := sa.Status
		out = append(out, fmt.Sprintf("%s %s %s %s", st.Node, st.Protocol, strings.Join(st.IPs, ","), strings.Join(append(st.Interfaces, st.Peers...), ",")))
	}
	slices.Sort(out)
	return out
}

// TestServiceAnnouncementFollowsOwner: two speakers; the owner's
// ServiceAnnouncement names it; when it is excluded, the other takes the
// address and the object names the other, the first one's gone; when the
// Service loses its address, no object is left.
func TestServiceAnnouncementFollowsOwner(t *testing.T) {
	apitest.Need(t, envErr)
	ctx := context.Background()
	svc := seed(t, api.Client, "192.0.2.14", false)
	_, rec1 := runSpeaker(t, api, "n1", "n1", "n2")
	_, rec2 := runSpeaker(t, api, "n2", "n1", "n2")
	owner := ""
	waitUntil(t, "one ServiceAnnouncement naming the owner", func() (bool, string) {
		one, two := rec1.announced(), rec2.announced()
		switch {
		case len(one) == 1 && len(two) == 0:
			owner = "n1"
		case len(one) == 0 && len(two) == 1:
			owner = "n2"
		default:
			return false, fmt.Sprintf("n1 announces %v, n2 %v", one, two)
		}
		got := announcements(t, svc)
		return slices.Equal(got, []string{owner + " layer2 192.0.2.14 eth0"}), fmt.Sprintf("%q", got)
	})
	other := map[string]string{"n1": "n2", "n2": "n1"}[owner]

	var n corev1.Node
	if err := api.Client.Get(ctx, types.NamespacedName{Name: owner}, &n); err != nil {
		t.Fatal(err)
	}
	n.Labels[lbservice.ExcludeLabel] = ""
	if err := api.Client.Update(ctx, &n); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the ServiceAnnouncement to name the new owner", func() (bool, string) {
		got := announcements(t, svc)
		return slices.Equal(got, []string{other + " layer2 192.0.2.14 eth0"}), fmt.Sprintf("%q", got)
	})

	// Deleted by someone else (a node that took over while this one was
	// cut off): written again at once, not at the next resync.
	sa := &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: v1alpha1.ServiceAnnouncementName(svc.Name, other, v1alpha1.ProtocolLayer2)}}
	if err := api.Client.Delete(ctx, sa); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitUntil(t, "the ServiceAnnouncement back", func() (bool, string) {
		got := announcements(t, svc)
		return slices.Equal(got, []string{other + " layer2 192.0.2.14 eth0"}), fmt.Sprintf("%q", got)
	})
	t.Logf("the deleted ServiceAnnouncement came back after %v", time.Since(start))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the deleted ServiceAnnouncement came back after %v, want at once", took)
	}

	if err := api.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = nil
	if err := api.Client.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "no ServiceAnnouncement", func() (bool, string) {
		got := announcements(t, svc)
		return len(got) == 0, fmt.Sprintf("%q", got)
	})
}

// stalling is an Announcer whose calls from Reconcile (a State read from
// the cluster, which always has its Nodes) wait until release is closed,
// as an announcer busy on a slow socket would. It logs the start and end
// of every call, and whether two ever overlapped.
type stalling struct {
	entered chan struct{}
	release chan struct{}

	mu      sync.Mutex
	calls   []string
	inside  int
	overlap bool
}

func (a *stalling) Announce(_ context.Context, st *speaker.State) ([]speaker.Announcement, error) {
	what := "reconcile"
	if st.Nodes == nil {
		what = "withdraw" // withdraw hands over a State with the node's name only
	}
	a.mu.Lock()
	a.overlap = a.overlap || a.inside > 0
	a.inside++
	a.calls = append(a.calls, what+" start")
	a.mu.Unlock()
	if what == "reconcile" {
		select {
		case a.entered <- struct{}{}:
		default:
		}
		<-a.release
	}
	a.mu.Lock()
	a.inside--
	a.calls = append(a.calls, what+" end")
	a.mu.Unlock()
	return nil, nil
}

// TestWithdrawsAfterLastReconcile: when the manager stops in the middle of
// a Reconcile, with another change queued, the speaker withdraws once, after
// that Reconcile has returned, and nothing calls the announcers after it.
func TestWithdrawsAfterLastReconcile(t *testing.T) {
	apitest.Need(t, envErr)
	a := &stalling{entered: make(chan struct{}, 1), release: make(chan struct{})}
	sp, stop := startSpeaker(t, api.Config, api, "n1", a, false, lbservice.Classes{}, "n1")
	released := sync.OnceFunc(func() { close(a.release) })
	t.Cleanup(func() { released(); _ = stop() })
	select {
	case <-a.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("no Reconcile called the announcer")
	}
	setMembers(sp, "n1", "n2") // queued behind the Reconcile in progress

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Long enough for a withdrawal that does not wait for the Reconcile to
	// show up, well within the manager's graceful shutdown timeout.
	time.Sleep(300 * time.Millisecond)
	released()
	if err := <-stopped; err != nil {
		t.Fatalf("manager: %v", err)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.overlap {
		t.Errorf("two calls to the announcer overlapped: %q", a.calls)
	}
	n := len(a.calls)
	if n < 4 || a.calls[n-2] != "withdraw start" || a.calls[n-1] != "withdraw end" {
		t.Fatalf("calls %q: want the withdrawal last", a.calls)
	}
	if slices.Contains(a.calls[:n-2], "withdraw start") {
		t.Errorf("calls %q: withdrew more than once", a.calls)
	}
}
