// Command nodeagent is the lab's kubelet: one runs in each node namespace.
// `nodeagent init FILE` is its internal container launcher.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/portico-lb/portico/e2e/nodeagent"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "init" {
		err := nodeagent.Init(os.Args[2])
		fmt.Fprintln(os.Stderr, "nodeagent init:", err)
		os.Exit(127)
	}
	if err := run(); err != nil {
		slog.Error("nodeagent", "err", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg nodeagent.Config
	var kubeconfig, nodeIPs, podCIDRs, repo string
	flag.StringVar(&cfg.NodeName, "node-name", "", "name of the Node to register")
	flag.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig with the node's credentials")
	flag.StringVar(&nodeIPs, "node-ips", "", "IPv4,IPv6 address of the node")
	flag.StringVar(&podCIDRs, "pod-cidrs", "", "IPv4,IPv6 pod CIDRs of the node")
	flag.StringVar(&cfg.Bridge, "bridge", "cbr0", "pod bridge")
	flag.StringVar(&cfg.NetnsPrefix, "netns-prefix", "portico-lab-pod-", "prefix of pod network namespaces")
	flag.StringVar(&repo, "repo", ".", "repository root; binaries come from its bin/")
	flag.StringVar(&cfg.StateDir, "state-dir", "", "directory for pod files")
	flag.StringVar(&cfg.LogDir, "log-dir", "", "directory for container logs")
	flag.StringVar(&cfg.TLSCert, "tls-cert", "", "serving certificate of the kubelet API (kubectl logs)")
	flag.StringVar(&cfg.TLSKey, "tls-key", "", "its key")
	flag.StringVar(&cfg.ClientCA, "client-ca", "", "CA of the API server's client certificate")
	flag.Parse()
	if cfg.NodeName == "" || kubeconfig == "" || cfg.StateDir == "" || cfg.LogDir == "" {
		return fmt.Errorf("--node-name, --kubeconfig, --state-dir and --log-dir are required")
	}
	for _, s := range strings.Split(nodeIPs, ",") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("--node-ips: %w", err)
		}
		cfg.NodeIPs = append(cfg.NodeIPs, a)
	}
	for _, s := range strings.Split(podCIDRs, ",") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("--pod-cidrs: %w", err)
		}
		cfg.PodCIDRs = append(cfg.PodCIDRs, p.Masked())
	}
	cfg.BinDir = repo + "/bin"

	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 50, 100
	rc.UserAgent = "portico-lab-nodeagent/" + cfg.NodeName
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	a, err := nodeagent.New(cfg, cs, log)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	return a.Run(ctx)
}
