//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// monitored is one metric the monitoring component's alerts or dashboard
// read, as manifests/monitoring/metrics.txt lists it (the test in
// manifests/monitoring/check keeps that list equal to what they read).
type monitored struct{ name, typ string }

// monitoredMetrics reads metrics.txt: the metrics each component must
// serve, by component (controller, speaker, ingress).
func monitoredMetrics(t *testing.T) map[string][]monitored {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cfg.Repo, "manifests", "monitoring", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]monitored{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 3 {
			t.Fatalf("metrics.txt: %q", sc.Text())
		}
		out[f[0]] = append(out[f[0]], monitored{f[1], f[2]})
	}
	if len(out) != 3 {
		t.Fatalf("metrics.txt names components %v, want controller, speaker and ingress", out)
	}
	return out
}

// scrape fetches a pod's /metrics as Prometheus would through the
// PodMonitor: from the pod network (here, the pod's node), at the pod's
// address, on the container port named metrics. It returns each metric
// family the scrape has, with its type, and the scrape itself.
// client_golang leaves out a labelled family that has no series yet, so a
// family here has at least one.
func scrape(t *testing.T, pod corev1.Pod) (map[string]string, string, error) {
	t.Helper()
	port := 0
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == "metrics" {
				port = int(p.ContainerPort)
			}
		}
	}
	if port == 0 {
		t.Fatalf("pod %s has no container port named metrics, which the PodMonitor scrapes", pod.Name)
	}
	url := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port)) + "/metrics"
	out, code := labExec(t, pod.Spec.NodeName, "curl", "-sS", "-m", "5", url)
	if code != 0 {
		return nil, "", fmt.Errorf("curl %s from %s: exit %d: %s", url, pod.Spec.NodeName, code, out)
	}
	families := map[string]string{}
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = f[3]
		}
	}
	if len(families) == 0 {
		return nil, "", fmt.Errorf("%s has no metric: %.300q", url, out)
	}
	return families, out, nil
}

// TestMonitoringMetricsScraped: every metric an alert or a dashboard panel
// of manifests/monitoring reads is served, with the type the list says,
// by the component that owns it, once the cluster does what makes each
// labelled series appear: a pool with a LoadBalancer Service announced in
// layer 2 and over BGP, an allocation that fails, and HTTP and HTTPS
// traffic through the ingress. Each component's pods are scraped as the
// PodMonitors scrape them; a controller replica that does not hold the
// Lease may serve fewer series, so a component passes when its pods
// together serve every metric.
func TestMonitoringMetricsScraped(t *testing.T) {
	want := monitoredMetrics(t)

	// Traffic through the ingress: routed requests (2xx), an unrouted one
	// (404), and a TLS handshake that fails (plain HTTP to the HTTPS port).
	f, req, _, _ := echoThroughIngress(t)
	for _, r := range sendMany(t, f.addr, req, 5) {
		if r.err != nil || r.status != 200 {
			t.Fatalf("request through the ingress: %d %v", r.status, r.err)
		}
	}
	send(t, f.addr, request{host: "nothing-routes-here.example.com"})
	send(t, f.addr, request{https: true, host: "echo.example.com"})
	labExec(t, "client", "curl", "-sS", "-m", "3", "http://"+f.addr+":443/")

	// BGP sessions with the lab router, and a LoadBalancer Service that
	// the speakers announce in layer 2 (the lab's L2Advertisement) and to
	// the router (BGP updates).
	peerWithRouter(t, false)
	apply(t, f.ns, fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {name: monitored}
spec:
  type: LoadBalancer
  selector: {app: %s}
  ports: [{port: 80, targetPort: 3000}]
---
apiVersion: v1
kind: Service
metadata:
  name: unallocatable
  annotations: {portico.dev/address-pool: no-such-pool}
spec:
  type: LoadBalancer
  selector: {app: %[1]s}
  ports: [{port: 80, targetPort: 3000}]
`, f.deployment["echo"]))
	ip := lbIPs(t, f.ns, "monitored")[0]
	eventually(t, 30*time.Second, "a route to "+ip+" at the router", func() error {
		if hops := routerNextHops(t, ip); len(hops) == 0 {
			return fmt.Errorf("no BGP route to %s", ip)
		}
		return nil
	})
	eventually(t, 30*time.Second, "AllocationFailed for unallocatable", func() error {
		out := kubectl(t, "", "get", "events", "-n", f.ns, "--field-selector", "reason=AllocationFailed,involvedObject.name=unallocatable", "-o", "name")
		if strings.TrimSpace(out) == "" {
			return fmt.Errorf("no AllocationFailed Event")
		}
		return nil
	})

	for _, component := range []string{"controller", "speaker", "ingress"} {
		t.Run(component, func(t *testing.T) {
			l, err := cs.CoreV1().Pods("portico-system").List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=portico-" + component})
			if err != nil {
				t.Fatal(err)
			}
			var pods []corev1.Pod
			for _, p := range l.Items {
				if p.DeletionTimestamp == nil && podReady(&p) {
					pods = append(pods, p)
				}
			}
			if len(pods) == 0 {
				t.Fatalf("no ready portico-%s pod", component)
			}
			// Counters move as the components catch up with the cluster:
			// scrape until every metric is there.
			eventually(t, 60*time.Second, "portico-"+component+" serves every monitored metric", func() error {
				served, all := map[string]string{}, ""
				for _, p := range pods {
					families, out, err := scrape(t, p)
					if err != nil {
						return err
					}
					for name, typ := range families {
						served[name] = typ
					}
					all += out
				}
				var missing []string
				for _, m := range want[component] {
					switch typ, ok := served[m.name]; {
					case !ok:
						missing = append(missing, m.name)
					case typ != m.typ:
						missing = append(missing, fmt.Sprintf("%s (a %s, not a %s)", m.name, typ, m.typ))
					}
				}
				if len(missing) > 0 {
					slices.Sort(missing)
					return fmt.Errorf("missing from the scrapes of %d pods: %s", len(pods), strings.Join(missing, ", "))
				}
				// The 5xx alert and the dashboard select status classes
				// and the Ingress's namespace.
				if component == "ingress" && !routedRequest(all, f.ns) {
					return fmt.Errorf(`no portico_ingress_requests_total series with namespace=%q, ingress="echo", status="2xx", method="GET"`, f.ns)
				}
				return nil
			})
		})
	}
}

// routedRequest says whether a scrape counts the echo Ingress's requests
// with the labels the alert and the dashboard select on.
func routedRequest(scrape, ns string) bool {
	for line := range strings.Lines(scrape) {
		if !strings.HasPrefix(line, "portico_ingress_requests_total{") {
			continue
		}
		if strings.Contains(line, `namespace="`+ns+`"`) && strings.Contains(line, `ingress="echo"`) &&
			strings.Contains(line, `status="2xx"`) && strings.Contains(line, `method="GET"`) {
			return true
		}
	}
	return false
}
