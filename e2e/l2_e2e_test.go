//go:build e2e

package e2e

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portico-lb/portico/e2e/lab"
)

// lbService deploys echo pods (optionally pinned to a node) and a
// LoadBalancer Service for them, and returns the namespace and IPv4 address.
func lbService(t *testing.T, replicas int, onNode string, local bool) (string, string) {
	t.Helper()
	installPortico(t)
	ns := namespace(t)
	dep := strings.Replace(echoDeployment, "replicas: 3", "replicas: "+strconv.Itoa(replicas), 1)
	if onNode != "" {
		dep = strings.Replace(dep, "      containers:", "      nodeSelector: {kubernetes.io/hostname: "+onNode+"}\n      containers:", 1)
	}
	apply(t, ns, dep)
	readyPods(t, ns, "app=echo", replicas)
	svc := echoLoadBalancer
	if local {
		svc += "  externalTrafficPolicy: Local\n"
	}
	apply(t, ns, svc)
	return ns, lbIPs(t, ns, "echo-lb")[0]
}

// answeredBy waits until arping gets replies from exactly one MAC, that of
// want, and curl works.
func answeredBy(t *testing.T, ip, want string) {
	t.Helper()
	mac := macOf(t, want)
	eventually(t, 20*time.Second, ip+" answered by "+want, func() error {
		if macs := arpingMACs(t, ip, 2); len(macs) != 1 || !macs[mac] {
			return fmt.Errorf("replies from %v, want only %s (%s)", macs, mac, want)
		}
		return nil
	})
	eventually(t, 20*time.Second, "curl "+ip, func() error {
		_, err := curlPod(t, "http://"+ip+"/")
		return err
	})
}

// answeredByOtherThan waits until exactly one node other than old answers,
// and curl works, and returns that node.
func answeredByOtherThan(t *testing.T, ip, old string) string {
	t.Helper()
	owner := answeringNode(t, ip, old)
	eventually(t, 20*time.Second, "curl "+ip, func() error {
		_, err := curlPod(t, "http://"+ip+"/")
		return err
	})
	return owner
}

// answeringNode waits until exactly one node, other than old when that is
// set, answers ARP for ip, and returns it.
func answeringNode(t *testing.T, ip, old string) string {
	t.Helper()
	plan, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	macs := map[string]string{}
	for _, n := range plan.Nodes {
		macs[macOf(t, n.Name)] = n.Name
	}
	var owner string
	eventually(t, 20*time.Second, "one node other than "+cmp.Or(old, "none")+" answering "+ip, func() error {
		got := arpingMACs(t, ip, 2)
		if len(got) != 1 {
			return fmt.Errorf("replies from %v", got)
		}
		for m := range got {
			owner = macs[m]
		}
		if owner == "" || owner == old {
			return fmt.Errorf("answered by %q", owner)
		}
		return nil
	})
	return owner
}

// findSpeaker finds the process of the speaker running on a node.
func findSpeaker(node string) (int, bool) {
	return findProcess("speaker", "NODE_NAME="+node)
}

// findProcess finds a container's process: the node agent runs containers
// as processes of bin/<binary>; env ("NAME=value") tells them apart, e.g.
// HOSTNAME=<pod name>.
func findProcess(binary, env string) (int, bool) {
	want := filepath.Join(cfg.Repo, "bin", binary)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		exe, err := os.Readlink(p + "/exe")
		if err != nil || exe != want {
			continue
		}
		environ, err := os.ReadFile(p + "/environ")
		if err != nil || !bytes.Contains(append([]byte{0}, environ...), []byte("\x00"+env+"\x00")) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(p))
		return pid, err == nil
	}
	return 0, false
}

func speakerPID(t *testing.T, n string) int {
	t.Helper()
	var pid int
	eventually(t, 30*time.Second, "the speaker of "+n, func() error {
		var ok bool
		if pid, ok = findSpeaker(n); !ok {
			return fmt.Errorf("no speaker process with NODE_NAME=%s", n)
		}
		return nil
	})
	return pid
}

// TestL2SpeakerKilled: the owner's speaker is SIGKILLed (no goodbye), then
// SIGTERMed (it leaves memberlist on its way out); each time another node
// answers for the address and curl reaches the pods.
//
// The node agent restarts the speaker within seconds, and the restarted
// speaker rightly takes its address back, so the window in which another
// node answers is short: the client probes by ARP every 10 ms. arping would
// not do: after a probe nobody answers it waits a whole second, and it
// ignores gratuitous replies, so the takeover can fall between two probes.
func TestL2SpeakerKilled(t *testing.T) {
	ns, ip := lbService(t, 3, "", false)
	plan, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	nodes, nodeOf := nodeMACs(t, plan)
	p := startProber(t, plan, ip)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		// Start each round from a settled cluster: a restarted speaker is
		// Ready before gossip has brought it back into every member list.
		ownerMAC := settle(t, p, "", plan, nodes)
		owner := nodeOf[ownerMAC]
		if owner == "" {
			t.Fatalf("%s answered by %s, which is no node's MAC", ip, ownerMAC)
		}
		// Later rounds follow Events of several owners within the same
		// second, which their timestamps cannot order.
		if by := announcedBy(t, ns, ip); sig == syscall.SIGKILL && by != owner {
			t.Fatalf("%s answers from %s but the Announced Event names %s", ip, owner, by)
		}
		at := time.Now()
		if err := syscall.Kill(speakerPID(t, owner), sig); err != nil {
			t.Fatal(err)
		}
		if sig == syscall.SIGKILL {
			// The node agent restarts a killed container after a second,
			// about when memberlist declares a dead member; keep it dead
			// for 4 s, as a crash-looping speaker would be.
			for time.Since(at) < 4*time.Second {
				if pid, ok := findSpeaker(owner); ok {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		took := failedOver(t, p, at, ownerMAC, nodeOf)
		t.Logf("%s: another node answered for %s %v after %s's speaker got it", sig, ip, took.Round(time.Millisecond), owner)
		eventually(t, 20*time.Second, "curl "+ip, func() error {
			_, err := curlPod(t, "http://"+ip+"/")
			return err
		})
		// The stopped speaker restarts; wait for it before going on.
		readyPods(t, "portico-system", "app.kubernetes.io/name=portico-speaker", len(nodes))
	}
}

// TestL2LocalFollowsPods: with externalTrafficPolicy Local the owner is the
// node with the ready endpoint, and moves when the pod moves.
func TestL2LocalFollowsPods(t *testing.T) {
	ns, ip := lbService(t, 1, "node-2", true)
	answeredBy(t, ip, "node-2")
	kubectl(t, "", "patch", "-n", ns, "deployment/echo", "-p", `{"spec":{"template":{"spec":{"nodeSelector":{"kubernetes.io/hostname":"node-3"}}}}}`)
	eventually(t, 60*time.Second, "the pod on node-3", func() error {
		pods := readyPods(t, ns, "app=echo", 1)
		if len(pods) != 1 || pods[0].Spec.NodeName != "node-3" {
			return fmt.Errorf("pods %v", names(pods))
		}
		return nil
	})
	answeredBy(t, ip, "node-3")
}

// TestL2NodeSelection: the exclusion label and an L2Advertisement's node
// selector decide which nodes may own an address.
func TestL2NodeSelection(t *testing.T) {
	ns, ip := lbService(t, 3, "", false)
	owner := announcedBy(t, ns, ip)
	answeredBy(t, ip, owner)

	const exclude = "node.kubernetes.io/exclude-from-external-load-balancers"
	kubectl(t, "", "label", "node", owner, exclude+"=true")
	t.Cleanup(func() { kubectl(t, "", "label", "node", owner, exclude+"-") })
	answeredByOtherThan(t, ip, owner)
	kubectl(t, "", "label", "node", owner, exclude+"-")

	// Only node-1 may announce, whoever ranked first before.
	kubectl(t, "", "patch", "l2advertisement", "lab", "--type=merge", "-p", `{"spec":{"nodeSelectors":[{"matchLabels":{"kubernetes.io/hostname":"node-1"}}]}}`)
	t.Cleanup(func() {
		kubectl(t, "", "patch", "l2advertisement", "lab", "--type=json", "-p", `[{"op":"remove","path":"/spec/nodeSelectors"}]`)
	})
	answeredBy(t, ip, "node-1")
	kubectl(t, "", "patch", "l2advertisement", "lab", "--type=merge", "-p", `{"spec":{"nodeSelectors":[{"matchLabels":{"kubernetes.io/hostname":"node-3"}}]}}`)
	answeredBy(t, ip, "node-3")
}

// TestL2WithoutAPIServer: with the API server stopped, traffic still flows
// and a cut owner's address still moves (speakers act on what they last
// knew and on memberlist, not on the API).
func TestL2WithoutAPIServer(t *testing.T) {
	ns, ip := lbService(t, 3, "", false)
	owner := announcedBy(t, ns, ip)
	answeredBy(t, ip, owner)

	if err := lab.Stop(cfg, "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	started := false
	start := func() {
		if !started {
			started = true
			if err := lab.Start(cfg, "kube-apiserver"); err != nil {
				t.Errorf("starting the API server again: %v", err)
			}
		}
	}
	t.Cleanup(start)
	if out, code := labExec(t, "client", "curl", "-sS", "-m", "3", "http://"+ip+"/"); code != 0 {
		t.Fatalf("curl with the API server stopped: %s", out)
	}
	plan, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	port := func(state string) {
		if out, code := runIn(plan.Prefix+"lan", "ip", "link", "set", "v-"+owner, state); code != 0 {
			t.Fatalf("switch port of %s %s: %s", owner, state, out)
		}
	}
	port("down")
	t.Cleanup(func() { port("up") })
	next := answeredByOtherThan(t, ip, owner)
	t.Logf("without the API server, %s took %s over from %s", next, ip, owner)
	port("up")
	start()
	eventually(t, 60*time.Second, "the API server back", func() error {
		_, err := cs.Discovery().ServerVersion()
		return err
	})
	// Leave the cluster working for the next test: the controller manager
	// has re-established its watches once a new namespace gets its
	// default ServiceAccount.
	namespace(t)
}
