//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/e2e/lab"
)

// installPortico installs Portico into the lab as a user would (kubectl
// apply -k manifests/) and waits for it; it is idempotent. The first call
// of a run also restarts Portico's pods, so that a lab kept up across
// builds runs the binaries under test.
func installPortico(t testing.TB) {
	t.Helper()
	c := cfg
	c.Out = testWriter{t}
	if err := lab.Install(context.Background(), c); err != nil {
		t.Fatalf("installing Portico: %v", err)
	}
	restartOnce.Do(func() {
		for _, w := range []string{"deployment/portico-controller", "deployment/portico-ingress", "daemonset/portico-speaker"} {
			kubectl(t, "", "rollout", "restart", "-n", "portico-system", w)
		}
		for _, w := range []string{"deployment/portico-controller", "deployment/portico-ingress", "daemonset/portico-speaker"} {
			kubectl(t, "", "rollout", "status", "-n", "portico-system", w, "--timeout=120s")
		}
	})
}

var restartOnce sync.Once

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// lbIPs waits for a Service to have addresses in its status.
func lbIPs(t testing.TB, ns, name string) []string {
	t.Helper()
	var ips []string
	eventually(t, 60*time.Second, "an address for "+ns+"/"+name, func() error {
		svc, err := cs.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ips = ips[:0]
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			ips = append(ips, ing.IP)
		}
		if len(ips) == 0 {
			return fmt.Errorf("EXTERNAL-IP pending")
		}
		return nil
	})
	return ips
}

func inLabPool(t testing.TB, ip string) bool {
	first, last, _ := strings.Cut(lab.PoolV4, "-")
	a, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatalf("%q is not an address", ip)
	}
	return netip.MustParseAddr(first).Compare(a) <= 0 && a.Compare(netip.MustParseAddr(last)) <= 0
}

// TestPorticoAllocates: installed with kubectl apply -k, the ingress
// Service holds the pool's first address, a LoadBalancer Service gets
// another from the pool with an Event saying so, and when the controller
// replica holding the Lease dies the other one keeps allocating.
func TestPorticoAllocates(t *testing.T) {
	installPortico(t)
	first, _, _ := strings.Cut(lab.PoolV4, "-")
	if got := lbIPs(t, "portico-system", "portico-ingress"); got[0] != first {
		t.Fatalf("ingress Service has %v, want the pool's first address %s", got, first)
	}

	ns := namespace(t)
	apply(t, ns, `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 3000}]
`)
	ip := lbIPs(t, ns, "web")[0]
	if !inLabPool(t, ip) || ip == first {
		t.Fatalf("web got %s, want an address of %s other than %s", ip, lab.PoolV4, first)
	}
	eventually(t, 30*time.Second, "IPAllocated event", func() error {
		out := kubectl(t, "", "get", "events", "-n", ns, "--field-selector", "reason=IPAllocated", "-o", "jsonpath={.items[*].message}")
		if !strings.Contains(out, ip) {
			return fmt.Errorf("events: %q", out)
		}
		return nil
	})

	// Kill the leader; the other replica takes the Lease and allocates.
	lease, err := cs.CoordinationV1().Leases("portico-system").Get(context.Background(), "portico-controller", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("controller Lease: %v", err)
	}
	leader, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
	kubectl(t, "", "delete", "pod", "-n", "portico-system", leader, "--wait=false")
	apply(t, ns, `apiVersion: v1
kind: Service
metadata:
  name: after-failover
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 3000}]
`)
	ip2 := lbIPs(t, ns, "after-failover")[0]
	if ip2 == ip || ip2 == first || !inLabPool(t, ip2) {
		t.Fatalf("after failover got %s (web has %s, ingress %s)", ip2, ip, first)
	}
	svc, err := cs.CoreV1().Services(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := svc.Status.LoadBalancer.Ingress; len(got) != 1 || got[0].IP != ip {
		t.Fatalf("web moved from %s to %v across the failover", ip, got)
	}
}
