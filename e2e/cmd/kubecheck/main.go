// Command kubecheck runs inside lab Pods (image lab.portico.dev/kubecheck)
// to check, from a Pod's point of view, what end-to-end tests assert. It
// exits 0 when the check holds, so the Pod's phase (Succeeded or Failed)
// is the result.
//
//	kubecheck rbac                       in-cluster config may list Pods but not Secrets
//	kubecheck http URL [--pods N] [--tries M]
//	                                     URL answers like the echo server, from at least N pods
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
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
	for range *tries {
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
