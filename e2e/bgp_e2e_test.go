//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
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
	undo := []string{"vtysh", "-c", "configure terminal", "-c", fmt.Sprintf("router bgp %d", lab.RouterASN)}
	for _, n := range plan.Nodes {
		nodes = append(nodes, n.V4.String())
		undo = append(undo, "-c", fmt.Sprintf("no neighbor %s", n.V4))
	}
	configureRouter(t, nodes)
	t.Cleanup(func() { labExec(t, "router", undo...) })
	return nodes
}

// configureRouter adds every node as a neighbour of the router (also after
// bgpd restarted from its file, which does not hold them).
func configureRouter(t *testing.T, nodes []string) {
	t.Helper()
	args := []string{"vtysh", "-c", "configure terminal", "-c", fmt.Sprintf("router bgp %d", lab.RouterASN)}
	for _, n := range nodes {
		args = append(args, "-c", fmt.Sprintf("neighbor %s remote-as %d", n, speakerASN), "-c", fmt.Sprintf("neighbor %s timers connect 1", n))
	}
	args = append(args, "-c", "address-family ipv4 unicast")
	for _, n := range nodes {
		args = append(args, "-c", "neighbor "+n+" activate")
	}
	eventually(t, 20*time.Second, "configuring the restarted router", func() error {
		if out, code := labExec(t, "router", args...); code != 0 {
			return fmt.Errorf("vtysh: %s", out)
		}
		return nil
	})
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
	nodes := peerWithRouter(t, false)
	ns := namespace(t)
	apply(t, ns, echoDeployment)
	want := names(readyPods(t, ns, "app=echo", 3))
	ip := bgpService(t, ns, nodes, want)

	// porticoctl: every node announcing (status, from the speakers'
	// ServiceAnnouncements), every node's session up (explain, from the
	// BGPPeer's status).
	porticoctl := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(cfg.Repo, "bin", "porticoctl"), append([]string{"--kubeconfig", cfg.Dirs().Kubeconfig()}, args...)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("porticoctl %v: %v: %s", args, err, out)
		}
		return string(out), nil
	}
	eventually(t, 30*time.Second, "porticoctl status and explain", func() error {
		out, err := porticoctl("status", "-n", ns)
		if err != nil {
			return err
		}
		m := regexp.MustCompile(`(?m)^` + ns + `\s+echo-bgp\s+` + regexp.QuoteMeta(ip) + `\s+lab\s+bgp\s+(\S+)`).FindStringSubmatch(out)
		if m == nil {
			return fmt.Errorf("%s not shown announced by BGP:\n%s", ip, out)
		}
		if ex, err := porticoctl("explain", "service", "-n", ns, "echo-bgp"); err != nil {
			return err
		} else {
			for _, n := range []string{"node-1", "node-2", "node-3"} {
				if !strings.Contains(","+m[1]+",", ","+n+",") {
					return fmt.Errorf("%s not shown announcing %s:\n%s", n, ip, out)
				}
				if !regexp.MustCompile(`lab-router \(172\.31\.0\.1\): .*` + n + ` Established`).MatchString(ex) {
					return fmt.Errorf("no established session from %s:\n%s", n, ex)
				}
			}
		}
		return nil
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

	// The pod moves to another node; the route follows it.
	plan, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	var other, otherIP string
	for _, n := range plan.Nodes {
		if n.Name != node.Name {
			other, otherIP = n.Name, n.V4.String()
			break
		}
	}
	kubectl(t, "", "patch", "-n", ns, "deployment/echo", "-p", `{"spec":{"template":{"spec":{"nodeSelector":{"kubernetes.io/hostname":"`+other+`"}}}}}`)
	eventually(t, 60*time.Second, "next hop following the pod to "+other, func() error {
		if hops := routerNextHops(t, ip); !slices.Equal(hops, []string{otherIP}) {
			return fmt.Errorf("next hops %v, want [%s]", hops, otherIP)
		}
		return nil
	})
	eventually(t, 20*time.Second, "curl from outside after the move", func() error {
		_, code := labExec(t, "outside", "curl", "-sS", "-m", "3", "http://"+ip+"/")
		if code != 0 {
			return fmt.Errorf("curl: exit %d", code)
		}
		return nil
	})
}

// TestBGPRestarts: the router's bgpd restarts and the routes come back;
// a speaker dies with graceful restart on and the router keeps its routes
// (stale) while curl from outside keeps working throughout.
func TestBGPRestarts(t *testing.T) {
	installPortico(t)
	nodes := peerWithRouter(t, true)
	ns := namespace(t)
	apply(t, ns, echoDeployment)
	want := names(readyPods(t, ns, "app=echo", 3))
	ip := bgpService(t, ns, nodes, want)

	// bgpd restarts (with its configuration, as a router reloads it).
	if err := lab.Stop(cfg, "router.bgpd"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Start(cfg, "router.bgpd"); err != nil {
		t.Fatal(err)
	}
	configureRouter(t, nodes)
	eventually(t, 60*time.Second, "routes back after bgpd restarted", func() error {
		if hops := routerNextHops(t, ip); !slices.Equal(hops, nodes) {
			return fmt.Errorf("next hops %v, want %v", hops, nodes)
		}
		return nil
	})

	// A speaker dies and stays down for 6 s (the node agent would restart
	// it within a second): with graceful restart the router keeps the
	// node's route, marked stale, and traffic through it keeps flowing.
	victim := "node-1"
	stop := make(chan struct{})
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if p, ok := findSpeaker(victim); ok {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(6 * time.Second)
	requests, stale := 0, false
	for time.Now().Before(deadline) {
		if hops := routerNextHops(t, ip); !slices.Equal(hops, nodes) {
			close(stop)
			t.Fatalf("while %s's speaker is down the router's next hops are %v, want %v kept", victim, hops, nodes)
		}
		out, _ := labExec(t, "router", "vtysh", "-c", "show bgp ipv4 unicast "+ip+"/32")
		stale = stale || strings.Contains(out, "stale") || strings.Contains(out, "Stale")
		if out, code := labExec(t, "outside", "curl", "-sS", "-m", "2", "http://"+ip+"/"); code != 0 {
			close(stop)
			t.Fatalf("curl from outside failed while %s's speaker was down: %s", victim, out)
		}
		requests++
	}
	close(stop)
	<-killed
	if !stale {
		t.Errorf("the router never marked %s's path stale: was graceful restart negotiated?", victim)
	}
	t.Logf("%d requests from outside succeeded while %s's speaker was down", requests, victim)
	readyPods(t, "portico-system", "app.kubernetes.io/name=portico-speaker", 3)

	// A graceful stop, as in a rollout: SIGTERM. The speaker withdraws its
	// layer 2 announcements but leaves its BGP sessions to graceful
	// restart, so the router keeps node-2's path while it restarts.
	if err := syscall.Kill(speakerPID(t, "node-2"), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if hops := routerNextHops(t, ip); !slices.Equal(hops, nodes) {
			t.Fatalf("after node-2's speaker was stopped gracefully the next hops are %v, want %v kept", hops, nodes)
		}
		if out, code := labExec(t, "outside", "curl", "-sS", "-m", "2", "http://"+ip+"/"); code != 0 {
			t.Fatalf("curl from outside failed while node-2's speaker restarted: %s", out)
		}
	}
	readyPods(t, "portico-system", "app.kubernetes.io/name=portico-speaker", 3)
	eventually(t, 60*time.Second, "routes refreshed by the restarted speaker", func() error {
		out, _ := labExec(t, "router", "vtysh", "-c", "show bgp ipv4 unicast "+ip+"/32")
		if strings.Contains(strings.ToLower(out), "stale") {
			return fmt.Errorf("still stale:\n%s", out)
		}
		if hops := routerNextHops(t, ip); !slices.Equal(hops, nodes) {
			return fmt.Errorf("next hops %v", hops)
		}
		return nil
	})
}

// peerWithRouter configures the router and a BGPPeer and BGPAdvertisement
// for it, and waits for a session with every node.
func peerWithRouter(t *testing.T, gracefulRestart bool) []string {
	t.Helper()
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
  gracefulRestart: %v
---
apiVersion: portico.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: lab}
spec: {}
`, speakerASN, lab.RouterASN, gracefulRestart), "apply", "-f", "-")
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
	return nodes
}

// bgpService creates a LoadBalancer Service for the echo pods and waits
// for an ECMP route through every node and an answer from outside.
func bgpService(t *testing.T, ns string, nodes []string, want map[string]bool) string {
	t.Helper()
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
	return ip
}

// TestBGPReadmeExample runs the README's BGP block for the lab as written:
// the YAML it applies, then each `bin/lab exec` line with the Service's
// address for <EXTERNAL-IP>. The test does not configure the router: it
// takes the nodes' sessions as dynamic neighbours.
func TestBGPReadmeExample(t *testing.T) {
	_, ip := lbService(t, 3, "", false)
	yaml, cmds := readmeBlock(t, "<!-- lab-bgp:")
	if len(cmds) != 3 {
		t.Fatalf("the README block has %d bin/lab exec lines, want 3: %q", len(cmds), cmds)
	}
	kubectl(t, yaml, "apply", "-f", "-")
	t.Cleanup(func() {
		kubectl(t, "", "delete", "bgppeer/lab-router", "bgpadvertisement/lab", "--ignore-not-found")
	})
	plan, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	run := func(argv []string) (string, error) {
		host, cmd := argv[0], slices.Clone(argv[2:]) // HOST -- CMD...
		for i := range cmd {
			cmd[i] = strings.ReplaceAll(cmd[i], "<EXTERNAL-IP>", ip)
		}
		out, code := labExec(t, host, cmd...)
		if code != 0 {
			return out, fmt.Errorf("%v: exit %d: %s", cmd, code, out)
		}
		return out, nil
	}
	eventually(t, 60*time.Second, "a session from every node", func() error {
		out, err := run(cmds[0])
		if err != nil {
			return err
		}
		for _, n := range plan.Nodes {
			// A dynamic neighbour's line starts with '*'; an established
			// session ends with the count of prefixes received (and
			// sent), where a down one names its state.
			re := regexp.MustCompile(`(?m)^\*?` + regexp.QuoteMeta(n.V4.String()) + `\s.*\s\d+(\s+\d+)?(\s+\S+)?\s*$`)
			line := re.FindString(out)
			if line == "" || regexp.MustCompile(`Active|Connect|Idle|OpenSent|OpenConfirm`).MatchString(line) {
				return fmt.Errorf("no established session from %s:\n%s", n.V4, out)
			}
		}
		return nil
	})
	eventually(t, 30*time.Second, "a route to "+ip+" through every node", func() error {
		out, err := run(cmds[1])
		if err != nil {
			return err
		}
		for _, n := range plan.Nodes {
			// FRR lists each ECMP path as "* NEXT-HOP, via IFACE".
			if !strings.Contains(out, "* "+n.V4.String()+", via ") {
				return fmt.Errorf("no next hop %s:\n%s", n.V4, out)
			}
		}
		return nil
	})
	eventually(t, 20*time.Second, "curl from outside", func() error {
		_, err := run(cmds[2])
		return err
	})
}

// readmeBlock finds the fenced block after the README line starting with
// marker and returns the here-document it feeds to kubectl apply and the
// arguments of each `bin/lab exec` line, comments stripped and a quoted
// argument kept whole.
func readmeBlock(t *testing.T, marker string) (string, [][]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cfg.Repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, text, ok := strings.Cut(string(b), "\n"+marker)
	if !ok {
		t.Fatalf("README.md has no %q", marker)
	}
	_, text, ok = strings.Cut(text, "```sh\n")
	block, _, ok2 := strings.Cut(text, "```")
	if !ok || !ok2 {
		t.Fatalf("README.md has no fenced block after %q", marker)
	}
	_, rest, ok := strings.Cut(block, "<<EOF\n")
	yaml, rest, ok2 := strings.Cut(rest, "\nEOF\n")
	if !ok || !ok2 {
		t.Fatalf("the README block after %q has no here-document", marker)
	}
	var cmds [][]string
	quoted := regexp.MustCompile(`'[^']*'|\S+`)
	for line := range strings.Lines(rest) {
		line, _, _ = strings.Cut(line, "#")
		f := quoted.FindAllString(line, -1)
		if len(f) < 5 || f[0] != "bin/lab" || f[1] != "exec" {
			continue
		}
		for i := range f {
			f[i] = strings.Trim(f[i], "'")
		}
		cmds = append(cmds, f[2:])
	}
	return yaml + "\n", cmds
}
