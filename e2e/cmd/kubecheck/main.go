// Command kubecheck runs inside lab Pods (image lab.portico.dev/kubecheck)
// to check, from a Pod's point of view, what end-to-end tests assert. It
// exits 0 when the check holds, so the Pod's phase (Succeeded or Failed)
// is the result.
//
//	kubecheck rbac                       in-cluster config may list Pods but not Secrets
//	kubecheck http URL [--pods N] [--tries M]
//	                                     URL answers like the echo server, from at least N pods
//	kubecheck env [--expect NAME=VALUE] [--local-ip NAME] [--file PATH=CONTENT]
//	              [--nonempty-file PATH] [--writable DIR] [--hostname NAME] [--uid N]
//	                                     the Pod's environment, files and hostname are as given
//	kubecheck sleep [--ignore-term]      sleep until killed (SIGTERM too, unless ignored)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kubecheck rbac | http URL [--pods N] [--tries M]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "rbac":
		err = checkRBAC()
	case "http":
		err = checkHTTP(os.Args[2:])
	case "env":
		err = checkEnv(os.Args[2:])
	case "sleep":
		if len(os.Args) > 2 && os.Args[2] == "--ignore-term" {
			signal.Ignore(syscall.SIGTERM)
			fmt.Println("ignoring SIGTERM")
		}
		// Until a signal ends the process. Not an empty select: in a
		// binary without cgo the runtime sees no goroutine that could
		// ever wake, and aborts ("all goroutines are asleep").
		for {
			time.Sleep(time.Hour)
		}
	default:
		err = fmt.Errorf("unknown check %q", os.Args[1])
	}
	if err != nil {
		fmt.Println("FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("PASS")
}

func checkRBAC() error {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ns, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pods, err := cs.CoreV1().Pods(string(ns)).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list pods (should be allowed): %w", err)
	}
	fmt.Printf("listed %d pods in %s\n", len(pods.Items), ns)
	_, err = cs.CoreV1().Secrets(string(ns)).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		return fmt.Errorf("list secrets should be forbidden, got err=%v", err)
	}
	fmt.Println("listing secrets is forbidden:", err)
	return nil
}

func checkHTTP(args []string) error {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	wantPods := fs.Int("pods", 1, "distinct pods that must answer")
	tries := fs.Int("tries", 30, "requests to make")
	if len(args) == 0 {
		return fmt.Errorf("http: no URL")
	}
	url := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]int{}
	var lastErr error
	// At least --tries requests; then keep asking, for up to 30 s, while
	// fewer than --pods have answered: a node's kube-proxy may program a
	// new endpoint a little after the Pod turned Ready.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < *tries || (len(seen) < *wantPods && time.Now().Before(deadline)); i++ {
		resp, err := c.Get(url)
		if err != nil {
			lastErr = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		var body struct {
			Pod string `json:"pod"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || body.Pod == "" {
			lastErr = fmt.Errorf("response names no pod: %v", err)
			continue
		}
		seen[body.Pod]++
	}
	var names []string
	for p, n := range seen {
		names = append(names, fmt.Sprintf("%s=%d", p, n))
	}
	fmt.Println("answered by:", strings.Join(names, " "))
	if len(seen) < *wantPods {
		return fmt.Errorf("%d distinct pods answered, want %d (last error: %v)", len(seen), *wantPods, lastErr)
	}
	return nil
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func checkEnv(args []string) error {
	fs := flag.NewFlagSet("env", flag.ContinueOnError)
	var expect, localIP, files, nonempty, writable multi
	fs.Var(&expect, "expect", "NAME=VALUE the environment must hold")
	fs.Var(&localIP, "local-ip", "NAME of a variable that must be an address of this Pod")
	fs.Var(&files, "file", "PATH=CONTENT a file must hold")
	fs.Var(&nonempty, "nonempty-file", "PATH of a file that must not be empty")
	fs.Var(&writable, "writable", "DIR that must be writable")
	hostname := fs.String("hostname", "", "the hostname the Pod must see")
	uid := fs.Int("uid", -1, "the user ID the container must run as")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs []string
	for _, e := range expect {
		k, v, _ := strings.Cut(e, "=")
		if got := os.Getenv(k); got != v {
			errs = append(errs, fmt.Sprintf("$%s = %q, want %q", k, got, v))
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, k := range localIP {
		v, found := os.Getenv(k), false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.String() == v {
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Sprintf("$%s = %q is not an address of this Pod (%v)", k, v, addrs))
		}
	}
	for _, f := range files {
		p, want, _ := strings.Cut(f, "=")
		b, err := os.ReadFile(p)
		if err != nil || string(b) != want {
			errs = append(errs, fmt.Sprintf("%s = %q (%v), want %q", p, b, err, want))
		}
	}
	for _, p := range nonempty {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			errs = append(errs, fmt.Sprintf("%s is missing or empty (%v)", p, err))
		}
	}
	for _, d := range writable {
		if err := os.WriteFile(filepath.Join(d, "kubecheck"), []byte("x"), 0o644); err != nil {
			errs = append(errs, fmt.Sprintf("%s is not writable: %v", d, err))
		}
	}
	if *hostname != "" {
		if h, _ := os.Hostname(); h != *hostname {
			errs = append(errs, fmt.Sprintf("hostname %q, want %q", h, *hostname))
		}
	}
	if *uid >= 0 && os.Getuid() != *uid {
		errs = append(errs, fmt.Sprintf("running as uid %d, want %d", os.Getuid(), *uid))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
