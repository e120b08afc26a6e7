package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

// load is the shape of one wrk or h2load run.
type load struct {
	duration                time.Duration
	conns, threads, streams int
}

// protocol is one way of talking to the proxies: its nginx listener kind,
// the tool that loads it, and how Portico's end differs.
type protocol struct {
	kind  string
	title string
	tool  string
	// alpn is what the TLS check offers; nil for plain HTTP.
	alpn []string
	run  func(addr string, l load, dir string) (result, error)
	// describe says what the tool does, for the block's header line.
	describe func(l load, rounds int) string
}

var protocols = map[string]protocol{
	plainHTTP: {
		kind: plainHTTP, title: "plain HTTP/1.1", tool: "wrk",
		run: func(addr string, l load, _ string) (result, error) { return wrk("http://"+addr+"/", benchHost, l) },
		describe: func(l load, rounds int) string {
			return fmt.Sprintf("wrk -t%d -c%d -d%s --latency, GET / with Host %s, %d rounds, best kept", l.threads, l.conns, l.duration, benchHost, rounds)
		},
	},
	annotated: {
		kind: annotated, title: "plain HTTP/1.1, annotated route (rewrite, allowlist, CORS, canary 10%)", tool: "wrk",
		run: func(addr string, l load, _ string) (result, error) {
			return wrk("http://"+addr+"/app/page", annotatedHost, l, "Origin: "+corsOrigin)
		},
		describe: func(l load, rounds int) string {
			return fmt.Sprintf("wrk -t%d -c%d -d%s --latency, GET /app/page with Host %s and Origin %s; path %q rewritten to /$2, allowlist 127.0.0.0/8, CORS for that origin, 10%% to a canary upstream (same backend); %d rounds, best kept",
				l.threads, l.conns, l.duration, annotatedHost, corsOrigin, annotatedPath, rounds)
		},
	},
	https: {
		kind: https, title: "HTTPS (TLS 1.3, HTTP/1.1)", tool: "wrk", alpn: []string{"http/1.1"},
		run: func(addr string, l load, _ string) (result, error) { return wrk("https://"+addr+"/", benchHost, l) },
		describe: func(l load, rounds int) string {
			return fmt.Sprintf("wrk -t%d -c%d -d%s --latency https://ADDR/, GET / with Host %s, %d rounds, best kept", l.threads, l.conns, l.duration, benchHost, rounds)
		},
	},
	grpcKind: {
		kind: grpcKind, title: "gRPC unary (TLS 1.3, h2) to a gRPC backend", tool: "h2load", alpn: []string{"h2"},
		run: h2loadGRPC,
		describe: func(l load, rounds int) string {
			return fmt.Sprintf("h2load -c %d -m %d -t %d -D %s https://%s%s (connected to ADDR), %d-byte request and response payloads, after one checked call with grpc-go; Portico backend-protocol GRPC, nginx grpc_pass; %d rounds, best kept",
				l.conns, l.streams, l.threads, l.duration, grpcHost, grpcMethod, grpcRequestSize, rounds)
		},
	},
	http2: {
		kind: http2, title: "HTTP/2 (TLS 1.3, h2)", tool: "h2load", alpn: []string{"h2"},
		run: h2load,
		describe: func(l load, rounds int) string {
			return fmt.Sprintf("h2load -c %d -m %d -t %d -D %s https://%s/ (connected to ADDR), %d rounds, best kept", l.conns, l.streams, l.threads, l.duration, benchHost, rounds)
		},
	},
}

// runThroughput runs each protocol named, nginx and Portico in alternating
// rounds, and prints a block per protocol and a summary of the ratios.
func runThroughput(names []string, l load, rounds int) error {
	var protos []protocol
	tools := []string{"nginx"}
	for _, n := range names {
		p, ok := protocols[strings.TrimSpace(n)]
		if !ok {
			return fmt.Errorf("unknown protocol %q: plain, https, h2, annotated or grpc", n)
		}
		protos = append(protos, p)
		tools = append(tools, p.tool)
	}
	if rounds < 1 || l.duration < time.Second {
		return fmt.Errorf("need -rounds >= 1 and -duration >= 1s")
	}
	if err := ensureTools(tools...); err != nil {
		return err
	}
	r, err := newRig(l.conns)
	if err != nil {
		return err
	}
	defer r.close()
	var kinds []string
	for _, p := range protos {
		kinds = append(kinds, p.kind)
	}
	front, nginxAddrs, err := r.startFront("proxy", l.conns, kinds...)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	secure, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	done, err := servePortico(ctx, plain, secure, backends{http: r.backend, grpc: r.grpcBackend}, r.cert)
	if err != nil {
		return err
	}
	defer func() { cancel(); <-done }()
	porticoAddrs := map[string]string{plainHTTP: plain.Addr().String(), https: secure.Addr().String(), http2: secure.Addr().String(), annotated: plain.Addr().String(), grpcKind: secure.Addr().String()}

	type ratio struct {
		title    string
		rps, p99 float64
	}
	var ratios []ratio
	profiled := false
	for _, p := range protos {
		fmt.Printf("\n== %s\n", p.title)
		if p.alpn != nil {
			for _, t := range []struct{ name, addr string }{{"nginx", nginxAddrs[p.kind]}, {"portico", porticoAddrs[p.kind]}} {
				s, err := checkTLS(t.addr, p.alpn[0], r.cert)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", p.title, t.name, err)
				}
				fmt.Printf("  %-8s %s\n", t.name, s)
			}
		}
		fmt.Println(p.describe(l, rounds))
		best := map[string]result{}
		for round := 1; round <= rounds; round++ {
			for _, t := range []struct{ name, addr string }{{"nginx", nginxAddrs[p.kind]}, {"portico", porticoAddrs[p.kind]}} {
				cpu := func() time.Duration { return processTreeCPU(front.Process.Pid) }
				if t.name == "portico" {
					cpu = selfCPU
				}
				stopProfile := func() {}
				if t.name == "portico" && cpuProfile != "" && !profiled {
					profiled = true
					if stopProfile, err = startProfile(cpuProfile); err != nil {
						return err
					}
				}
				cpu0 := cpu()
				res, err := p.run(t.addr, l, r.dir)
				res.cpu = cpu() - cpu0
				stopProfile()
				if err != nil {
					return fmt.Errorf("%s, %s: %w", p.title, t.name, err)
				}
				fmt.Printf("  round %d %-8s %10.0f req/s  p50 %8s  p99 %8s  errors %d  CPU %.1fµs/request\n", round, t.name, res.rps, res.p50, res.p99, res.errors, res.cpuPerRequest())
				if res.rps > best[t.name].rps {
					best[t.name] = res
				}
			}
		}
		n, pt := best["nginx"], best["portico"]
		fmt.Printf("\n%-8s %12s %10s %10s %16s\n", "", "req/s", "p50", "p99", "CPU µs/request")
		fmt.Printf("%-8s %12.0f %10s %10s %16.1f\n", "nginx", n.rps, n.p50, n.p99, n.cpuPerRequest())
		fmt.Printf("%-8s %12.0f %10s %10s %16.1f\n", "portico", pt.rps, pt.p50, pt.p99, pt.cpuPerRequest())
		rt := ratio{p.title, pt.rps / n.rps, float64(pt.p99) / float64(n.p99)}
		fmt.Printf("portico/nginx: requests/s %.2fx (goal >= 1.0), p99 %.2fx (goal <= 1.2)\n", rt.rps, rt.p99)
		ratios = append(ratios, rt)
	}
	if len(ratios) > 1 {
		fmt.Printf("\nportico/nginx %-26s %10s %8s\n", "", "requests/s", "p99")
		for _, rt := range ratios {
			fmt.Printf("  %-38s %9.2fx %7.2fx\n", rt.title, rt.rps, rt.p99)
		}
	}
	return nil
}

func startProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// checkTLS makes one handshake with addr offering alpn, checks that the
// server presents cert and speaks TLS 1.3 and that protocol, and describes
// what was negotiated. The key exchange is pinned to X25519, what wrk's and
// h2load's OpenSSL use.
func checkTLS(addr, alpn string, cert *tls.Certificate) (string, error) {
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		ServerName:       benchHost,
		RootCAs:          roots,
		NextProtos:       []string{alpn},
		CurvePreferences: []tls.CurveID{tls.X25519},
	})
	if err != nil {
		return "", fmt.Errorf("TLS handshake: %w", err)
	}
	defer c.Close()
	st := c.ConnectionState()
	if st.Version != tls.VersionTLS13 {
		return "", fmt.Errorf("negotiated %s, not TLS 1.3", tls.VersionName(st.Version))
	}
	if st.NegotiatedProtocol != alpn {
		return "", fmt.Errorf("ALPN: got %q, want %q", st.NegotiatedProtocol, alpn)
	}
	return fmt.Sprintf("%s %s ALPN %s, the bench's certificate", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.NegotiatedProtocol), nil
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

// seconds spells d for wrk's and h2load's -d/-D, which take whole units.
func seconds(d time.Duration) string {
	return strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s"
}

func wrk(url, host string, l load, headers ...string) (result, error) {
	args := []string{"-t", strconv.Itoa(l.threads), "-c", strconv.Itoa(l.conns), "-d", seconds(l.duration), "--latency", "-H", "Host: " + host}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	cmd := command("wrk", append(args, url)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	r, err := parseWrk(out)
	r.duration = l.duration
	return r, err
}

var (
	wrkRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkPct    = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSock   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads wrk's output. Any answer outside 2xx and 3xx is an error
// (wrk does not tell 3xx from 2xx; the bench's routes answer 200 or fail),
// and so is any socket error: a proxy that drops connections is not fast.
func parseWrk(out []byte) (result, error) {
	var r result
	if bytes.Contains(out, []byte("unable to connect")) {
		return r, fmt.Errorf("wrk could not connect: %s", out)
	}
	m := wrkRPS.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output: %s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, m := range wrkPct.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(m[3])]
		d := time.Duration(math.Round(v * float64(unit)))
		if string(m[1]) == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.rps == 0 || r.p50 == 0 || r.p99 == 0 {
		return r, fmt.Errorf("no requests/s or latency percentiles in wrk's output: %s", out)
	}
	if m := wrkNon2xx.FindSubmatch(out); m != nil {
		return r, fmt.Errorf("wrk saw %s answers outside 2xx and 3xx: %s", m[1], out)
	}
	if m := wrkSock.FindSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(string(s))
			r.errors += n
		}
		return r, fmt.Errorf("wrk saw socket errors: %s", m[0])
	}
	return r, nil
}

// h2load runs h2load over TLS against addr with :authority and SNI
// bench.example, and takes the latency percentiles from its per-request
// log (its summary has only min, max, mean and sd).
func h2load(addr string, l load, dir string) (result, error) {
	return h2loadRun(addr, l, dir, "https://"+benchHost+"/")
}

// h2loadRun runs h2load against addr for url, with extra arguments.
func h2loadRun(addr string, l load, dir, url string, extra ...string) (result, error) {
	logFile := filepath.Join(dir, "h2load.log")
	defer os.Remove(logFile)
	args := []string{"-c", strconv.Itoa(l.conns), "-m", strconv.Itoa(l.streams), "-t", strconv.Itoa(l.threads),
		"-D", seconds(l.duration), "--connect-to=" + addr, "--log-file=" + logFile}
	cmd := command("h2load", append(append(args, extra...), url)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("h2load: %w: %s", err, out)
	}
	r, err := parseH2load(out)
	r.duration = l.duration
	if err != nil {
		return r, err
	}
	f, err := os.Open(logFile)
	if err != nil {
		return r, fmt.Errorf("h2load's log: %w", err)
	}
	defer f.Close()
	lat, err := parseH2loadLog(f)
	if err != nil {
		return r, err
	}
	r.p50, r.p99 = percentile(lat, 50), percentile(lat, 99)
	return r, nil
}

var (
	h2RPS      = regexp.MustCompile(`(?m)^finished in [0-9.]+m?s, ([0-9.]+) req/s`)
	h2Requests = regexp.MustCompile(`(?m)^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`(?m)^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2Proto    = regexp.MustCompile(`(?m)^Application protocol: (\S+)`)
	h2TLS      = regexp.MustCompile(`(?m)^TLS Protocol: (\S+)`)
)

// parseH2load reads h2load's summary: requests/s, and an error when the
// connection did not speak TLS 1.3 and h2, a request failed, or an answer
// was not 2xx. (Debian's h2load settles for TLS 1.2 with servers that offer
// both, nginx among them; the bench's nginx offers only 1.3.)
func parseH2load(out []byte) (result, error) {
	var r result
	m := h2Proto.FindSubmatch(out)
	if m == nil || string(m[1]) != "h2" {
		return r, fmt.Errorf("h2load did not negotiate h2: %s", out)
	}
	if m = h2TLS.FindSubmatch(out); m == nil || string(m[1]) != "TLSv1.3" {
		return r, fmt.Errorf("h2load did not negotiate TLS 1.3: %s", out)
	}
	if m = h2RPS.FindSubmatch(out); m == nil {
		return r, fmt.Errorf("no req/s in h2load's output: %s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	req := h2Requests.FindSubmatch(out)
	st := h2Status.FindSubmatch(out)
	if req == nil || st == nil {
		return r, fmt.Errorf("no request counts in h2load's output: %s", out)
	}
	n := func(b []byte) int { v, _ := strconv.Atoi(string(b)); return v }
	r.errors = n(req[5]) + n(req[6]) + n(req[7]) + n(st[2]) + n(st[3]) + n(st[4])
	if r.errors > 0 {
		return r, fmt.Errorf("h2load saw failed requests or answers outside 2xx: %s\n%s", req[0], st[0])
	}
	if r.rps == 0 || n(req[4]) == 0 {
		return r, fmt.Errorf("h2load had no request succeed: %s", out)
	}
	return r, nil
}

// parseH2loadLog reads h2load's --log-file: per request, the start in µs
// since the epoch, the status, and the µs until the end of the answer. It
// returns the latencies, sorted.
func parseH2loadLog(f io.Reader) ([]time.Duration, error) {
	var lat []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 3 {
			return nil, fmt.Errorf("h2load's log: line %q has fewer than 3 columns", sc.Text())
		}
		if !strings.HasPrefix(cols[1], "2") {
			return nil, fmt.Errorf("h2load's log: status %s", cols[1])
		}
		us, err := strconv.ParseInt(cols[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("h2load's log: %w", err)
		}
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("h2load's log is empty")
	}
	slices.Sort(lat)
	return lat, nil
}

// percentile returns the p-th percentile of sorted, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
