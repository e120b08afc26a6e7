package bgp

// The namespace lab: real routers (FRR, BIRD) in one network namespace,
// the Announcer in node namespaces on a bridge to it (or two hops away),
// documentation addresses only, no Kubernetes. Each Announcer runs in a
// child process started with `ip netns exec`, so that every socket GoBGP
// opens, on whatever thread, is in the node's namespace. Namespaces,
// processes and directories go with the test.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	helperEnv = "PORTICO_BGP_HELPER"
	// listenEnv sets the helper's Options.ListenPort.
	listenEnv = "PORTICO_BGP_LISTEN_PORT"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		helperMain()
		return
	}
	os.Exit(m.Run())
}

// helperRequest is one line from the test to the helper.
type helperRequest struct {
	Op       string // apply, status, close
	Sessions []Session
	Paths    map[string][]Path
}

type helperReply struct {
	Err    string
	Status []SessionStatus
	// Events are the OnChange calls so far.
	Events []SessionStatus
	// Metrics are the Announcer's series as "name{peer}" → value.
	Metrics map[string]float64
}

// helperMain runs an Announcer driven by JSON lines on stdin.
func helperMain() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var mu sync.Mutex
	var events []SessionStatus
	listen, _ := strconv.Atoi(os.Getenv(listenEnv))
	a := NewAnnouncer(Options{Logger: log, ListenPort: listen, ConnectRetry: time.Second, RestartTime: 60 * time.Second, OnChange: func(st SessionStatus) {
		mu.Lock()
		events = append(events, st)
		mu.Unlock()
	}})
	reg := prometheus.NewRegistry()
	reg.MustRegister(a)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 64<<20)
	out := json.NewEncoder(os.Stdout)
	ctx := context.Background()
	for in.Scan() {
		var req helperRequest
		var rep helperReply
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			rep.Err = err.Error()
		}
		switch req.Op {
		case "apply":
			if err := a.Apply(ctx, Plan{Sessions: req.Sessions, Paths: req.Paths}); err != nil {
				rep.Err = err.Error()
			}
		case "status":
			rep.Status = a.Status()
			mu.Lock()
			rep.Events = slices.Clone(events)
			mu.Unlock()
			rep.Metrics = gather(reg)
		case "close":
			a.Close(ctx)
		}
		if err := out.Encode(rep); err != nil {
			os.Exit(1)
		}
		if req.Op == "close" {
			return
		}
	}
}

func gather(reg *prometheus.Registry) map[string]float64 {
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		out["error"] = 1
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var peer string
			for _, l := range m.GetLabel() {
				if l.GetName() == "peer" {
					peer = l.GetValue()
				}
			}
			v := m.GetGauge().GetValue()
			if c := m.GetCounter(); c != nil {
				v = c.GetValue()
			}
			out[mf.GetName()+"{"+peer+"}"] = v
		}
	}
	return out
}

var labSeq atomic.Int32

// lab is a router namespace "rtr" (192.0.2.1/24, 2001:db8::1/64 on a
// bridge) and node namespaces on that bridge: node i (from 0) has
// 192.0.2.(2+i)/24 and 2001:db8::(2+i)/64 on its eth0. spk is node 0.
type lab struct {
	t     testing.TB
	rtr   string
	nodes []string
	spk   string
	dir   string
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "the namespace tests need root")
	}
}

// missing fails under CI and skips elsewhere: a test that cannot run in
// CI is a failure, on a laptop it is a nuisance.
func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: failing instead of skipping)", why)
	}
	t.Skip(why)
}

var installOnce sync.Once

// needTools installs Debian's frr and bird2 when their binaries are absent.
func needTools(t testing.TB) {
	t.Helper()
	needRoot(t)
	tools := []string{"ip", "/usr/lib/frr/bgpd", "/usr/lib/frr/zebra", "vtysh", "bird", "birdc"}
	have := func() error {
		for _, tool := range tools {
			if _, err := exec.LookPath(tool); err != nil {
				return err
			}
		}
		return nil
	}
	if have() != nil {
		installOnce.Do(func() {
			for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "frr", "bird2", "iproute2"}} {
				cmd := exec.Command("apt-get", args...)
				cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Logf("apt-get %s: %v\n%s", args[0], err, out)
				}
			}
		})
	}
	if err := have(); err != nil {
		missing(t, fmt.Sprintf("FRR and BIRD are needed and could not be installed: %v", err))
	}
}

func newLab(t testing.TB) *lab { return newLabNodes(t, 1) }

func newLabNodes(t testing.TB, n int) *lab {
	t.Helper()
	needTools(t)
	id := fmt.Sprintf("ptc%d-%d", os.Getpid(), labSeq.Add(1))
	l := &lab{t: t, rtr: id + "-rtr", dir: t.TempDir()}
	for i := range n {
		l.nodes = append(l.nodes, fmt.Sprintf("%s-n%d", id, i))
	}
	l.spk = l.nodes[0]
	for _, ns := range append([]string{l.rtr}, l.nodes...) {
		l.ip("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		l.ip("-n", ns, "link", "set", "lo", "up")
	}
	l.ip("-n", l.rtr, "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.rtr, "addr", "add", "192.0.2.1/24", "dev", "br0")
	l.ip("-n", l.rtr, "addr", "add", "2001:db8::1/64", "dev", "br0", "nodad")
	l.ip("-n", l.rtr, "link", "set", "br0", "up")
	for i, ns := range l.nodes {
		port := fmt.Sprintf("veth%d", i)
		l.ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", l.rtr)
		l.ip("-n", l.rtr, "link", "set", port, "master", "br0", "up")
		l.ip("-n", ns, "addr", "add", fmt.Sprintf("192.0.2.%d/24", 2+i), "dev", "eth0")
		l.ip("-n", ns, "addr", "add", fmt.Sprintf("2001:db8::%d/64", 2+i), "dev", "eth0", "nodad")
		l.ip("-n", ns, "link", "set", "eth0", "up")
	}
	return l
}

// listening lists the listening TCP sockets of namespace ns.
func (l *lab) listening(ns string) string {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-Hltn").CombinedOutput()
	if err != nil {
		l.t.Fatalf("ss: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// newRoutedLab puts a router namespace "mid" between the node (192.0.2.2,
// default route via mid's 192.0.2.1) and the router (203.0.113.2, default
// route via mid's 203.0.113.1): the router is two hops away.
func newRoutedLab(t testing.TB) *lab {
	t.Helper()
	needTools(t)
	id := fmt.Sprintf("ptc%d-%d", os.Getpid(), labSeq.Add(1))
	l := &lab{t: t, rtr: id + "-rtr", spk: id + "-n0", dir: t.TempDir()}
	l.nodes = []string{l.spk}
	mid := id + "-mid"
	for _, ns := range []string{l.rtr, l.spk, mid} {
		l.ip("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		l.ip("-n", ns, "link", "set", "lo", "up")
	}
	l.ip("link", "add", "eth0", "netns", l.spk, "type", "veth", "peer", "name", "tonode", "netns", mid)
	l.ip("link", "add", "eth0", "netns", l.rtr, "type", "veth", "peer", "name", "torouter", "netns", mid)
	for _, a := range [][]string{
		{l.spk, "eth0", "192.0.2.2/24"}, {mid, "tonode", "192.0.2.1/24"},
		{mid, "torouter", "203.0.113.1/24"}, {l.rtr, "eth0", "203.0.113.2/24"},
	} {
		l.ip("-n", a[0], "addr", "add", a[2], "dev", a[1])
		l.ip("-n", a[0], "link", "set", a[1], "up")
	}
	l.ip("-n", l.spk, "route", "add", "default", "via", "192.0.2.1")
	l.ip("-n", l.rtr, "route", "add", "default", "via", "203.0.113.1")
	if out, err := exec.Command("ip", "netns", "exec", mid, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("ip_forward: %v\n%s", err, out)
	}
	return l
}

func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// start runs a long-lived process in a namespace until the test ends (or
// until the returned function, which kills it and waits, is called); its
// output goes to a log file shown when the test fails.
func (l *lab) start(ns, name string, args ...string) (stop func()) {
	l.t.Helper()
	logPath := filepath.Join(l.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-done
	}
	l.t.Cleanup(func() {
		stop()
		logf.Close()
		if l.t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			l.t.Logf("--- %s log (tail) ---\n%s", name, b)
		}
	})
	return stop
}

// frr is FRR's zebra and bgpd in the router namespace.
type frr struct {
	l        *lab
	name     string
	dir      string
	bgpdArgs []string
	stopBgpd func()
	restarts int
}

// startFRR runs zebra and bgpd with bgpdConf, with their own config, pid
// files and sockets in a directory of the test.
func (l *lab) startFRR(name, bgpdConf string) *frr {
	l.t.Helper()
	// FRR's daemons run as the frr user (zebra refuses root), so their
	// directory is theirs and reachable from /tmp.
	dir, err := os.MkdirTemp("", "portico-"+name+"-")
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { os.RemoveAll(dir) })
	f := &frr{l: l, name: name, dir: dir}
	u, err := user.Lookup("frr")
	if err != nil {
		l.t.Fatalf("FRR's user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := errors.Join(os.Chmod(dir, 0o755), os.Chown(dir, uid, gid)); err != nil {
		l.t.Fatal(err)
	}
	write := func(file, s string) string {
		p := filepath.Join(f.dir, file)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			l.t.Fatal(err)
		}
		return p
	}
	zsock := filepath.Join(f.dir, "zserv.api")
	l.start(l.rtr, name+"-zebra", "/usr/lib/frr/zebra", "-P", "0", "-f", write("zebra.conf", "hostname rtr\n"),
		"-i", filepath.Join(f.dir, "zebra.pid"), "-z", zsock, "--vty_socket", f.dir)
	l.eventually(10*time.Second, func() error { _, err := os.Stat(zsock); return err })
	f.bgpdArgs = []string{"/usr/lib/frr/bgpd", "-P", "0", "-f", write("bgpd.conf", bgpdConf),
		"-i", filepath.Join(f.dir, "bgpd.pid"), "-z", zsock, "--vty_socket", f.dir}
	f.stopBgpd = l.start(l.rtr, name+"-bgpd", f.bgpdArgs...)
	l.eventually(10*time.Second, func() error { _, err := f.vtysh("show bgp summary json"); return err })
	return f
}

// restartBgpd kills bgpd, as a crash would, and starts it again.
func (f *frr) restartBgpd() {
	f.l.t.Helper()
	f.stopBgpd()
	f.restarts++
	f.stopBgpd = f.l.start(f.l.rtr, fmt.Sprintf("%s-bgpd-%d", f.name, f.restarts), f.bgpdArgs...)
	f.l.eventually(10*time.Second, func() error { _, err := f.vtysh("show bgp summary json"); return err })
}

func (f *frr) vtysh(cmd string) ([]byte, error) {
	out, err := exec.Command("vtysh", "--vty_socket", f.dir, "-d", "bgpd", "-c", cmd).Output()
	if err != nil {
		return nil, fmt.Errorf("vtysh -c %q: %w", cmd, err)
	}
	return out, nil
}

func (f *frr) json(cmd string, v any) error {
	out, err := f.vtysh(cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("vtysh -c %q: %w in %s", cmd, err, out)
	}
	return nil
}

// frrNeighbor is the part of `show bgp neighbors X json` the tests read.
type frrNeighbor struct {
	State                  string `json:"bgpState"`
	ConnectionsEstablished int    `json:"connectionsEstablished"`
	UpTimer                int64  `json:"bgpTimerUpMsec"`
}

func (f *frr) neighbor(addr string) (frrNeighbor, error) {
	var m map[string]frrNeighbor
	if err := f.json("show bgp neighbors "+addr+" json", &m); err != nil {
		return frrNeighbor{}, err
	}
	n, ok := m[addr]
	if !ok {
		return frrNeighbor{}, fmt.Errorf("no neighbor %s", addr)
	}
	return n, nil
}

func (f *frr) established(addr string) error {
	n, err := f.neighbor(addr)
	if err != nil {
		return err
	}
	if n.State != "Established" {
		return fmt.Errorf("neighbor %s is %s", addr, n.State)
	}
	return nil
}

// frrPath is one path of `show bgp <afi> unicast <prefix> json`.
type frrPath struct {
	Valid     bool   `json:"valid"`
	Stale     bool   `json:"stale"`
	LocalPref *int64 `json:"locPrf"`
	Community *struct {
		String string `json:"string"`
	} `json:"community"`
	LargeCommunity *struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
	Peer struct {
		PeerID string `json:"peerId"`
	} `json:"peer"`
}

// routedAfter waits until FRR has exactly one path to p and returns how
// long after start that was, polling every 2 ms.
func (f *frr) routedAfter(p netip.Prefix, start time.Time) time.Duration {
	f.l.t.Helper()
	for {
		if got, err := f.route(p.String()); err == nil && len(got) == 1 {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second {
			f.l.t.Fatalf("%s not in FRR after 10s", p)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// route returns the paths FRR holds for prefix; none when it has no route.
func (f *frr) route(prefix string) ([]frrPath, error) {
	afi := "ipv4"
	if strings.Contains(prefix, ":") {
		afi = "ipv6"
	}
	var r struct {
		Paths []frrPath `json:"paths"`
	}
	if err := f.json(fmt.Sprintf("show bgp %s unicast %s json", afi, prefix), &r); err != nil {
		return nil, err
	}
	return r.Paths, nil
}

// speakerProc is the Announcer in its helper process.
type speakerProc struct {
	l   *lab
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	mu  sync.Mutex
}

// kill ends the speaker as a crash or SIGKILL would: no NOTIFICATION, the
// kernel closes its connections.
func (s *speakerProc) kill() {
	_ = s.cmd.Process.Kill()
}

func (l *lab) startSpeaker(name string) *speakerProc {
	l.t.Helper()
	return l.startSpeakerIn(l.spk, name)
}

// startSpeakerIn starts a speaker in the node namespace ns.
func (l *lab) startSpeakerIn(ns, name string, env ...string) *speakerProc {
	l.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	logPath := filepath.Join(l.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"=1"), env...)
	cmd.Stderr = logf
	s := &speakerProc{l: l, cmd: cmd}
	if s.in, err = cmd.StdinPipe(); err != nil {
		l.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	s.out = bufio.NewScanner(stdout)
	s.out.Buffer(nil, 64<<20)
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		s.in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if l.t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 12000 {
				b = b[len(b)-12000:]
			}
			l.t.Logf("--- %s log (tail) ---\n%s", name, b)
		}
	})
	return s
}

func (s *speakerProc) call(req helperRequest) (helperReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(req)
	if _, err := s.in.Write(append(b, '\n')); err != nil {
		return helperReply{}, err
	}
	if !s.out.Scan() {
		return helperReply{}, fmt.Errorf("speaker helper exited: %v", s.out.Err())
	}
	var rep helperReply
	if err := json.Unmarshal(s.out.Bytes(), &rep); err != nil {
		return helperReply{}, err
	}
	if rep.Err != "" {
		return rep, errors.New(rep.Err)
	}
	return rep, nil
}

func (s *speakerProc) apply(sessions []Session, paths map[string][]Path) {
	s.l.t.Helper()
	if _, err := s.call(helperRequest{Op: "apply", Sessions: sessions, Paths: paths}); err != nil {
		s.l.t.Fatalf("apply: %v", err)
	}
}

func (s *speakerProc) status() []SessionStatus {
	s.l.t.Helper()
	return s.report().Status
}

func (s *speakerProc) report() helperReply {
	s.l.t.Helper()
	rep, err := s.call(helperRequest{Op: "status"})
	if err != nil {
		s.l.t.Fatalf("status: %v", err)
	}
	return rep
}

// eventually polls f until it returns nil or the timeout passes.
func (l *lab) eventually(timeout time.Duration, f func() error) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// never checks that f keeps failing for the whole duration.
func (l *lab) never(d time.Duration, what string, f func() error) {
	l.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f() == nil {
			l.t.Fatalf("%s happened and must not", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
