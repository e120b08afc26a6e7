//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const echoLoadBalancer = `
apiVersion: v1
kind: Service
metadata: {name: echo-lb}
spec:
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: echo}
  ports: [{port: 80, targetPort: http}]
`

// announcedBy waits for the speaker's Announced Event for ip and returns
// the node it names.
func announcedBy(t *testing.T, ns, ip string) string {
	t.Helper()
	re := regexp.MustCompile(`^announcing ` + regexp.QuoteMeta(ip) + ` by layer2 from node (\S+) via `)
	var node string
	eventually(t, 30*time.Second, "Announced event for "+ip, func() error {
		evs, err := cs.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "reason=Announced"})
		if err != nil {
			return err
		}
		var notes []string
		var newest time.Time
		for _, e := range evs.Items {
			notes = append(notes, e.Note)
			// Speakers post core/v1 Events: when one repeats, its
			// lastTimestamp moves.
			at := e.EventTime.Time
			if e.Series != nil && e.Series.LastObservedTime.After(at) {
				at = e.Series.LastObservedTime.Time
			}
			if e.DeprecatedLastTimestamp.After(at) {
				at = e.DeprecatedLastTimestamp.Time
			}
			if m := re.FindStringSubmatch(e.Note); m != nil && !at.Before(newest) {
				node, newest = m[1], at
			}
		}
		if node == "" {
			return fmt.Errorf("events: %q", notes)
		}
		return nil
	})
	return node
}

// macOf is the MAC of a lab host's LAN interface.
func macOf(t *testing.T, host string) string {
	t.Helper()
	out, code := labExec(t, host, "cat", "/sys/class/net/eth0/address")
	if code != 0 {
		t.Fatalf("MAC of %s: %s", host, out)
	}
	return strings.ToLower(strings.TrimSpace(out))
}

var arpReply = regexp.MustCompile(`reply from \S+ \[([0-9A-Fa-f:]+)\]`)

// arpingMACs asks for ip from the client and returns the MACs that answered.
func arpingMACs(t *testing.T, ip string, count int) map[string]bool {
	t.Helper()
	out, _ := labExec(t, "client", "arping", "-c", fmt.Sprint(count), "-w", fmt.Sprint(count+1), "-I", "eth0", ip)
	macs := map[string]bool{}
	for _, m := range arpReply.FindAllStringSubmatch(out, -1) {
		macs[strings.ToLower(m[1])] = true
	}
	return macs
}

var naTarget = regexp.MustCompile(`Target link-layer address: ([0-9A-Fa-f:]+)`)

// ndiscMAC asks for ip by neighbour solicitation from the client.
func ndiscMAC(t *testing.T, ip string) (string, error) {
	out, code := labExec(t, "client", "ndisc6", "-1", "-r", "3", "-w", "500", ip, "eth0")
	m := naTarget.FindStringSubmatch(out)
	if code != 0 || m == nil {
		return "", fmt.Errorf("ndisc6 %s: exit %d: %s", ip, code, out)
	}
	return strings.ToLower(m[1]), nil
}

// TestLoadBalancerAnswers: a dual-stack LoadBalancer Service gets an IPv4
// and an IPv6 address; from the client, arping gets replies from exactly
// one MAC, that of the node the speaker's Event names, ndisc6 likewise for
// IPv6, and curl reaches the echo pods over both.
func TestLoadBalancerAnswers(t *testing.T) {
	installPortico(t)
	ns := namespace(t)
	apply(t, ns, echoDeployment)
	want := names(readyPods(t, ns, "app=echo", 3))
	apply(t, ns, echoLoadBalancer)
	ips := lbIPs(t, ns, "echo-lb")
	if len(ips) != 2 {
		t.Fatalf("PreferDualStack Service got %v, want an IPv4 and an IPv6 address", ips)
	}
	v4, v6 := ips[0], ips[1]

	owner := announcedBy(t, ns, v4)
	ownerMAC := macOf(t, owner)
	eventually(t, 10*time.Second, "ARP replies for "+v4, func() error {
		macs := arpingMACs(t, v4, 3)
		if len(macs) != 1 || !macs[ownerMAC] {
			return fmt.Errorf("replies from %v, want only %s (%s)", macs, ownerMAC, owner)
		}
		return nil
	})
	owner6 := announcedBy(t, ns, v6)
	eventually(t, 10*time.Second, "NA for "+v6, func() error {
		mac, err := ndiscMAC(t, v6)
		if err == nil && mac != macOf(t, owner6) {
			err = fmt.Errorf("answered by %s, want %s's", mac, owner6)
		}
		return err
	})
	for _, ip := range ips {
		url := "http://" + net.JoinHostPort(ip, "80") + "/"
		eventually(t, 20*time.Second, "GET "+url, func() error {
			pod, err := curlPod(t, url)
			if err == nil && !want[pod] {
				err = fmt.Errorf("answered by %q, not an echo pod", pod)
			}
			return err
		})
	}
}

// TestLayer2FailoverLinkCut: the owner node's LAN link goes down; another
// node takes the address over and curl works again; when the link comes
// back, still exactly one node answers.
func TestLayer2FailoverLinkCut(t *testing.T) {
	installPortico(t)
	ns := namespace(t)
	apply(t, ns, echoDeployment)
	readyPods(t, ns, "app=echo", 3)
	apply(t, ns, echoLoadBalancer)
	v4 := lbIPs(t, ns, "echo-lb")[0]
	owner := announcedBy(t, ns, v4)
	ownerMAC := macOf(t, owner)
	eventually(t, 10*time.Second, "first ARP reply", func() error {
		if macs := arpingMACs(t, v4, 1); !macs[ownerMAC] {
			return fmt.Errorf("replies from %v, want %s", macs, ownerMAC)
		}
		return nil
	})

	// Cut the cable at the switch: the bridge port of the owner's veth
	// goes down, the node keeps its addresses and routes as a real node
	// whose cable is pulled would.
	plan, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	port := func(state string) {
		t.Helper()
		if out, code := runIn(plan.Prefix+"lan", "ip", "link", "set", "v-"+owner, state); code != 0 {
			t.Fatalf("setting %s's switch port %s: %s", owner, state, out)
		}
	}
	port("down")
	restored := false
	restore := func() {
		if !restored {
			restored = true
			port("up")
		}
	}
	t.Cleanup(restore)
	cut := time.Now()
	var newMAC string
	eventually(t, 15*time.Second, "another node answering ARP", func() error {
		macs := arpingMACs(t, v4, 1)
		for m := range macs {
			if m != ownerMAC {
				newMAC = m
				return nil
			}
		}
		return fmt.Errorf("replies from %v", macs)
	})
	t.Logf("another node (%s) answered %s after %s (includes arping's own wait)", newMAC, v4, time.Since(cut).Round(10*time.Millisecond))
	eventually(t, 30*time.Second, "curl after failover", func() error {
		_, err := curlPod(t, "http://"+v4+"/")
		return err
	})

	restore()
	eventually(t, 30*time.Second, "one node answering after the link is back", func() error {
		macs := arpingMACs(t, v4, 3)
		if len(macs) != 1 {
			return fmt.Errorf("replies from %v", macs)
		}
		return nil
	})
}

// runIn runs a command in a network namespace of the lab that is not a
// host (the LAN switch) and returns its output and exit code.
func runIn(netns string, argv ...string) (string, int) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", netns}, argv...)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		return err.Error(), -1
	}
	return string(out), 0
}
