package controller_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/controller"
)

// TestRestartKeepsAddresses stops the controller, changes the world in ways
// that would tempt a naive allocator to hand out addresses in a different
// order, and checks that nothing already assigned moves.
func TestRestartKeepsAddresses(t *testing.T) {
	stop := runController(t, false)
	cleanup(t)
	makePool(t, "lan", []string{"192.0.2.0/28"})
	var svcs []*corev1.Service
	want := map[string][]string{}
	for i := range 6 {
		s := makeService(t, fmt.Sprintf("s%d", i))
		svcs = append(svcs, s)
		want[s.Name] = waitAnyIP(t, s)
	}
	stop()

	// While it is down: free the lowest addresses and ask for new Services.
	deleteObject(t, svcs[0])
	deleteObject(t, svcs[1])
	late := makeService(t, "late")
	ing := makeService(t, ingressKey.Name, namespace(ingressKey.Namespace))

	runController(t, false)
	waitAnyIP(t, late)
	waitAnyIP(t, ing)
	for _, s := range svcs[2:] {
		if got := ips(t, s); !slices.Equal(got, want[s.Name]) {
			t.Errorf("%s moved from %v to %v across a restart", s.Name, want[s.Name], got)
		}
	}
	for _, s := range []*corev1.Service{late, ing} {
		got := ips(t, s)
		for _, old := range svcs[2:] {
			if slices.Equal(got, want[old.Name]) {
				t.Errorf("%s got %v, still held by %s", s.Name, got, old.Name)
			}
		}
	}
}

// TestTwoReplicas runs two controllers as the Deployment does: only the
// Lease holder allocates, and when it stops the other takes over without
// moving anything.
func TestTwoReplicas(t *testing.T) {
	stopA := runController(t, true)
	waitUntil(t, "a leader", func() (bool, string) {
		var l coordinationv1.Lease
		err := apiClient.Get(context.Background(), client.ObjectKey{Namespace: "portico-system", Name: "portico-controller"}, &l)
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "", fmt.Sprint(err)
	})
	runController(t, true)
	cleanup(t)
	makePool(t, "lan", []string{"192.0.2.0/28"})
	var svcs []*corev1.Service
	seen := map[string]string{}
	for i := range 8 {
		s := makeService(t, fmt.Sprintf("r%d", i))
		svcs = append(svcs, s)
	}
	for _, s := range svcs {
		ip := waitAnyIP(t, s)[0]
		if other, dup := seen[ip]; dup {
			t.Fatalf("%s and %s both hold %s", s.Name, other, ip)
		}
		seen[ip] = s.Name
	}
	before := map[string][]string{}
	for _, s := range svcs {
		before[s.Name] = ips(t, s)
	}

	stopA() // the first started is the leader: it holds the Lease
	after := makeService(t, "after-failover")
	got := waitAnyIP(t, after)
	if owner, dup := seen[got[0]]; dup {
		t.Fatalf("new leader gave %v, already held by %s", got, owner)
	}
	for _, s := range svcs {
		if cur := ips(t, s); !slices.Equal(cur, before[s.Name]) {
			t.Errorf("%s moved from %v to %v on failover", s.Name, before[s.Name], cur)
		}
	}
	waitEvent(t, after, controller.ReasonAllocated, got[0])
}
