package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// slowUploadTarget is the most Portico's memory may grow by while 2,000
// clients each stall in the middle of a 1 MiB upload.
const slowUploadTarget = 64 << 20

// hold is one way of keeping a connection open: what the client sends
// before it stalls.
type hold struct {
	name, desc string
	start      func(c net.Conn) error
}

var holds = map[string]hold{
	"slow-upload": {
		desc: "POST /upload with Content-Length 1048576 and 16 KiB of body, then nothing",
		start: func(c net.Conn) error {
			head := "POST /upload HTTP/1.1\r\nHost: " + benchHost + "\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n"
			_, err := c.Write(append([]byte(head), bytes.Repeat([]byte{'x'}, 16<<10)...))
			return err
		},
	},
	"keep-alive": {
		desc: "GET / answered, then the connection idles",
		start: func(c net.Conn) error {
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+benchHost+"\r\n\r\n"); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			defer c.SetReadDeadline(time.Time{})
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /: %s", resp.Status)
			}
			return nil
		},
	},
	"half-head": {
		desc: "half a request head (no blank line), then nothing",
		start: func(c net.Conn) error {
			_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+benchHost+"\r\nUser-Agent: portico-bench\r\n")
			return err
		},
	},
}

// memProxy is a proxy measured for memory: the process whose resident
// memory counts, where it listens, and how to stop it.
type memProxy struct {
	pid  int
	addr string
	stop func()
}

// runMemory holds n connections open to each proxy in each way named and
// prints how much each proxy's resident memory grew. Each proxy starts
// afresh for each way, so that what one left behind does not count in the
// next.
func runMemory(names []string, n int) error {
	var hs []hold
	for _, name := range names {
		h, ok := holds[strings.TrimSpace(name)]
		if !ok {
			return fmt.Errorf("unknown load %q: slow-upload, keep-alive or half-head", name)
		}
		h.name = strings.TrimSpace(name)
		hs = append(hs, h)
	}
	if n < 1 {
		return fmt.Errorf("need -conns >= 1")
	}
	if err := ensureTools("nginx"); err != nil {
		return err
	}
	if err := raiseNofile(n + 1024); err != nil {
		return err
	}
	r, err := newRig(n)
	if err != nil {
		return err
	}
	defer r.close()

	starts := []struct {
		name  string
		start func() (memProxy, error)
	}{
		{"portico", func() (memProxy, error) { return startPorticoChild(r.backend, 2*n+1024) }},
		{"nginx", func() (memProxy, error) {
			cmd, addrs, err := r.startFront("memory", n, plainHTTP)
			if err != nil {
				return memProxy{}, err
			}
			return memProxy{pid: cmd.Process.Pid, addr: addrs[plainHTTP], stop: func() { r.stopProc(cmd) }}, nil
		}},
	}
	fmt.Printf("memory: %d connections held open; VmRSS of the proxy's processes (nginx: master and workers), Portico in a child process\n", n)
	var upload int64 = -1
	for _, h := range hs {
		fmt.Printf("\n== %s: %s\n", h.name, h.desc)
		fmt.Printf("  %-8s %10s %11s %10s %13s %11s  %s\n", "", "idle MiB", "loaded MiB", "delta MiB", "per conn KiB", "still open", "unread by the proxy")
		for _, s := range starts {
			p, err := s.start()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			m, err := measure(p, h, n)
			p.stop()
			if err != nil {
				return fmt.Errorf("%s, %s: %w", h.name, s.name, err)
			}
			fmt.Printf("  %-8s %10.1f %11.1f %10.1f %13.1f %11s  %d B%s\n", s.name, mib(m.idle), mib(m.loaded), mib(m.loaded-m.idle),
				float64(m.loaded-m.idle)/1024/float64(n), fmt.Sprintf("%d/%d", m.open, n), m.unread, m.note)
			if s.name == "portico" && h.name == "slow-upload" {
				upload = m.loaded - m.idle
			}
		}
	}
	if upload >= 0 {
		verdict := "met"
		if upload >= slowUploadTarget {
			verdict = "missed"
		}
		fmt.Printf("\nportico, %d slow uploads: delta %.1f MiB, target < %d MiB: %s\n", n, mib(upload), slowUploadTarget>>20, verdict)
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

type memFigures struct {
	idle, loaded int64
	open         int
	unread       int64
	note         string
}

// measure warms p up, reads its idle memory, holds n connections open in
// the way h says, waits until p has read what they sent and its memory has
// settled, and reads its memory again.
func measure(p memProxy, h hold, n int) (memFigures, error) {
	var m memFigures
	if err := warm(p.addr); err != nil {
		return m, fmt.Errorf("warming up: %w", err)
	}
	var err error
	if m.idle, _, err = settle(p, false); err != nil {
		return m, err
	}
	conns, err := openHeld(p.addr, h, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return m, err
	}
	var settled bool
	m.loaded, settled, err = settle(p, true)
	if err != nil {
		return m, err
	}
	if !settled {
		m.note = " (memory or unread bytes still moving after 30s)"
	}
	m.unread, _, _ = unread(p.addr)
	m.open = stillOpen(conns)
	return m, nil
}

// warm sends a few requests, uploads included, so that the idle figure
// counts what any serving proxy has allocated.
func warm(addr string) error {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := range 40 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		if i%10 == 0 {
			req, _ = http.NewRequest(http.MethodPost, "http://"+addr+"/upload", bytes.NewReader(make([]byte, 1<<20)))
		}
		req.Host = benchHost
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
		}
	}
	return nil
}

// openHeld opens n connections to addr, a few at a time, and starts each
// the way h says.
func openHeld(addr string, h hold, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	const workers = 32
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					errs[i] = err
					continue
				}
				conns[i] = c
				if err := h.start(c); err != nil {
					errs[i] = fmt.Errorf("connection %d: %w", i, err)
				}
			}
		})
	}
	wg.Wait()
	var open []net.Conn
	for _, c := range conns {
		if c != nil {
			open = append(open, c)
		}
	}
	return open, errors.Join(errs...)
}

// settle waits until p's resident memory has stayed within 1% (or 512 KiB)
// for a second and, when loaded, the proxy's sockets hold nothing unread; it
// returns the last reading. It gives up after 30s and says so.
func settle(p memProxy, loaded bool) (int64, bool, error) {
	const (
		every  = 100 * time.Millisecond
		window = int(time.Second / every)
	)
	var seen []int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := rss(p.pid)
		if err != nil {
			return 0, false, err
		}
		seen = append(seen, v)
		if len(seen) > window+1 {
			seen = seen[1:]
		}
		if len(seen) == window+1 {
			lo, hi := seen[0], seen[0]
			for _, s := range seen {
				lo, hi = min(lo, s), max(hi, s)
			}
			quiet := hi-lo <= max(512<<10, hi/100)
			if quiet && loaded {
				left, _, err := unread(p.addr)
				if err != nil {
					return 0, false, err
				}
				quiet = left == 0
			}
			if quiet {
				return v, true, nil
			}
		}
		if time.Now().After(deadline) {
			return v, false, nil
		}
		time.Sleep(every)
	}
}

// unread sums the bytes waiting in the receive queues of the established
// TCP sockets whose local address is addr (the proxy's ends of the
// clients' connections, accepted or not yet), from /proc/net/tcp, and
// counts those sockets.
func unread(addr string) (bytes int64, sockets int, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, 0, err
	}
	ip := net.ParseIP(host).To4()
	pn, _ := strconv.Atoi(port)
	if ip == nil {
		return 0, 0, fmt.Errorf("%s is not an IPv4 address", addr)
	}
	// /proc/net/tcp spells 127.0.0.1:80 as 0100007F:0050.
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], pn)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != local || f[3] != "01" { // 01: ESTABLISHED
			continue
		}
		_, rx, ok := strings.Cut(f[4], ":")
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(rx, 16, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/net/tcp: %q: %w", f[4], err)
		}
		bytes += v
		sockets++
	}
	return bytes, sockets, nil
}

// stillOpen counts the connections the proxy has not closed: a read that
// times out finds the connection open; EOF or a reset, closed.
func stillOpen(conns []net.Conn) int {
	open := 0
	buf := make([]byte, 1)
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, err := c.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
	}
	return open
}

// startPorticoChild starts this binary again as Portico's proxy alone,
// proxying to backend with room for nofile open files, and waits until it
// listens.
func startPorticoChild(backend string, nofile int) (memProxy, error) {
	self, err := os.Executable()
	if err != nil {
		return memProxy{}, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childBackendEnv+"="+backend, childNofileEnv+"="+strconv.Itoa(nofile))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return memProxy{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return memProxy{}, err
	}
	if err := cmd.Start(); err != nil {
		return memProxy{}, fmt.Errorf("starting Portico's child process: %w", err)
	}
	stopChild := func() {
		stdin.Close() // the child's signal to shut down
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stopChild()
		return memProxy{}, fmt.Errorf("Portico's child process did not say where it listens: %w", err)
	}
	return memProxy{pid: cmd.Process.Pid, addr: strings.TrimSpace(line), stop: stopChild}, nil
}
