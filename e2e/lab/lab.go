package lab

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Config says where the lab's inputs and state live.
type Config struct {
	Repo  string    // repository root; bin/ holds the lab's and Portico's binaries
	Bins  string    // directory of etcd and the Kubernetes binaries
	Nodes int       // node count for Up
	Name  string    // see Prefix; empty for the default
	Out   io.Writer // progress messages
}

// Name is the lab's name: Config.Name, $PORTICO_LAB_NAME, or a short hash
// of the repository's path, so checkouts side by side get separate labs.
func (c Config) name() string {
	if c.Name != "" {
		return c.Name
	}
	if n := os.Getenv("PORTICO_LAB_NAME"); n != "" {
		return n
	}
	sum := sha256.Sum256([]byte(c.Repo))
	return hex.EncodeToString(sum[:3])
}

// Prefix starts the names of this lab's network namespaces.
func (c Config) Prefix() string { return Family + c.name() + "-" }

// Plan is the lab's topology.
func (c Config) Plan() (Plan, error) {
	if !validName.MatchString(c.name()) {
		return Plan{}, fmt.Errorf("lab name %q: want 1 to 12 lower-case letters and digits", c.name())
	}
	return NewPlan(c.Prefix(), c.Nodes)
}

var validName = regexp.MustCompile(`^[a-z0-9]{1,12}$`)

// Dirs is where the lab keeps its state: <repo>/.lab.
func (c Config) Dirs() Dirs { return Dirs{Root: filepath.Join(c.Repo, ".lab")} }

func init() { sbinOnPath() }

// FindRepo walks up from dir to the directory holding Portico's go.mod.
func FindRepo(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/portico-lb/portico\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no Portico repository at or above %s", dir)
		}
	}
}

// state is what Up records for later commands: the plan's size and how to
// restart every daemon.
type state struct {
	Nodes   int               `json:"nodes"`
	APIPort int               `json:"apiPort"` // host loopback port of the forwarder
	Daemons map[string]daemon `json:"daemons"`
	Order   []string          `json:"order"`
}

func (d Dirs) stateFile() string { return filepath.Join(d.Root, "state.json") }

func (d Dirs) load() (state, error) {
	var s state
	b, err := os.ReadFile(d.stateFile())
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

func (d Dirs) save(s state) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(d.stateFile(), b, 0o644)
}

// Up brings the lab up. A lab that is already fully up is left alone; a
// partial one (a crash, a killed daemon) is torn down and rebuilt.
func Up(ctx context.Context, c Config) error {
	start := time.Now()
	d := c.Dirs()
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := Healthy(ctx, c); err == nil {
		fmt.Fprintf(c.Out, "lab is already up (kubeconfig %s)\n", d.Kubeconfig())
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("the lab creates network namespaces: run it as root")
	}
	plan, err := c.Plan()
	if err != nil {
		return err
	}
	if err := c.checkBinaries(); err != nil {
		return err
	}
	if err := EnsurePackages(ctx, c.Out); err != nil {
		return err
	}
	if err := down(ctx, c); err != nil {
		return fmt.Errorf("clean up before up: %w", err)
	}
	if err := os.RemoveAll(d.Logs()); err != nil {
		return err
	}
	for _, dir := range []string{d.Logs(), d.Run(), d.PKI()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	st := state{Nodes: c.Nodes, Daemons: map[string]daemon{}}
	startD := func(dm daemon) error {
		if strings.HasPrefix(dm.Argv[0], filepath.Join(c.Repo, "bin")+"/") {
			dm.Sum = fileSum(dm.Argv[0])
		}
		st.Daemons[dm.Name] = dm
		st.Order = append(st.Order, dm.Name)
		if err := d.save(st); err != nil {
			return err
		}
		_, err := d.start(dm)
		return err
	}

	step := func(what string) { fmt.Fprintf(c.Out, "[%5.1fs] %s\n", time.Since(start).Seconds(), what) }
	step("certificates")
	if err := writePKI(d, plan); err != nil {
		return err
	}
	step("network namespaces")
	if err := buildNetwork(ctx, plan); err != nil {
		return err
	}
	// Record the state now, so Down knows the lab even if a later step fails.
	if err := d.save(st); err != nil {
		return err
	}

	// The forwarder is bin/lab itself, not os.Executable(): Up also runs
	// inside test binaries.
	self := filepath.Join(c.Repo, "bin", "lab")
	portFile := filepath.Join(d.Run(), "api.port")
	step("control plane")
	cp := controlPlane(c, plan)
	cp = append(cp, daemon{Name: "api-forward", Argv: []string{self, "forward",
		"--netns", plan.CP.Netns(), "--target", net.JoinHostPort(plan.CP.V4.String(), strconv.Itoa(APIPort)),
		"--port-file", portFile}})
	// etcd, the API server and the forwarder first; the controller manager
	// and scheduler only once RBAC's bootstrap roles exist, or they fail
	// their first authorization checks and exit.
	for _, dm := range cp {
		if dm.Name == "kube-controller-manager" || dm.Name == "kube-scheduler" {
			continue
		}
		if err := startD(dm); err != nil {
			return err
		}
	}
	port, err := waitPort(ctx, portFile)
	if err != nil {
		return err
	}
	st.APIPort = port
	if err := d.save(st); err != nil {
		return err
	}
	p := pki{dir: d.PKI()}
	if err := p.kubeconfig(d.Kubeconfig(), fmt.Sprintf("https://127.0.0.1:%d", port), "admin"); err != nil {
		return err
	}
	if err := waitReady(ctx, d, port, 60*time.Second); err != nil {
		return fmt.Errorf("API server: %w (see %s)", err, filepath.Join(d.Logs(), "kube-apiserver.log"))
	}
	for _, dm := range cp {
		if dm.Name == "kube-controller-manager" || dm.Name == "kube-scheduler" {
			if err := startD(dm); err != nil {
				return err
			}
		}
	}
	step("API server ready; nodes")
	for _, dm := range nodeDaemons(c, plan) {
		if err := startD(dm); err != nil {
			return err
		}
	}
	step("router")
	rd, err := routerDaemons(c, plan)
	if err != nil {
		return err
	}
	for _, dm := range rd {
		if err := startD(dm); err != nil {
			return err
		}
	}
	if err := waitNodes(ctx, d.Kubeconfig(), len(plan.Nodes), 90*time.Second); err != nil {
		return err
	}
	step("nodes Ready")
	fmt.Fprintf(c.Out, "lab up in %.1fs\n", time.Since(start).Seconds())
	fmt.Fprintf(c.Out, "  export KUBECONFIG=%s\n  kubectl get nodes -o wide\n  bin/lab exec client -- curl ...\n  bin/lab exec router -- vtysh -c 'show bgp summary'\n", d.Kubeconfig())
	return nil
}

func (c Config) checkBinaries() error {
	var missing []string
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl"} {
		if _, err := os.Stat(filepath.Join(c.Bins, b)); err != nil {
			missing = append(missing, filepath.Join(c.Bins, b))
		}
	}
	for _, b := range []string{"lab", "nodeagent", "echoserver"} {
		if _, err := os.Stat(filepath.Join(c.Repo, "bin", b)); err != nil {
			missing = append(missing, filepath.Join(c.Repo, "bin", b))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing binaries %v: build them with `make k8s-bins` and `go build -o bin/ ./e2e/cmd/...` (or set PORTICO_K8S_BINS)", missing)
	}
	return nil
}

func writePKI(d Dirs, plan Plan) error {
	p, err := newPKI(d.PKI())
	if err != nil {
		return err
	}
	if err := p.serviceAccountKey(); err != nil {
		return err
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), plan.CP.V4.AsSlice(), plan.CP.V6.AsSlice()}
	for _, a := range APIService {
		ips = append(ips, a.AsSlice())
	}
	if err := p.issue("apiserver", "kube-apiserver", nil, true,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, ips); err != nil {
		return err
	}
	clients := []struct{ name, cn, org string }{
		{"admin", "portico-lab-admin", "system:masters"},
		{"controller-manager", "system:kube-controller-manager", ""},
		{"scheduler", "system:kube-scheduler", ""},
		{"kube-proxy", "system:kube-proxy", ""},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"},
	}
	for _, n := range plan.Nodes {
		clients = append(clients, struct{ name, cn, org string }{n.Name, "system:node:" + n.Name, "system:nodes"})
	}
	for _, cl := range clients {
		var orgs []string
		if cl.org != "" {
			orgs = []string{cl.org}
		}
		if err := p.issue(cl.name, cl.cn, orgs, false, nil, nil); err != nil {
			return err
		}
	}
	for _, n := range plan.Nodes {
		if err := p.issue(n.Name+"-kubelet", "system:node:"+n.Name, []string{"system:nodes"}, true,
			[]string{n.Name}, []net.IP{n.V4.AsSlice(), n.V6.AsSlice()}); err != nil {
			return err
		}
	}
	local := fmt.Sprintf("https://127.0.0.1:%d", APIPort)
	for _, k := range []struct{ file, server, name string }{
		{"controller-manager.kubeconfig", local, "controller-manager"},
		{"scheduler.kubeconfig", local, "scheduler"},
		{"kube-proxy.kubeconfig", plan.APIServer(), "kube-proxy"},
		{"admin-lan.kubeconfig", plan.APIServer(), "admin"},
	} {
		if err := p.kubeconfig(p.path(k.file), k.server, k.name); err != nil {
			return err
		}
	}
	for _, n := range plan.Nodes {
		if err := p.kubeconfig(p.path(n.Name+".kubeconfig"), plan.APIServer(), n.Name); err != nil {
			return err
		}
	}
	return nil
}

func waitPort(ctx context.Context, file string) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return p, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("API forwarder wrote no port to %s", file)
}

// adminHTTP is an HTTP client that authenticates as the lab's admin.
func adminHTTP(d Dirs) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(d.PKI(), "admin.crt"), filepath.Join(d.PKI(), "admin.key"))
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(d.PKI(), "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool},
	}}, nil
}

func waitReady(ctx context.Context, d Dirs, port int, timeout time.Duration) error {
	hc, err := adminHTTP(d)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	last := errors.New("not ready")
	for time.Now().Before(deadline) {
		resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/readyz", port))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("readyz %d: %s", resp.StatusCode, lastLines(string(body), 3))
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return last
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "; ")
}

// Healthy is nil when every daemon of the recorded lab runs and the API
// server is ready.
func Healthy(ctx context.Context, c Config) error {
	d := c.Dirs()
	st, err := d.load()
	if err != nil {
		return fmt.Errorf("no lab state: %w", err)
	}
	if c.Nodes != 0 && st.Nodes != c.Nodes {
		return fmt.Errorf("lab has %d nodes, want %d", st.Nodes, c.Nodes)
	}
	if len(st.Order) == 0 {
		return errors.New("lab has no daemons")
	}
	for _, name := range st.Order {
		if _, ok := d.pidOf(name); !ok {
			return fmt.Errorf("%s is not running", name)
		}
		// A lab binary that changed since its daemon started: `lab up`
		// after rebuilding the node agent must run the new one. (Content,
		// not time: `go build` rewrites unchanged binaries too.)
		if dm := st.Daemons[name]; dm.Sum != "" && fileSum(dm.Argv[0]) != dm.Sum {
			return fmt.Errorf("%s changed since %s started", dm.Argv[0], name)
		}
	}
	return waitReady(ctx, d, st.APIPort, time.Second)
}

// Down stops every lab process and removes every lab namespace. It works
// from the namespace names, not only the recorded state, so it also cleans
// up after a crash or a lost .lab directory.
func Down(ctx context.Context, c Config) error {
	unlock, err := c.Dirs().lock()
	if err != nil {
		return err
	}
	defer unlock()
	return down(ctx, c)
}

// lock serialises Up and Down of one checkout's lab (make lab racing
// make e2e, say).
func (d Dirs) lock() (func(), error) {
	if err := os.MkdirAll(d.Root, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(d.Root, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

func down(ctx context.Context, c Config) error {
	d := c.Dirs()
	var errs []error
	// Root-namespace daemons (the API forwarder) are found by pid file; the
	// pid must still run the lab's own executable, never a recycled pid.
	if st, err := d.load(); err == nil {
		var pids []int
		for _, name := range st.Order {
			if dm := st.Daemons[name]; dm.Netns == "" {
				if pid, ok := d.pidOf(name); ok && sameExe(pid, dm.Argv[0]) {
					pids = append(pids, pid)
				}
			}
		}
		stopPIDs(pids, 3*time.Second)
	}
	names, err := Namespaces(ctx, c.Prefix())
	if err != nil {
		return err
	}
	var pids []int
	for _, ns := range names {
		p, err := nsPIDs(ctx, ns)
		if err != nil {
			errs = append(errs, err)
		}
		// Never this process: a test that ran code in a lab namespace on a
		// locked thread leaves that thread there, and when the thread was
		// the main one, which Go never ends (it wedges it instead), the
		// whole process is listed as in the namespace.
		pids = append(pids, slices.DeleteFunc(p, func(pid int) bool { return pid == os.Getpid() })...)
	}
	stopPIDs(pids, 5*time.Second)
	// Node agents remove their pod namespaces as they stop: list again.
	if names, err = Namespaces(ctx, c.Prefix()); err != nil {
		return err
	}
	for _, ns := range names {
		if err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	removeMountpoints(ctx, d)
	// Logs stay for post-mortems until the next Up; everything else goes.
	for _, p := range []string{d.Run(), d.PKI(), filepath.Join(d.Root, "data"), frrDir(d), d.Kubeconfig(), d.stateFile()} {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func sameExe(pid int, path string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	want, _ := filepath.EvalSymlinks(path)
	return exe == path || exe == want
}

// Status writes what runs and what does not.
func Status(ctx context.Context, c Config, w io.Writer) error {
	d := c.Dirs()
	st, err := d.load()
	if err != nil {
		fmt.Fprintln(w, "lab is down")
		return nil
	}
	names := append([]string(nil), st.Order...)
	sort.Strings(names)
	for _, n := range names {
		pid, ok := d.pidOf(n)
		state := "running"
		if !ok {
			state = "STOPPED"
		}
		fmt.Fprintf(w, "%-28s %-8s pid %d\n", n, state, pid)
	}
	if err := waitReady(ctx, d, st.APIPort, time.Second); err != nil {
		fmt.Fprintf(w, "API server: NOT READY: %v\n", err)
	} else {
		fmt.Fprintf(w, "API server: ready at https://127.0.0.1:%d (kubeconfig %s)\n", st.APIPort, d.Kubeconfig())
	}
	nss, _ := Namespaces(ctx, c.Prefix())
	fmt.Fprintf(w, "namespaces: %d (%s...)\n", len(nss), c.Prefix())
	if cfg, err := clientcmd.BuildConfigFromFlags("", d.Kubeconfig()); err == nil {
		cfg.Timeout = 3 * time.Second
		if cs, err := kubernetes.NewForConfig(cfg); err == nil {
			if nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
				for _, n := range nodes.Items {
					ready := "NotReady"
					for _, c := range n.Status.Conditions {
						if c.Type == "Ready" && c.Status == "True" {
							ready = "Ready"
						}
					}
					fmt.Fprintf(w, "node %-10s %-9s %v\n", n.Name, ready, n.Spec.PodCIDRs)
				}
			}
		}
	}
	return nil
}

// Stop stops one daemon of the lab by name (e.g. "node-2.agent").
func Stop(c Config, name string) error {
	d := c.Dirs()
	pid, ok := d.pidOf(name)
	if !ok {
		return fmt.Errorf("%s is not running", name)
	}
	stopPIDs([]int{pid}, 5*time.Second)
	return nil
}

// Start starts one recorded daemon again.
func Start(c Config, name string) error {
	d := c.Dirs()
	st, err := d.load()
	if err != nil {
		return err
	}
	dm, ok := st.Daemons[name]
	if !ok {
		return fmt.Errorf("no daemon %q in the lab", name)
	}
	if _, ok := d.pidOf(name); ok {
		return fmt.Errorf("%s is already running", name)
	}
	_, err = d.start(dm)
	return err
}

// Exec runs argv in the namespace of host (cp, node-1, client, router,
// outside, or pod/NAMESPACE/NAME for a Pod's network) with the caller's
// stdio and returns its exit code. KUBECONFIG is
// set to a kubeconfig that works from inside the LAN; `vtysh` is pointed at
// the lab router's FRR.
func Exec(c Config, host string, argv []string) (int, error) {
	if len(argv) == 0 {
		return 2, errors.New("exec: no command")
	}
	d := c.Dirs()
	if host == "router" && filepath.Base(argv[0]) == "vtysh" {
		argv = append([]string{argv[0], "--vty_socket", frrDir(d)}, argv[1:]...)
	}
	netns := c.Prefix() + host
	if strings.HasPrefix(host, "pod/") {
		var err error
		if netns, err = c.podNetns(host); err != nil {
			return 2, err
		}
	}
	if _, err := os.Stat("/run/netns/" + netns); err != nil {
		return 2, fmt.Errorf("no lab host %q (is the lab up?)", host)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns}, argv...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(d.PKI(), "admin-lan.kubeconfig"))
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// frrDir holds FRR's config and sockets; FRR's own user must reach it, so it
// is not under data/ (etcd makes that 0700).
func frrDir(d Dirs) string { return filepath.Join(d.Root, "frr") }

func lookupUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// removeMountpoints removes the empty directories and files node agents
// created on the host as bind-mount targets, deepest first.
// Another lab's pods may have the same mount points mounted; removing one
// would detach it there, so with another lab running they stay.
func removeMountpoints(ctx context.Context, d Dirs) {
	if out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output(); err != nil || strings.Contains(string(out), Family) {
		return
	}
	files, _ := filepath.Glob(filepath.Join(d.Root, "data", "*", "mountpoints.txt"))
	var paths []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		paths = append(paths, strings.Fields(string(b))...)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for _, p := range paths {
		if st, err := os.Lstat(p); err == nil && (st.IsDir() || st.Size() == 0) {
			_ = os.Remove(p) // fails, harmlessly, on a non-empty directory
		}
	}
}

// DefaultBins is where the Kubernetes binaries are when neither a flag nor
// $PORTICO_K8S_BINS says: <repo>/.cache/bin, or else the newest
// <repo>/.cache/k8s-<version> that `make k8s-bins` finished.
func DefaultBins(repo string) string {
	if env := os.Getenv("PORTICO_K8S_BINS"); env != "" {
		return env
	}
	def := filepath.Join(repo, ".cache", "bin")
	if _, err := os.Stat(filepath.Join(def, "kube-apiserver")); err == nil {
		return def
	}
	done, _ := filepath.Glob(filepath.Join(repo, ".cache", "k8s-*", ".done"))
	if len(done) == 0 {
		return def
	}
	sort.Strings(done)
	return filepath.Dir(done[len(done)-1])
}

// podNetns finds the network namespace of "pod/NAMESPACE/NAME", named by
// the node agent after the Pod's node and UID.
func (c Config) podNetns(ref string) (string, error) {
	parts := strings.Split(ref, "/")
	if len(parts) != 3 {
		return "", fmt.Errorf("%q: want pod/NAMESPACE/NAME", ref)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Dirs().Kubeconfig())
	if err != nil {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	p, err := cs.CoreV1().Pods(parts[1]).Get(context.Background(), parts[2], metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if p.Spec.HostNetwork {
		return c.Prefix() + p.Spec.NodeName, nil
	}
	uid := strings.ReplaceAll(string(p.UID), "-", "")
	if len(uid) < 10 {
		return "", fmt.Errorf("pod %s has UID %q", ref, p.UID)
	}
	return c.Prefix() + "pod-" + p.Spec.NodeName + "-" + uid[:10], nil
}
