package ingress_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TestBurstCoalesces makes a burst of changes, many writers at once as a
// rollout or a namespace's deletion does, and checks that the controller
// compiles far fewer times than there were changes, and that the last
// change of the burst is served. A compile per change (a request per
// object, say) fails it; in a cluster this small a compile takes well
// under a millisecond, so the coalescing is mostly the workqueue's.
func TestBurstCoalesces(t *testing.T) {
	needAPI(t)
	const ns, changes, writers = "burst", 300, 64
	makeNamespace(t, ns)
	_, portA := backend(t, "a")
	_, portB := backend(t, "b")
	slice := endpointSlice(t, ns, "web-1", "web", portA, true)
	create(t, service(ns, "web"), slice, newIngress(ns, "web", ptr.To(className), networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
		hostRule("burst.example", prefixPath("/", serviceBackend("web", 80, ""))),
	}}))
	in := startInstance(t, "burst-test", "pub-burst")
	eventually(t, 10*time.Second, "first route", wantAnswer(in.plain, "burst.example", "/", 200, "a"))
	before := quietReloads(t)

	ctx := context.Background()
	t.Cleanup(func() {
		_ = api.Client.DeleteAllOf(ctx, &discoveryv1.EndpointSlice{}, client.InNamespace(ns), client.MatchingLabels{"burst": "yes"})
	})
	others := make([]*discoveryv1.EndpointSlice, changes-1)
	for i := range others {
		others[i] = endpointSlice(t, ns, fmt.Sprintf("other-%d", i), "other", portA, true)
		others[i].Labels["burst"] = "yes"
	}
	burst := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < len(others); i += writers {
				if err := api.Client.Create(ctx, others[i]); err != nil {
					t.Errorf("creating EndpointSlice %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	update(t, slice, func(s *discoveryv1.EndpointSlice) { s.Ports[0].Port = ptr.To(portB) }) // the last change
	eventually(t, 10*time.Second, "the last change", wantAnswer(in.plain, "burst.example", "/", 200, "b"))
	took := time.Since(burst)

	compiles := quietReloads(t) - before
	t.Logf("%d changes served in %s, %d compiles", changes, took.Round(time.Millisecond), compiles)
	if compiles < 1 || compiles > changes/4 {
		t.Errorf("%d changes compiled %d times, want 1 to %d", changes, compiles, changes/4)
	}
}

// quietReloads waits until no compile has come for half a second, far
// more than the debounce, and returns how many successful ones there were.
func quietReloads(t *testing.T) int {
	t.Helper()
	last := reloads(t)
	for {
		time.Sleep(500 * time.Millisecond)
		now := reloads(t)
		if now == last {
			return now
		}
		last = now
	}
}

// reloads reads portico_ingress_config_reloads_total{result="success"} as
// the metrics endpoint serves it.
func reloads(t *testing.T) int {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "portico_ingress_config_reloads_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "success" {
					return int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}
