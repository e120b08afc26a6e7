// Command lab brings Portico's lab — a multi-node Kubernetes cluster in
// network namespaces, with a router and clients — up and down.
//
//	lab up [--nodes N]          build the lab (idempotent)
//	lab install                 kubectl apply -k manifests/ and the lab's AddressPool
//	lab down                    remove every namespace and process of the lab
//	lab status                  what runs
//	lab exec HOST -- CMD...     run CMD in cp, node-N, client, router, outside
//	                            or pod/NAMESPACE/NAME (the Pod's network)
//	lab stop|start DAEMON       stop or start one daemon, e.g. node-2.agent
//
// The Kubernetes binaries come from --k8s-bins, $PORTICO_K8S_BINS,
// <repo>/.cache/bin or the newest <repo>/.cache/k8s-*; state lives in
// <repo>/.lab.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/portico-lb/portico/e2e/lab"
)

func main() {
	os.Exit(run())
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: lab [--repo DIR] [--k8s-bins DIR] [--name NAME] up [--nodes N] | install | down | status | exec HOST -- CMD... | stop DAEMON | start DAEMON\n")
}

func run() int {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	gf := flag.NewFlagSet("lab", flag.ContinueOnError)
	gf.Usage = usage
	repo := gf.String("repo", "", "Portico repository root (default: found from the working directory)")
	name := gf.String("name", "", "lab name, for several labs side by side (default $PORTICO_LAB_NAME or a hash of the repository path)")
	bins := gf.String("k8s-bins", "", "directory of etcd and the Kubernetes binaries (default $PORTICO_K8S_BINS, <repo>/.cache/bin, or the newest <repo>/.cache/k8s-*)")
	if err := gf.Parse(os.Args[1:]); err != nil {
		return 2
	}
	args := gf.Args()
	if len(args) == 0 {
		usage()
		return 2
	}
	cmd, args := args[0], args[1:]

	if cmd == "forward" { // internal: the host's way to the API server
		ff := flag.NewFlagSet("forward", flag.ContinueOnError)
		netns := ff.String("netns", "", "")
		target := ff.String("target", "", "")
		portFile := ff.String("port-file", "", "")
		if err := ff.Parse(args); err != nil {
			return 2
		}
		if err := lab.Forward(ctx, *netns, "127.0.0.1:0", *target, *portFile); err != nil {
			fmt.Fprintln(os.Stderr, "forward:", err)
			return 1
		}
		return 0
	}

	if *repo == "" {
		wd, _ := os.Getwd()
		r, err := lab.FindRepo(wd)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		*repo = r
	}
	*repo, _ = filepath.Abs(*repo)
	if *bins == "" {
		*bins = lab.DefaultBins(*repo)
	}
	*bins, _ = filepath.Abs(*bins)
	c := lab.Config{Repo: *repo, Bins: *bins, Name: *name, Out: os.Stdout}

	var err error
	switch cmd {
	case "up":
		uf := flag.NewFlagSet("up", flag.ContinueOnError)
		uf.IntVar(&c.Nodes, "nodes", 3, "number of nodes")
		if err := uf.Parse(args); err != nil {
			return 2
		}
		err = lab.Up(ctx, c)
	case "install":
		err = lab.Install(ctx, c)
	case "down":
		err = lab.Down(ctx, c)
	case "status":
		err = lab.Status(ctx, c, os.Stdout)
	case "stop", "start":
		if len(args) != 1 {
			usage()
			return 2
		}
		if cmd == "stop" {
			err = lab.Stop(c, args[0])
		} else {
			err = lab.Start(c, args[0])
		}
	case "exec":
		if len(args) < 2 || (args[1] == "--" && len(args) < 3) {
			usage()
			return 2
		}
		host, argv := args[0], args[1:]
		if argv[0] == "--" {
			argv = argv[1:]
		}
		code, err := lab.Exec(c, strings.TrimPrefix(host, c.Prefix()), argv)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lab:", err)
		}
		return code
	default:
		usage()
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return 1
	}
	return 0
}
