// Command bench measures Portico's proxy against Debian's nginx, side by
// side: both proxy to the same backend on loopback with upstream keep-alive,
// and the same wrk run is pointed at each. It prints requests/s, p50 and p99
// for each and Portico's ratios to nginx.
//
// It installs nginx and wrk with apt-get when they are missing. The backend
// is a third nginx process answering a small fixed body, so that neither
// proxy is measured against a backend of its own kind.
//
//	go run ./ingress/bench [-duration 10s] [-connections 64] [-threads 2]
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portico-lb/portico/ingress/proxy"
	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

func main() {
	duration := flag.Duration("duration", 10*time.Second, "length of each wrk run")
	conns := flag.Int("connections", 64, "wrk connections")
	threads := flag.Int("threads", 2, "wrk threads")
	rounds := flag.Int("rounds", 2, "alternating runs per proxy; the best is kept")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of Portico's runs to this file")
	flag.Parse()
	if err := run(*duration, *conns, *threads, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var cpuProfile string

const (
	backendAddr = "127.0.0.1:18181"
	nginxAddr   = "127.0.0.1:18180"
	porticoAddr = "127.0.0.1:18182"
)

func run(d time.Duration, conns, threads, rounds int) error {
	if err := ensureTools(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "portico-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	backend, err := startNginx(dir, "backend", fmt.Sprintf(`
    server {
        listen %s reuseport backlog=4096;
        keepalive_requests 1000000;
        location / { default_type text/plain; return 200 "hello from the backend\n"; }
    }`, backendAddr))
	if err != nil {
		return err
	}
	defer stop(backend)

	front, err := startNginx(dir, "proxy", fmt.Sprintf(`
    upstream backend {
        server %s;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
        listen %s reuseport backlog=4096;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }
    }`, backendAddr, nginxAddr))
	if err != nil {
		return err
	}
	defer stop(front)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := startPortico(ctx); err != nil {
		return err
	}
	for _, a := range []string{backendAddr, nginxAddr, porticoAddr} {
		if err := waitHTTP(a); err != nil {
			return err
		}
	}

	fmt.Printf("wrk -t%d -c%d -d%s --latency, GET / with Host bench.example, %d rounds, best kept\n", threads, conns, d, rounds)
	best := map[string]result{}
	for r := 0; r < rounds; r++ {
		for _, p := range []struct{ name, addr string }{{"nginx", nginxAddr}, {"portico", porticoAddr}} {
			cpu := func() time.Duration { return processTreeCPU(front.Process.Pid) }
			if p.name == "portico" {
				cpu = selfCPU
			}
			cpu0 := cpu()
			if p.name == "portico" && cpuProfile != "" && r == 0 {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
			}
			res, err := wrk(p.addr, d, conns, threads)
			res.cpu = cpu() - cpu0
			if p.name == "portico" && cpuProfile != "" && r == 0 {
				pprof.StopCPUProfile()
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			fmt.Printf("  round %d %-8s %10.0f req/s  p50 %8s  p99 %8s  errors %d  CPU %.1fµs/request\n", r+1, p.name, res.rps, res.p50, res.p99, res.errors, res.cpuPerRequest())
			if res.rps > best[p.name].rps {
				best[p.name] = res
			}
		}
	}
	n, p := best["nginx"], best["portico"]
	fmt.Printf("\n%-8s %12s %10s %10s %16s\n", "", "req/s", "p50", "p99", "CPU µs/request")
	fmt.Printf("%-8s %12.0f %10s %10s %16.1f\n", "nginx", n.rps, n.p50, n.p99, n.cpuPerRequest())
	fmt.Printf("%-8s %12.0f %10s %10s %16.1f\n", "portico", p.rps, p.p50, p.p99, p.cpuPerRequest())
	fmt.Printf("portico/nginx: requests/s %.2fx (goal >= 1.0), p99 %.2fx (goal <= 1.2)\n", p.rps/n.rps, float64(p.p99)/float64(n.p99))
	return nil
}

func ensureTools() error {
	var missing []string
	for _, t := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(t); err != nil {
			if _, err := os.Stat("/usr/sbin/" + t); err != nil {
				missing = append(missing, t)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fmt.Println("installing", missing, "with apt-get")
	cmd := exec.Command("apt-get", append([]string{"install", "-y"}, missing...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get install %v (as root?): %w", missing, err)
	}
	return nil
}

func nginxBin() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	return "/usr/sbin/nginx"
}

// startNginx runs nginx in the foreground with the http block body given.
func startNginx(dir, name, httpBody string) (*exec.Cmd, error) {
	prefix := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, prefix, httpBody)
	file := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(nginxBin(), "-p", prefix, "-c", file, "-g", "daemon off;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting nginx %s: %w", name, err)
	}
	return cmd, nil
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
	}
}

func startPortico(ctx context.Context) error {
	s, err := proxy.New(proxy.Options{}, nil)
	if err != nil {
		return err
	}
	tab, rej := route.Build([]route.Ingress{{
		Namespace: "bench", Name: "bench",
		Rules: []route.Rule{{Host: "bench.example", Paths: []route.Path{{Path: "/", Type: route.Prefix,
			Backend: route.Backend{Service: "backend", Port: route.Port{Number: 80}}}}}},
	}})
	if len(rej) > 0 {
		return fmt.Errorf("routes: %v", rej)
	}
	s.Store(&exchange.Config{
		Routes: tab,
		Upstreams: map[exchange.Target]*exchange.Upstream{
			{Namespace: "bench", Service: "backend", Port: route.Port{Number: 80}}: exchange.NewUpstream(backendAddr),
		},
	})
	ln, err := net.Listen("tcp", porticoAddr)
	if err != nil {
		return err
	}
	go func() { _ = s.Serve(ctx, ln, nil, time.Second) }()
	return nil
}

func waitHTTP(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

// selfCPU is the CPU time this process (Portico's proxy, in-process) used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processTreeCPU is the CPU time used by pid and its children (nginx's
// master and workers), from /proc.
func processTreeCPU(pid int) time.Duration {
	tick := 100 // USER_HZ on Linux
	var total int64
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		self, _ := strconv.Atoi(e.Name())
		ppid, _ := strconv.Atoi(f[1])
		if self != pid && ppid != pid {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += ut + st
	}
	return time.Duration(total) * time.Second / time.Duration(tick)
}

type result struct {
	cpu      time.Duration
	duration time.Duration
	rps      float64
	p50, p99 time.Duration
	errors   int
}

// cpuPerRequest is the proxy's CPU time per request: on a shared machine,
// the figure that does not depend on who else runs.
func (r result) cpuPerRequest() float64 {
	if r.rps == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / (r.rps * r.duration.Seconds())
}

var (
	rpsRe    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pctRe    = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	non2xxRe = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	sockRe   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func wrk(addr string, d time.Duration, conns, threads int) (result, error) {
	out, err := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", d.String(),
		"--latency", "-H", "Host: bench.example", "http://"+addr+"/").CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	r := result{duration: d}
	m := rpsRe.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output: %s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, m := range pctRe.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(m[3])]
		dur := time.Duration(math.Round(v * float64(unit)))
		if string(m[1]) == "50" {
			r.p50 = dur
		} else {
			r.p99 = dur
		}
	}
	if m := non2xxRe.FindSubmatch(out); m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		r.errors += n
	}
	if m := sockRe.FindSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(string(s))
			r.errors += n
		}
	}
	if strings.Contains(string(out), "unable to connect") {
		return r, fmt.Errorf("wrk could not connect: %s", out)
	}
	return r, nil
}
