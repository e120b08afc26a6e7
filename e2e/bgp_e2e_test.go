//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/e2e/lab"
)

const speakerASN = 64513

// peerRouterWithNodes configures the lab router's FRR to peer with every
// node, as a network team would, and undoes it when the test ends.
func peerRouterWithNodes(t *testing.T) []string {
	t.Helper()
	plan, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	args := []string{"vtysh", "-c", "configure terminal", "-c", fmt.Sprintf("router bgp %d", lab.RouterASN)}
	undo := slices.Clone(args)
	for _, n := range plan.Nodes {
		nodes = append(nodes, n.V4.String())
		args = append(args, "-c", fmt.Sprintf("neighbor %s remote-as %d", n.V4, speakerASN), "-c", fmt.Sprintf("neighbor %s timers connect 1", n.V4))
		undo = append(undo, "-c", fmt.Sprintf("no neighbor %s", n.V4))
	}
	args = append(args, "-c", "address-family ipv4 unicast")
	for _, n := range nodes {
		args = append(args, "-c", "neighbor "+n+" activate")
	}
	if out, code := labExec(t, "router", args...); code != 0 {
		t.Fatalf("configuring the router: %s", out)
	}
	t.Cleanup(func() { labExec(t, "router", undo...) })
	return nodes
}

// routerNextHops reads the router's kernel route for ip (a /32 learned by
// BGP) and returns its next hops.
func routerNextHops(t *testing.T, ip string) []string {
	t.Helper()
	out, _ := labExec(t, "router", "ip", "-4", "route", "show", ip+"/32", "proto", "bgp")
	var hops []string
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "via" {
			hops = append(hops, f[i+1])
		}
	}
	slices.Sort(hops)
	return hops
}

// TestBGPFromOutside: the lab router peers with every node; a LoadBalancer
// Service's address is reached from `outside` (which has no route but the
// router) and the router holds an ECMP route through every node; with
// externalTrafficPolicy Local the next hops narrow to the node with the pod.
func TestBGPFromOutside(t *testing.T) {
	installPortico(t)
	nodes := peerRouterWithNodes(t)
	kubectl(t, fmt.Sprintf(`apiVersion: portico.dev/v1alpha1
kind: BGPPeer
metadata: {name: lab-router}
spec:
  myASN: %d
  peerASN: %d
  peerAddress: 172.31.0.1
  holdTime: 9s
  keepaliveTime: 3s
---
apiVersion: portico.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: lab}
spec: {}
`, speakerASN, lab.RouterASN), "apply", "-f", "-")
	t.Cleanup(func() {
		kubectl(t, "", "delete", "bgppeer/lab-router", "bgpadvertisement/lab", "--ignore-not-found")
	})
	eventually(t, 60*time.Second, "sessions with every node", func() error {
		out, _ := labExec(t, "router", "vtysh", "-c", "show bgp ipv4 unicast summary")
		for _, n := range nodes {
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, n+" ") && (strings.Contains(line, "Active") || strings.Contains(line, "Connect") || strings.Contains(line, "Idle")) {
					return fmt.Errorf("%s not established:\n%s", n, out)
				}
			}
			if !strings.Contains(out, n) {
				return fmt.Errorf("no session with %s:\n%s", n, out)
			}
		}
		return nil
	})

	ns := namespace(t)
	apply(t, ns, echoDeployment)
	want := names(readyPods(t, ns, "app=echo", 3))
	apply(t, ns, `
apiVersion: v1
kind: Service
metadata: {name: echo-bgp}
spec:
  type: LoadBalancer
  selector: {app: echo}
  ports: [{port: 80, targetPort: http}]
`)
	ip := lbIPs(t, ns, "echo-bgp")[0]
	eventually(t, 30*time.Second, "an ECMP route through every node", func() error {
		if hops := routerNextHops(t, ip); !slices.Equal(hops, nodes) {
			return fmt.Errorf("next hops %v, want %v", hops, nodes)
		}
		return nil
	})
	eventually(t, 20*time.Second, "curl from outside", func() error {
		out, code := labExec(t, "outside", "curl", "-sS", "-m", "3", "http://"+ip+"/")
		if code != 0 {
			return fmt.Errorf("curl: %s", out)
		}
		for pod := range want {
			if strings.Contains(out, pod) {
				return nil
			}
		}
		return fmt.Errorf("answer from no echo pod: %s", out)
	})

	// Local: only the node with the one remaining pod advertises.
	kubectl(t, "", "scale", "-n", ns, "deployment/echo", "--replicas=1")
	pods := readyPods(t, ns, "app=echo", 1)
	kubectl(t, "", "patch", "-n", ns, "service/echo-bgp", "-p", `{"spec":{"externalTrafficPolicy":"Local"}}`)
	node, err := cs.CoreV1().Nodes().Get(context.Background(), pods[0].Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nodeIP string
	for _, a := range node.Status.Addresses {
		if a.Type == "InternalIP" && !strings.Contains(a.Address, ":") {
			nodeIP = a.Address
		}
	}
	eventually(t, 30*time.Second, "next hops narrowed to the pod's node", func() error {
		if hops := routerNextHops(t, ip); !slices.Equal(hops, []string{nodeIP}) {
			return fmt.Errorf("next hops %v, want [%s] (%s)", hops, nodeIP, node.Name)
		}
		return nil
	})
	eventually(t, 20*time.Second, "curl from outside under Local", func() error {
		out, code := labExec(t, "outside", "curl", "-sS", "-m", "3", "http://"+ip+"/")
		if code != 0 || !strings.Contains(out, pods[0].Name) {
			return fmt.Errorf("curl: exit %d: %s", code, out)
		}
		return nil
	})
}
