package main

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/e2e/apitest"
)

// TestStatus: who announces what comes from the ServiceAnnouncements, an
// address without one says "not announced" and points to explain, a
// stale announcement (another Service of that name, an address gone) is
// left out, and other classes are not listed.
func TestStatus(t *testing.T) {
	apitest.Require(t)
	ctx := context.Background()
	namespace(t, "status-a", nil)
	namespace(t, "status-b", nil)

	web := lbService("status-a", "web", "status-pool", "198.51.100.10")
	dual := lbService("status-a", "routed", "status-pool", "198.51.100.11")
	quiet := lbService("status-b", "quiet", "status-pool", "198.51.100.12")
	pending := lbService("status-b", "waiting", "")
	other := lbService("status-b", "not-ours", "")
	class := "example.com/other"
	other.Spec.LoadBalancerClass = &class
	create(t, web, dual, quiet, pending, other)
	// Objects read back, for their UIDs.
	for _, s := range []*corev1.Service{web, dual, quiet} {
		if err := api.Client.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
			t.Fatal(err)
		}
	}
	stale := announcement(quiet, "n9", v1alpha1.ProtocolLayer2, []string{"eth0"}, "198.51.100.12")
	stale.OwnerReferences[0].UID = "an-older-service"
	gone := announcement(web, "n8", v1alpha1.ProtocolLayer2, []string{"eth0"}, "198.51.100.99")
	gone.Name = "web-gone"
	create(t,
		announcement(web, "n1", v1alpha1.ProtocolLayer2, []string{"eth0"}, "198.51.100.10"),
		announcement(dual, "n1", v1alpha1.ProtocolBGP, []string{"router"}, "198.51.100.11"),
		announcement(dual, "n2", v1alpha1.ProtocolBGP, []string{"router"}, "198.51.100.11"),
		stale, gone,
	)

	out := mustRun(t, "status", "-A")
	rows := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && strings.HasPrefix(f[0], "status-") {
			rows[f[1]] = strings.Join(f, " ")
		}
	}
	want := map[string]string{
		"web":     "status-a web 198.51.100.10 status-pool layer2 n1",
		"routed":  "status-a routed 198.51.100.11 status-pool bgp n1,n2",
		"quiet":   "status-b quiet 198.51.100.12 status-pool - not announced",
		"waiting": "status-b waiting <pending> - - -",
	}
	for n, w := range want {
		if rows[n] != w {
			t.Errorf("row %s: %q, want %q", n, rows[n], w)
		}
	}
	if _, ok := rows["not-ours"]; ok {
		t.Errorf("a Service of another class is listed")
	}
	if !strings.Contains(out, "198.51.100.12 of status-b/quiet is not announced by any node: see `porticoctl explain service -n status-b quiet`") {
		t.Errorf("no pointer to explain for the unannounced address")
	}

	// -n limits to one namespace; wide adds where.
	out = mustRun(t, "status", "-n", "status-a", "-o", "wide")
	if strings.Contains(out, "status-b") || !strings.Contains(out, "n1:eth0") || !strings.Contains(out, "VIA") {
		t.Errorf("status -n status-a -o wide:\n%s", out)
	}

	for _, format := range []string{"json", "yaml"} {
		var rep StatusReport
		decode(t, format, mustRun(t, "status", "-A", "-o", format), &rep)
		got := map[string]ServiceStatus{}
		for _, s := range rep.Services {
			if strings.HasPrefix(s.Namespace, "status-") {
				got[s.Name] = s
			}
		}
		if len(got) != 4 {
			t.Fatalf("-o %s: %d Services, want 4: %+v", format, len(got), rep)
		}
		if a := got["web"].Addresses; len(a) != 1 || !a[0].Announced || len(a[0].Announcers) != 1 || a[0].Announcers[0].Node != "n1" || a[0].Announcers[0].Interfaces[0] != "eth0" {
			t.Errorf("-o %s web: %+v", format, got["web"])
		}
		if a := got["routed"].Addresses; len(a) != 1 || len(a[0].Announcers) != 2 || a[0].Announcers[1].Peers[0] != "router" {
			t.Errorf("-o %s routed: %+v", format, got["routed"])
		}
		if a := got["quiet"].Addresses; len(a) != 1 || a[0].Announced {
			t.Errorf("-o %s quiet: %+v", format, got["quiet"])
		}
		if !got["waiting"].Pending {
			t.Errorf("-o %s waiting is not pending: %+v", format, got["waiting"])
		}
	}
}

func TestStatusEmptyNamespace(t *testing.T) {
	apitest.Require(t)
	namespace(t, "status-empty", nil)
	out := mustRun(t, "status", "-n", "status-empty")
	if !strings.Contains(out, `No LoadBalancer Service of Portico in namespace "status-empty"`) {
		t.Fatalf("got %q", out)
	}
}
