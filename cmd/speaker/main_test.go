package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/e2e/apitest"
	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/speaker"
)

// TestSpeakerBinary builds cmd/speaker and runs it as the DaemonSet would,
// against a real API server, on a veth whose other end is in a client
// namespace: the client's arping must get the speaker's answer for a
// Service's address, the Service must get an Announced Event, the metrics
// must show it, and SIGTERM must stop it promptly and silence it.
func TestSpeakerBinary(t *testing.T) {
	needRoot(t)
	env, err := apitest.Start()
	apitest.Need(t, err)
	defer env.Stop()
	ctx := context.Background()

	bin := filepath.Join(t.TempDir(), "speaker")
	if out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// The LAN: hostIf here, peerIf in the client namespace.
	id := fmt.Sprint(os.Getpid() % 100000)
	ns, hostIf, peerIf := "portico-sb-"+id, "psb"+id+"a", "psb"+id+"b"
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	sh(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", peerIf, "netns", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() })
	sh(t, "ip", "addr", "add", "198.51.100.1/24", "dev", hostIf)
	sh(t, "ip", "link", "set", hostIf, "up")
	sh(t, "ip", "-n", ns, "addr", "add", "198.51.100.2/24", "dev", peerIf)
	sh(t, "ip", "-n", ns, "link", "set", peerIf, "up")
	hostMAC := mac(t, hostIf)

	// Announce on hostIf only: exclude every other interface of this host.
	var exclude []string
	ifis, _ := net.Interfaces()
	for _, ifi := range ifis {
		if ifi.Name != hostIf {
			exclude = append(exclude, ifi.Name)
		}
	}

	c := env.Client
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "portico-system"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}},
		&v1alpha1.AddressPool{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.AddressPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24"}}},
		&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan"}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", Annotations: map[string]string{lbservice.AnnotationAllocatedFrom: "lan"}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.10"}}
	if err := c.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin,
		"--memberlist-port=17946",
		"--metrics-bind-address=127.0.0.1:17474",
		"--health-probe-bind-address=127.0.0.1:17475",
		"--exclude-interfaces="+strings.Join(exclude, ","),
	)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig, "NODE_NAME=node-a", "POD_IP=127.0.0.1", "POD_NAMESPACE=portico-system")
	logs, err := os.Create(filepath.Join(t.TempDir(), "speaker.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("speaker's log:\n%s", b)
		}
	}()

	wait(t, "arping to get the speaker's answer", func() (bool, string) {
		out, _ := exec.Command("ip", "netns", "exec", ns, "arping", "-c", "1", "-w", "1", "-I", peerIf, "198.51.100.10").CombinedOutput()
		return strings.Contains(strings.ToLower(string(out)), hostMAC), string(out)
	})
	wait(t, "the Announced Event", func() (bool, string) {
		var list eventsv1.EventList
		_ = c.List(ctx, &list, client.InNamespace("default"))
		var notes []string
		for _, e := range list.Items {
			if e.Reason == speaker.ReasonAnnounced && e.Regarding.Name == "web" {
				notes = append(notes, e.Note)
				if e.Note == "announcing 198.51.100.10 by layer2 from node node-a via "+hostIf {
					return true, ""
				}
			}
		}
		return false, fmt.Sprint(notes)
	})
	wait(t, "the metrics", func() (bool, string) {
		resp, err := http.Get("http://127.0.0.1:17474/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := string(b)
		for _, want := range []string{
			`portico_l2_owned_addresses{interface="` + hostIf + `"} 1`,
			`portico_speaker_memberlist_members{state="alive"} 1`,
			`portico_l2_responses_sent_total{interface="` + hostIf + `",protocol="arp"}`,
		} {
			if !strings.Contains(m, want) {
				return false, "no " + want
			}
		}
		return true, ""
	})
	var key corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: "portico-system", Name: "portico-memberlist"}, &key); err != nil {
		t.Fatalf("the memberlist Secret: %v", err)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("speaker exited with %v after SIGTERM", err)
		}
		t.Logf("the speaker stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the speaker was still running 10s after SIGTERM")
	}
	out, _ := exec.Command("ip", "netns", "exec", ns, "arping", "-c", "2", "-w", "2", "-I", peerIf, "198.51.100.10").CombinedOutput()
	if strings.Contains(string(out), "reply from") {
		t.Fatalf("an answer after the speaker stopped:\n%s", out)
	}
}

// needRoot fails under CI (CI=true) and skips elsewhere when the test
// cannot run: it needs root for namespaces and raw sockets, and arping.
func needRoot(t *testing.T) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("needs root (network namespaces, raw sockets)")
		return
	}
	if _, err := exec.LookPath("arping"); err != nil {
		install := exec.Command("sh", "-c", "apt-get update -qq && apt-get install -y -qq iputils-arping iproute2")
		install.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := install.CombinedOutput(); err != nil {
			fail("needs arping and installing it failed: %v\n%s", err, out)
		}
	}
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func mac(t *testing.T, ifname string) string {
	t.Helper()
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	return ifi.HardwareAddr.String()
}

func wait(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %s", what, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
