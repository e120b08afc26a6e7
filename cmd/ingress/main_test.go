package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/e2e/apitest"
	"github.com/portico-lb/portico/ingress/proxy"
)

// The binary, built and run as the Deployment runs it, against a real API
// server: it becomes ready, serves routes with its own headers, and writes
// the publish Service's address into an Ingress's status.
func TestBinary(t *testing.T) {
	api, err := apitest.Start()
	apitest.Need(t, err)
	defer api.Stop()
	ctx := context.Background()

	bin := filepath.Join(t.TempDir(), "ingress")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns := &corev1.Namespace{}
	ns.Name = "portico-system"
	ic := &networkingv1.IngressClass{Spec: networkingv1.IngressClassSpec{Controller: "portico.dev/ingress"}}
	ic.Name = "portico"
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	svc.Namespace, svc.Name = "portico-system", "portico-ingress"
	ing := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{
		IngressClassName: ptr.To("portico"),
		DefaultBackend:   &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}},
	}}
	ing.Namespace, ing.Name = "portico-system", "catch-all"
	for _, o := range []client.Object{ns, ic, svc, ing} {
		if err := api.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
	if err := api.Client.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}

	httpAddr, httpsAddr, health := freeAddr(t), freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "--http-address", httpAddr, "--https-address", httpsAddr,
		"--health-probe-bind-address", health, "--metrics-bind-address", "0",
		"--leader-election-namespace", "portico-system")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+api.Kubeconfig)
	logs, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logs.Name())
			t.Logf("ingress logs:\n%s", out)
		}
	}()

	wait(t, "ready", func() error {
		res, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("readyz %d", res.StatusCode)
		}
		return nil
	})
	res, err := http.Get("http://" + httpAddr + "/anything")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 503 || res.Header.Get("Server") != "portico" {
		t.Errorf("GET through the binary: %d %q (Server %q), want 503 from portico: the catch-all's Service has no endpoints", res.StatusCode, body, res.Header.Get("Server"))
	}
	// Access logs are on by default: the request's line reaches stdout
	// within the log's flush interval, as JSON.
	wait(t, "the access log line", func() error {
		out, err := os.ReadFile(logs.Name())
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(out), "\n") {
			var r struct {
				URI       string `json:"uri"`
				Status    int    `json:"status"`
				Ingress   string `json:"ingress"`
				RequestID string `json:"requestID"`
			}
			if json.Unmarshal([]byte(line), &r) == nil && r.URI == "/anything" {
				if r.Status != 503 || r.Ingress != "portico-system/catch-all" {
					return fmt.Errorf("access log line %s, want status 503 by portico-system/catch-all", line)
				}
				return nil
			}
		}
		return fmt.Errorf("no access log line for /anything")
	})
	wait(t, "status written", func() error {
		var got networkingv1.Ingress
		if err := api.Client.Get(ctx, client.ObjectKeyFromObject(ing), &got); err != nil {
			return err
		}
		if lb := got.Status.LoadBalancer.Ingress; len(lb) != 1 || lb[0].IP != "192.0.2.1" {
			return fmt.Errorf("status %v", lb)
		}
		return nil
	})
}

// TestServingWaitsForTheFirstConfig: before the first configuration is
// loaded a connection is accepted by the kernel but not answered (an
// answer would be a 404 for want of routes); once loaded it is served.
func TestServingWaitsForTheFirstConfig(t *testing.T) {
	srv, err := proxy.New(proxy.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	loaded := make(chan struct{})
	s := serving{srv: srv, plain: listen(), secure: listen(), grace: time.Second, loaded: loaded}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	type answer struct {
		code int
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + s.plain.Addr().String() + "/")
		if err != nil {
			got <- answer{err: err}
			return
		}
		res.Body.Close()
		got <- answer{code: res.StatusCode}
	}()
	select {
	case a := <-got:
		t.Fatalf("answered before the first configuration: %+v", a)
	case <-time.After(300 * time.Millisecond):
	}
	close(loaded)
	if a := <-got; a.err != nil || a.code != http.StatusNotFound {
		t.Fatalf("after loading an empty configuration: %+v, want 404", a)
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func wait(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
