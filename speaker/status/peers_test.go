package status_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/e2e/apitest"
	"github.com/portico-lb/portico/speaker/status"
)

// sessions is a settable source of PeerSessions.
type sessions struct {
	mu sync.Mutex
	s  []status.PeerSession
}

func (s *sessions) set(ps ...status.PeerSession) {
	s.mu.Lock()
	s.s = ps
	s.mu.Unlock()
}

func (s *sessions) get() []status.PeerSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]status.PeerSession(nil), s.s...)
}

func runPeers(t *testing.T, node string, src *sessions) (*status.Peers, func()) {
	t.Helper()
	p := status.NewPeers(manager(t), node, src.get, status.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Start(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return p, stop
}

func peerStatus(t *testing.T, name string) map[string]v1alpha1.BGPPeerNodeStatus {
	t.Helper()
	var bp v1alpha1.BGPPeer
	if err := api.Client.Get(context.Background(), types.NamespacedName{Name: name}, &bp); err != nil {
		t.Fatal(err)
	}
	out := map[string]v1alpha1.BGPPeerNodeStatus{}
	for _, n := range bp.Status.Nodes {
		out[n.Node] = n
	}
	return out
}

// TestPeerStatusPerNode: each speaker applies its own entry; one node's
// changes, removal and exit leave the others' entries as they were; the
// first live speaker removes the entry of a node that is gone.
func TestPeerStatusPerNode(t *testing.T) {
	apitest.Need(t, envErr)
	ctx := context.Background()
	bp := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router"}, Spec: v1alpha1.BGPPeerSpec{MyASN: 64512, PeerASN: 64500, PeerAddress: "192.0.2.1"}}
	if err := api.Client.Create(ctx, bp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Client.Delete(ctx, bp) })
	since := time.Now().Add(-time.Minute)

	var src1, src2, src3 sessions
	src1.set(status.PeerSession{Peer: "router", Generation: bp.Generation, State: "established", Up: true, Prefixes: 3, Since: since})
	src2.set(status.PeerSession{Peer: "router", Generation: bp.Generation, State: "active", Since: since})
	src3.set(status.PeerSession{Peer: "router", Generation: bp.Generation, State: "idle", Problem: `passwordSecret portico-system/pw key "password": not found`, Since: since})
	p1, _ := runPeers(t, "n1", &src1)
	p2, stop2 := runPeers(t, "n2", &src2)
	_, stop3 := runPeers(t, "n3", &src3)
	p1.Poke()
	p2.Poke()

	waitUntil(t, "three entries", func() (bool, string) {
		got := peerStatus(t, "router")
		return len(got) == 3, fmt.Sprintf("%+v", got)
	})
	got := peerStatus(t, "router")
	n1 := got["n1"]
	if n1.State != "Established" || n1.PrefixesSent != 3 || n1.LastError != "" || len(n1.Conditions) != 1 {
		t.Errorf("n1: %+v", n1)
	} else if c := n1.Conditions[0]; c.Type != status.ConditionEstablished || c.Status != metav1.ConditionTrue || c.Reason != "Established" || c.ObservedGeneration != bp.Generation {
		t.Errorf("n1's condition: %+v", c)
	}
	n2 := got["n2"]
	if n2.State != "Active" || n2.PrefixesSent != 0 || len(n2.Conditions) != 1 || n2.Conditions[0].Status != metav1.ConditionFalse || n2.Conditions[0].Reason != "Active" {
		t.Errorf("n2: %+v", n2)
	}
	n3 := got["n3"]
	if n3.State != "Idle" || n3.LastError == "" || len(n3.Conditions) != 1 || n3.Conditions[0].Reason != "ConfigurationError" || n3.Conditions[0].Message != n3.LastError {
		t.Errorf("n3: %+v", n3)
	}

	// n2's session comes up: n1's entry is untouched.
	src2.set(status.PeerSession{Peer: "router", Generation: bp.Generation, State: "established", Up: true, Prefixes: 5, Since: time.Now()})
	p2.Poke()
	waitUntil(t, "n2 established", func() (bool, string) {
		got := peerStatus(t, "router")
		return got["n2"].State == "Established" && got["n2"].PrefixesSent == 5, fmt.Sprintf("%+v", got["n2"])
	})
	if got := peerStatus(t, "router"); got["n1"].PrefixesSent != 3 || got["n1"].State != "Established" || got["n3"].LastError == "" {
		t.Errorf("another node's update changed the rest: %+v", got)
	}

	// n1 no longer has the session: only its entry goes.
	src1.set()
	p1.Poke()
	waitUntil(t, "n1's entry to go", func() (bool, string) {
		got := peerStatus(t, "router")
		_, ok := got["n1"]
		return !ok && len(got) == 2, fmt.Sprintf("%+v", got)
	})

	// n2 stops: its entry goes with it.
	stop2()
	if got := peerStatus(t, "router"); len(got) != 1 || got["n3"].Node != "n3" {
		t.Errorf("after n2 stopped: %+v, want n3's entry only", got)
	}

	// n9 was cut off with its session up, so its speaker could not
	// remove its entry; n1, the first live speaker, does.
	gone := fmt.Sprintf(`{"apiVersion":"portico.dev/v1alpha1","kind":"BGPPeer","metadata":{"name":"router"},"status":{"nodes":[{"node":"n9","state":"Established","prefixesSent":2,"since":%q}]}}`, since.UTC().Format(time.RFC3339))
	if err := api.Client.Status().Patch(ctx, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router"}}, client.RawPatch(types.ApplyPatchType, []byte(gone)), client.FieldOwner(status.FieldManager("n9"))); err != nil {
		t.Fatal(err)
	}
	if got := peerStatus(t, "router"); len(got) != 2 {
		t.Fatalf("n9's entry did not land beside n3's: %+v", got)
	}
	src1.set(status.PeerSession{Peer: "router", Generation: bp.Generation, State: "established", Up: true, Prefixes: 1, Since: since})
	p1.SetMembers([]string{"n1", "n3"})
	waitUntil(t, "n9's entry to be swept, n1's back", func() (bool, string) {
		got := peerStatus(t, "router")
		_, nine := got["n9"]
		return !nine && got["n1"].PrefixesSent == 1 && got["n3"].Node == "n3", fmt.Sprintf("%+v", got)
	})
	stop3()
}
