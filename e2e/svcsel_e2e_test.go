//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBGPServiceSelectors: two Services of one pool, one labelled
// tier=edge. BGPAdvertisement lab applies to every Service with community
// 65000:200; edge, with a serviceSelector (and a namespaceSelector naming
// the test's namespace), adds 65000:100. At the router the labelled
// Service's prefix carries both, the other's only 65000:200; moving the
// label moves the community; porticoctl explain says why edge does not
// apply to the unlabelled one.
func TestBGPServiceSelectors(t *testing.T) {
	installPortico(t)
	nodes := peerWithRouter(t, false)
	ns := namespace(t)
	kubectl(t, `apiVersion: portico.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: lab}
spec:
  communities: ["65000:200"]
---
apiVersion: portico.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: edge}
spec:
  serviceSelectors: [{matchLabels: {tier: edge}}]
  namespaceSelectors: [{matchLabels: {kubernetes.io/metadata.name: `+ns+`}}]
  communities: ["65000:100"]
`, "apply", "-f", "-")
	t.Cleanup(func() { kubectl(t, "", "delete", "bgpadvertisement/edge", "--ignore-not-found") })
	apply(t, ns, echoDeployment)
	readyPods(t, ns, "app=echo", 3)
	apply(t, ns, `
apiVersion: v1
kind: Service
metadata: {name: front, labels: {tier: edge}}
spec:
  type: LoadBalancer
  selector: {app: echo}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: back}
spec:
  type: LoadBalancer
  selector: {app: echo}
  ports: [{port: 80, targetPort: http}]
`)
	front, back := lbIPs(t, ns, "front")[0], lbIPs(t, ns, "back")[0]

	expect := func(what string, want map[string][]string) {
		t.Helper()
		eventually(t, 60*time.Second, what, func() error {
			for ip, communities := range want {
				if hops := routerNextHops(t, ip); !slices.Equal(hops, nodes) {
					return fmt.Errorf("%s: next hops %v, want %v", ip, hops, nodes)
				}
				got, err := routerCommunities(t, ip)
				if err != nil {
					return err
				}
				for i, c := range got {
					if !slices.Equal(c, communities) {
						return fmt.Errorf("%s: path %d has communities %v, want %v (all paths: %v)", ip, i, c, communities, got)
					}
				}
			}
			return nil
		})
	}
	expect("front with edge's community, back without", map[string][]string{
		front: {"65000:100", "65000:200"},
		back:  {"65000:200"},
	})
	// kube-proxy may program the new Service after the route is there.
	eventually(t, 20*time.Second, "curl "+front+" from outside", func() error {
		if out, code := labExec(t, "outside", "curl", "-sS", "-m", "3", "http://"+front+"/"); code != 0 {
			return fmt.Errorf("curl: exit %d: %s", code, out)
		}
		return nil
	})

	out, err := exec.Command(filepath.Join(cfg.Repo, "bin", "porticoctl"), "--kubeconfig", cfg.Dirs().Kubeconfig(), "explain", "service", "-n", ns, "back").CombinedOutput()
	if err != nil {
		t.Fatalf("porticoctl explain: %v: %s", err, out)
	}
	for _, want := range []string{
		"BGPAdvertisement/edge: selects every pool (it has no addressPools and no addressPoolSelectors)\n    does not apply to this Service: none of its serviceSelectors (tier=edge) matches the Service's labels (none)",
		"BGPAdvertisement/lab: selects every pool (it has no addressPools and no addressPoolSelectors)\n    applies to this Service",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}

	// The label moves from front to back, and the community with it.
	kubectl(t, "", "label", "-n", ns, "service/back", "tier=edge")
	kubectl(t, "", "label", "-n", ns, "service/front", "tier-")
	expect("the community following the label", map[string][]string{
		front: {"65000:200"},
		back:  {"65000:100", "65000:200"},
	})
}

// routerCommunities reads the router's BGP paths for ip/32 and returns
// each path's standard communities, sorted.
func routerCommunities(t *testing.T, ip string) ([][]string, error) {
	t.Helper()
	out, code := labExec(t, "router", "vtysh", "-c", "show bgp ipv4 unicast "+ip+"/32 json")
	if code != 0 {
		return nil, fmt.Errorf("vtysh: %s", out)
	}
	var route struct {
		Paths []struct {
			Community *struct {
				String string `json:"string"`
			} `json:"community"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &route); err != nil {
		return nil, fmt.Errorf("vtysh json: %v: %s", err, out)
	}
	if len(route.Paths) == 0 {
		return nil, fmt.Errorf("no path for %s/32", ip)
	}
	var all [][]string
	for _, p := range route.Paths {
		var cs []string
		if p.Community != nil {
			cs = strings.Fields(p.Community.String)
		}
		slices.Sort(cs)
		all = append(all, cs)
	}
	return all, nil
}
