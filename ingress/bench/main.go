// Command bench measures Portico's ingress proxy against Debian's nginx,
// side by side on loopback. Both proxy to the same backend (a third nginx
// answering a small fixed body, so that neither proxy is measured against a
// backend of its own kind) with upstream keep-alive, and the same load is
// pointed at each. It prints figures and asserts none about time; a run
// that fails (a tool missing, output it cannot read, an answer other than
// 2xx) is an error, never a zero in the table.
//
// Modes:
//
//   - throughput (the default): wrk over plain HTTP and over HTTPS (TLS 1.3,
//     HTTP/1.1), h2load over HTTP/2, and wrk to an annotated route (rewrite,
//     allowlist, CORS, canary 10%; see annotatedServer); requests/s, p50,
//     p99, CPU per request and Portico's ratios to nginx, one block per
//     protocol.
//   - memory: the resident memory of each proxy while N connections are
//     held open in three ways: slow uploads (a POST head with
//     Content-Length 1 MiB and 16 KiB of body, then nothing), idle
//     keep-alive, and half a request head. Portico runs in a child process
//     so that the clients' memory is not counted.
//   - h2spec: the HTTP/2 conformance suite over TLS against each.
//
// It installs nginx, wrk and h2load with apt-get when they are missing.
//
//	go run ./ingress/bench [-protocols plain,https,h2,annotated,grpc] [-duration 10s] [-rounds 2]
//	go run ./ingress/bench -mode memory [-conns 2000] [-loads slow-upload,keep-alive,half-head]
//	go run ./ingress/bench -mode h2spec -h2spec .cache/bin/h2spec [-v] [http2/8.1.2.2 ...]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

func main() {
	if isGRPCBackend() {
		// The gRPC backend of the gRPC run; see grpc.go.
		if err := runGRPCBackend(); err != nil {
			fmt.Fprintln(os.Stderr, "bench gRPC backend:", err)
			os.Exit(1)
		}
		return
	}
	if isChild() {
		// Portico's proxy alone, for the memory mode; see portico.go.
		if err := runChild(); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		return
	}
	mode := flag.String("mode", "throughput", "what to measure: throughput, memory or h2spec")
	protoList := flag.String("protocols", "plain,https,h2,annotated,grpc", "throughput: protocols to run, comma-separated (plain, https, h2, annotated, grpc)")
	var l load
	flag.DurationVar(&l.duration, "duration", 10*time.Second, "throughput: length of each wrk or h2load run")
	flag.IntVar(&l.conns, "connections", 64, "throughput: client connections")
	flag.IntVar(&l.threads, "threads", 2, "throughput: client threads")
	flag.IntVar(&l.streams, "streams", 10, "throughput: concurrent streams per HTTP/2 connection (h2load -m)")
	rounds := flag.Int("rounds", 2, "throughput: alternating runs per proxy and protocol; the best is kept")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "throughput: write a CPU profile of Portico's first run to this file")
	conns := flag.Int("conns", 2000, "memory: connections held open")
	loads := flag.String("loads", "slow-upload,keep-alive,half-head", "memory: ways of holding connections open, comma-separated")
	h2specBin := flag.String("h2spec", "h2spec", "h2spec: the h2spec binary")
	verbose := flag.Bool("v", false, "h2spec: print h2spec's own output too")
	flag.Parse()

	var err error
	switch *mode {
	case "throughput":
		err = runThroughput(strings.Split(*protoList, ","), l, *rounds)
	case "memory":
		err = runMemory(strings.Split(*loads, ","), *conns)
	case "h2spec":
		err = runH2spec(*h2specBin, flag.Args(), *verbose)
	default:
		err = fmt.Errorf("unknown -mode %q: throughput, memory or h2spec", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var cpuProfile string

// ensureTools installs the Debian packages of the tools named that are
// missing.
func ensureTools(tools ...string) error {
	pkg := map[string]string{"nginx": "nginx", "wrk": "wrk", "h2load": "nghttp2-client"}
	var missing []string
	for _, t := range tools {
		if toolPath(t) == "" {
			missing = append(missing, pkg[t])
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fmt.Println("installing", missing, "with apt-get")
	cmd := exec.Command("apt-get", append([]string{"install", "-y", "--no-install-recommends"}, missing...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get install %v (as root?): %w", missing, err)
	}
	return nil
}

// toolPath finds a tool on PATH or in /usr/sbin (nginx's place, often
// outside a non-root PATH); "" when it is nowhere.
func toolPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/" + name); err == nil {
		return "/usr/sbin/" + name
	}
	return ""
}
