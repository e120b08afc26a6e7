package l2

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/speaker"
	"github.com/portico-lb/portico/speaker/member"
)

// The failover test runs, with no Kubernetes, what a speaker does on the
// network: one helper process per node namespace with memberlist and the
// layer 2 announcer, all on one bridged LAN; a client probes the address
// by ARP every 10 ms. It cuts the owner's link, or stops its helper with
// SIGTERM, and reports how long until the new owner answers. The lab's
// bench-failover measures the same with the whole product.

const helperEnv = "PORTICO_L2_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

// helperMain is a speaker without the API: a fixed set of Services on
// addresses of one pool, announced by whoever owns them among the live
// members. It prints "members=N owned=M" after each change.
func helperMain() int {
	node := os.Getenv("PORTICO_NODE")
	bind := netip.MustParseAddr(os.Getenv("PORTICO_BIND"))
	peers := strings.Split(os.Getenv("PORTICO_PEERS"), ",")
	st := speaker.State{
		Node:             node,
		Nodes:            map[string]*corev1.Node{},
		Pools:            map[string]*v1alpha1.AddressPool{},
		L2Advertisements: []*v1alpha1.L2Advertisement{{}},
	}
	for _, n := range strings.Split(os.Getenv("PORTICO_NODES"), ",") {
		st.Nodes[n] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}
	}
	for i, v := range strings.Split(os.Getenv("PORTICO_VIPS"), ",") {
		st.Services = append(st.Services, speaker.Service{
			Name: types.NamespacedName{Namespace: "default", Name: fmt.Sprintf("svc-%d", i)},
			IPs:  []netip.Addr{netip.MustParseAddr(v)},
		})
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ann := NewAnnouncer(ResponderOptions{Log: log}, DefaultExclude)
	ctx := context.Background()
	var mu sync.Mutex
	onChange := func(ms []member.Member) {
		mu.Lock()
		defer mu.Unlock()
		s := st
		s.Members = ms
		got, err := ann.Announce(ctx, &s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "announce:", err)
		}
		fmt.Printf("members=%d owned=%d\n", len(ms), len(got))
	}
	list, err := member.Start(member.Config{
		Node: node, BindAddr: bind, Interfaces: member.Interfaces{"eth0": {netip.MustParsePrefix("192.0.2.0/24")}},
		OnChange: onChange, Log: log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	// Rejoin the others now and then, as cmd/speaker does from the pod
	// list: memberlist never probes a member it has declared dead.
	tick := time.NewTicker(500 * time.Millisecond)
	for {
		_, _ = list.Join(peers)
		select {
		case <-sig:
			_ = list.Leave(time.Second)
			mu.Lock()
			ann.Close()
			mu.Unlock()
			return 0
		case <-tick.C:
		}
	}
}

type cluster struct {
	client  string
	nodes   []string // namespace per node
	names   []string // node names n0, n1, ...
	ips     []string
	macs    []string
	vip     netip.Addr
	mu      sync.Mutex
	members map[int]int // node index → members it last reported
	procs   map[int]*exec.Cmd
}

func newCluster(t *testing.T, n int) *cluster {
	needNetns(t)
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	c := &cluster{client: "portico-fc-" + id, vip: netip.MustParseAddr("192.0.2.200"), members: map[int]int{}, procs: map[int]*exec.Cmd{}}
	mk := func(ns string) {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	mk(c.client)
	run(t, "ip", "-n", c.client, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
	run(t, "ip", "-n", c.client, "addr", "add", "192.0.2.1/24", "dev", "br0")
	run(t, "ip", "-n", c.client, "link", "set", "br0", "up")
	for i := range n {
		ns := fmt.Sprintf("portico-fn%d-%s", i, id)
		mk(ns)
		c.nodes = append(c.nodes, ns)
		c.names = append(c.names, fmt.Sprintf("n%d", i))
		c.ips = append(c.ips, fmt.Sprintf("192.0.2.%d", 11+i))
		c.macs = append(c.macs, fmt.Sprintf("02:00:00:00:01:%02x", i))
		run(t, "ip", "link", "add", "eth0", "netns", ns, "address", c.macs[i], "type", "veth", "peer", "name", fmt.Sprintf("p%d", i), "netns", c.client)
		run(t, "ip", "-n", c.client, "link", "set", fmt.Sprintf("p%d", i), "master", "br0", "up")
		run(t, "ip", "-n", ns, "addr", "add", c.ips[i]+"/24", "dev", "eth0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	})
	return c
}

// start runs node i's helper.
func (c *cluster) start(t *testing.T, i int) {
	t.Helper()
	var peers []string
	for j, ip := range c.ips {
		if j != i {
			peers = append(peers, ip)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", c.nodes[i], os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1",
		"PORTICO_NODE="+c.names[i], "PORTICO_BIND="+c.ips[i], "PORTICO_PEERS="+strings.Join(peers, ","),
		"PORTICO_NODES="+strings.Join(c.names, ","), "PORTICO_VIPS="+c.vip.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.procs[i] = cmd
	c.members[i] = 0
	c.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m, o int
			if _, err := fmt.Sscanf(sc.Text(), "members=%d owned=%d", &m, &o); err == nil {
				c.mu.Lock()
				if c.procs[i] == cmd {
					c.members[i] = m
				}
				c.mu.Unlock()
			}
		}
	}()
}

// stop sends node i's helper SIGTERM and waits for it to exit.
func (c *cluster) stop(t *testing.T, i int) {
	t.Helper()
	c.mu.Lock()
	cmd := c.procs[i]
	delete(c.procs, i)
	c.mu.Unlock()
	// ip netns exec execs the helper, so the signal reaches it.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
}

// waitWhole waits until every running helper sees every running helper.
func (c *cluster) waitWhole(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.mu.Lock()
		whole := true
		for i := range c.procs {
			if c.members[i] != len(c.procs) {
				whole = false
			}
		}
		state := fmt.Sprint(c.members)
		c.mu.Unlock()
		if whole {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the helpers did not all see each other: %s", state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *cluster) owner() int {
	var live []Node
	for _, n := range c.names {
		live = append(live, Node{Name: n, Interfaces: map[string][]netip.Prefix{"eth0": {netip.MustParsePrefix("192.0.2.0/24")}}})
	}
	o, _ := Owner(Address{IP: c.vip, Advertisements: []Advertisement{{}}}, live)
	return slices.Index(c.names, o)
}

type reply struct {
	at  time.Time
	mac string
}

// probe sends an ARP request for the address every 10ms from the client
// and delivers the replies until ctx ends.
func (c *cluster) probe(t *testing.T, ctx context.Context) <-chan reply {
	t.Helper()
	type result struct {
		cl  *arp.Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies in the namespace
		f, err := os.Open("/var/run/netns/" + c.client)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: err}
			return
		}
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			done <- result{err: err}
			return
		}
		cl, err := arp.Dial(ifi)
		done <- result{cl, err}
	}()
	res := <-done
	if res.err != nil {
		t.Fatalf("prober: %v", res.err)
	}
	cl := res.cl
	replies := make(chan reply, 4096)
	go func() {
		<-ctx.Done()
		cl.Close()
	}()
	go func() {
		for {
			p, _, err := cl.Read()
			if err != nil {
				close(replies)
				return
			}
			if p.Operation == arp.OperationReply && p.SenderIP == c.vip {
				select {
				case replies <- reply{time.Now(), p.SenderHardwareAddr.String()}:
				default:
				}
			}
		}
	}()
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = cl.Request(c.vip)
			}
		}
	}()
	return replies
}

// until reads replies until one from mac arrives after since, and returns
// its time.
func until(t *testing.T, replies <-chan reply, mac string, since time.Time, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case r, ok := <-replies:
			if !ok {
				t.Fatal("prober stopped")
			}
			if r.mac == mac && r.at.After(since) {
				return r.at
			}
		case <-deadline:
			t.Fatalf("no ARP reply from %s within %v", mac, timeout)
		}
	}
}

func TestFailover(t *testing.T) {
	trials := 5
	if s := os.Getenv("PORTICO_FAILOVER_TRIALS"); s != "" {
		trials, _ = strconv.Atoi(s)
	}
	c := newCluster(t, 3)
	for i := range c.names {
		c.start(t, i)
	}
	c.waitWhole(t)
	owner := c.owner()
	// Who takes over when the owner goes: the owner among the other two.
	var rest []Node
	for i, n := range c.names {
		if i != owner {
			rest = append(rest, Node{Name: n, Interfaces: map[string][]netip.Prefix{"eth0": {netip.MustParsePrefix("192.0.2.0/24")}}})
		}
	}
	next, _ := Owner(Address{IP: c.vip, Advertisements: []Advertisement{{}}}, rest)
	heir := slices.Index(c.names, next)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	replies := c.probe(t, ctx)
	until(t, replies, c.macs[owner], time.Now(), 10*time.Second)

	var cut, graceful []time.Duration
	for range trials {
		// The owner's link is cut: only failure detection can tell.
		at := time.Now()
		run(t, "ip", "-n", c.client, "link", "set", fmt.Sprintf("p%d", owner), "down")
		cut = append(cut, until(t, replies, c.macs[heir], at, 10*time.Second).Sub(at))
		run(t, "ip", "-n", c.client, "link", "set", fmt.Sprintf("p%d", owner), "up")
		c.waitWhole(t)
		until(t, replies, c.macs[owner], time.Now(), 10*time.Second)

		// The owner's speaker stops: it leaves, and the heir takes over.
		at = time.Now()
		go c.stop(t, owner)
		graceful = append(graceful, until(t, replies, c.macs[heir], at, 10*time.Second).Sub(at))
		for {
			c.mu.Lock()
			_, running := c.procs[owner]
			c.mu.Unlock()
			if !running {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		c.start(t, owner)
		c.waitWhole(t)
		until(t, replies, c.macs[owner], time.Now(), 10*time.Second)
	}
	// A speaker that starts claims nothing before it has joined the
	// others: the third node, which owns nothing, restarts, and no
	// reply may come from it.
	third := 3 - owner - heir
	c.stop(t, third)
	c.waitWhole(t)
	at := time.Now()
	c.start(t, third)
	c.waitWhole(t)
	time.Sleep(500 * time.Millisecond)
drain:
	for {
		select {
		case r := <-replies:
			if r.mac == c.macs[third] && r.at.After(at) {
				t.Errorf("%s answered for the address while starting, though %s owns it", c.names[third], c.names[owner])
			}
		default:
			break drain
		}
	}

	t.Logf("owner's link cut: time to the first ARP reply from the new owner %s", summary(cut))
	t.Logf("owner's speaker stopped (SIGTERM): %s", summary(graceful))
}

func summary(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	pct := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	for i := range s {
		s[i] = s[i].Round(time.Millisecond)
	}
	return fmt.Sprintf("over %d trials: p50 %v, p99 %v, max %v", len(s), pct(0.5), pct(0.99), s[len(s)-1])
}
