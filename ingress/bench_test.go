package ingress_test

import (
	"flag"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"
)

// In a plain test run it makes a few changes and checks that no request
// fails; make bench-ingress runs it with 1,000 and reads the figures.
var benchChanges = flag.Int("bench-changes", 40, "TestBenchPropagation: number of Ingress and EndpointSlice changes to make under load")

// TestBenchPropagation measures how long traffic takes to follow a change
// in the API (an EndpointSlice's port, an Ingress's backend), from the
// moment the change is sent to the first request answered by the new
// backend, while other clients keep the proxy busy; and how many requests
// fail meanwhile. It prints figures and asserts none about time.
//
//	go test -run TestBenchPropagation -v ./ingress/ -args -bench-changes=1000
func TestBenchPropagation(t *testing.T) {
	needAPI(t)
	const ns = "bench"
	makeNamespace(t, ns)
	_, portA := backend(t, "a")
	_, portB := backend(t, "b")
	slice := endpointSlice(t, ns, "web-1", "web", portA, true)
	ing := newIngress(ns, "bench", ptr.To(className), networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
		hostRule("slice.example", prefixPath("/", serviceBackend("web", 80, ""))),
		hostRule("ingress.example", prefixPath("/", serviceBackend("web-a", 80, ""))),
	}})
	create(t, service(ns, "web"), service(ns, "web-a"), service(ns, "web-b"), slice,
		endpointSlice(t, ns, "web-a-1", "web-a", portA, true), endpointSlice(t, ns, "web-b-1", "web-b", portB, true), ing)
	in := startInstance(t, "bench-test", "pub-bench")
	eventually(t, 10*time.Second, "first route", wantAnswer(in.plain, "slice.example", "/", 200, "a"))
	eventually(t, 10*time.Second, "first route", wantAnswer(in.plain, "ingress.example", "/", 200, "a"))

	// Background load on both hosts; every answer must be a 200.
	var total, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			host := []string{"slice.example", "ingress.example"}[i%2]
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, _, err := get(in.plain, host, "/")
				total.Add(1)
				if err != nil || code != 200 {
					failed.Add(1)
				}
			}
		}()
	}

	// follow makes one change and waits until host answers want.
	var writeTimes, afterWrite []time.Duration
	follow := func(host, want string, change func()) time.Duration {
		start := time.Now()
		change()
		written := time.Now()
		writeTimes = append(writeTimes, written.Sub(start))
		defer func() { afterWrite = append(afterWrite, time.Since(written)) }()
		for {
			code, body, err := get(in.plain, host, "/")
			total.Add(1)
			if err != nil || code != 200 {
				failed.Add(1)
			}
			if body == want {
				return time.Since(start)
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s did not switch to %s within 10s", host, want)
			}
		}
	}
	var sliceTimes, ingressTimes []time.Duration
	begin := time.Now()
	for i := range *benchChanges {
		to, port, svc := "b", portB, "web-b"
		if i%2 == 1 {
			to, port, svc = "a", portA, "web-a"
		}
		if i%4 < 2 {
			sliceTimes = append(sliceTimes, follow("slice.example", to, func() {
				update(t, slice, func(s *discoveryv1.EndpointSlice) { s.Ports[0].Port = ptr.To(port) })
			}))
		} else {
			ingressTimes = append(ingressTimes, follow("ingress.example", to, func() {
				update(t, ing, func(g *networkingv1.Ingress) {
					g.Spec.Rules[1].HTTP.Paths[0].Backend.Service.Name = svc
				})
			}))
		}
	}
	elapsed := time.Since(begin)
	close(stop)
	wg.Wait()

	fmt.Printf("propagation, %d changes in %s under load (4 clients):\n", *benchChanges, elapsed.Round(time.Millisecond))
	fmt.Printf("  EndpointSlice port change → traffic: %s\n", percentiles(sliceTimes))
	fmt.Printf("  Ingress backend change   → traffic: %s\n", percentiles(ingressTimes))
	fmt.Printf("  of which the API write (get + update): %s\n", percentiles(writeTimes))
	fmt.Printf("  from the write's success to traffic:   %s\n", percentiles(afterWrite))
	fmt.Printf("  requests: %d, failed: %d\n", total.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed during the changes", failed.Load(), total.Load())
	}
}

func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	at := func(p float64) time.Duration { return ds[min(len(ds)-1, int(float64(len(ds))*p))] }
	return fmt.Sprintf("n=%d p50 %s p99 %s max %s", len(ds), at(0.50).Round(10*time.Microsecond), at(0.99).Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond))
}
