package member

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// watcher records when each node last saw which members.
type watcher struct {
	mu   sync.Mutex
	seen map[string][]string
	cond *sync.Cond
}

func newWatcher() *watcher {
	w := &watcher{seen: map[string][]string{}}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *watcher) onChange(node string) func([]Member) {
	return func(ms []Member) {
		var names []string
		for _, m := range ms {
			names = append(names, m.Name)
		}
		w.mu.Lock()
		w.seen[node] = names
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

// wait blocks until every node in nodes sees exactly want, or fails.
func (w *watcher) wait(t *testing.T, nodes []string, want []string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	go func() { time.Sleep(timeout); w.cond.Broadcast() }()
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		ok := true
		for _, n := range nodes {
			if !slices.Equal(w.seen[n], want) {
				ok = false
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: members seen %v, want %v on %v", timeout, w.seen, want, nodes)
		}
		w.cond.Wait()
	}
}

func startCluster(t *testing.T, w *watcher, n int, port int) []*List {
	t.Helper()
	var lists []*List
	for i := range n {
		name := fmt.Sprintf("node-%d", i)
		l, err := Start(Config{
			Node:       name,
			BindAddr:   netip.MustParseAddr("127.0.0.1"),
			Port:       port + i,
			Key:        testKey,
			Interfaces: Interfaces{"eth0": {netip.MustParsePrefix(fmt.Sprintf("192.0.2.%d/24", i+1)), netip.MustParsePrefix("2001:db8::/64")}},
			OnChange:   w.onChange(name),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Leave(time.Second) })
		lists = append(lists, l)
	}
	// The first has no one to join, but must say so.
	if _, err := lists[0].Join(nil); err != nil {
		t.Fatal(err)
	}
	for _, l := range lists[1:] {
		if _, err := l.Join([]string{fmt.Sprintf("127.0.0.1:%d", port)}); err != nil {
			t.Fatal(err)
		}
	}
	return lists
}

// TestDeadMemberDetected kills a member (no leave message) and waits for
// both others to drop it. It reports the detection times of a few trials;
// it asserts only that detection happens.
func TestDeadMemberDetected(t *testing.T) {
	const trials = 5
	var times []time.Duration
	for trial := range trials {
		w := newWatcher()
		lists := startCluster(t, w, 3, 17946+10*trial)
		all := []string{"node-0", "node-1", "node-2"}
		w.wait(t, all, all, 5*time.Second)

		// Interfaces travel with the members.
		for _, m := range lists[0].Members() {
			eth0 := m.Interfaces["eth0"]
			if len(m.Interfaces) != 1 || len(eth0) != 2 || !eth0[0].Contains(netip.MustParseAddr("192.0.2.200")) {
				t.Fatalf("member %s has interfaces %v", m.Name, m.Interfaces)
			}
		}

		// node-2 dies without a word: it answers no probe.
		start := time.Now()
		lists[2].crash(t)
		w.wait(t, all[:2], all[:2], 10*time.Second)
		times = append(times, time.Since(start).Round(time.Millisecond))
	}
	slices.Sort(times)
	t.Logf("a killed member was seen dead by both others after %v (min %v, median %v, max %v; probe %v, probe timeout %v, suspicion ×%d)",
		times, times[0], times[len(times)/2], times[len(times)-1], DefaultProbeInterval, DefaultProbeTimeout, DefaultSuspicionMult)
}

func TestLeaveSeenAtOnce(t *testing.T) {
	w := newWatcher()
	lists := startCluster(t, w, 3, 18946)
	all := []string{"node-0", "node-1", "node-2"}
	w.wait(t, all, all, 5*time.Second)
	start := time.Now()
	if err := lists[2].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	left := time.Since(start)
	w.wait(t, all[:2], all[:2], 5*time.Second)
	// The gauge is the process's: all three set it, the last two to 2.
	if got := testutil.ToFloat64(members.WithLabelValues("alive")); got != 2 {
		t.Errorf(`portico_speaker_memberlist_members{state="alive"} = %v, want 2`, got)
	}
	t.Logf("a leaving member was seen gone by both others %v after Leave began (Leave returned after %v)", time.Since(start).Round(time.Millisecond), left.Round(time.Millisecond))
}

// TestNoChangesBeforeJoin: a starting member tells nothing until it has
// tried to join the others, so that it never reports itself alone.
func TestNoChangesBeforeJoin(t *testing.T) {
	w := newWatcher()
	startCluster(t, w, 2, 16946)
	called := make(chan []Member, 8)
	late, err := Start(Config{Node: "late", BindAddr: netip.MustParseAddr("127.0.0.1"), Port: 16956, Key: testKey,
		OnChange: func(ms []Member) { called <- ms }})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Leave(time.Second)
	select {
	case ms := <-called:
		t.Fatalf("OnChange(%v) before any Join", ms)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := late.Join([]string{"127.0.0.1:16946"}); err != nil {
		t.Fatal(err)
	}
	select {
	case ms := <-called:
		if len(ms) != 3 {
			t.Fatalf("first OnChange after Join: %d members, want all 3", len(ms))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no OnChange after Join")
	}
}

// TestWrongKeyCannotJoin: gossip is encrypted; a speaker without the key
// stays out.
func TestWrongKeyCannotJoin(t *testing.T) {
	w := newWatcher()
	startCluster(t, w, 1, 19946)
	stranger, err := Start(Config{Node: "stranger", BindAddr: netip.MustParseAddr("127.0.0.1"), Port: 19956, Key: []byte("another key of thirty-two bytes!")})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Leave(time.Second)
	if _, err := stranger.Join([]string{"127.0.0.1:19946"}); err == nil {
		t.Fatal("a speaker with the wrong key joined")
	}
}

func TestInterfacesRoundTrip(t *testing.T) {
	in := Interfaces{
		"eth0":    {netip.MustParsePrefix("192.0.2.7/24"), netip.MustParsePrefix("2001:db8:1::5/64")},
		"bond0.7": {netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		"eth1":    {},
	}
	b, dropped := EncodeInterfaces(in)
	if len(dropped) > 0 {
		t.Fatalf("dropped %v", dropped)
	}
	out, err := DecodeInterfaces(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "bond0.7=10.0.0.0/8,fd00::/8 eth0=192.0.2.0/24,2001:db8:1::/64 eth1=" {
		t.Fatalf("round trip gave %q", out.String())
	}
}

// TestTooManyInterfaces: what does not fit is left out, not the whole.
func TestTooManyInterfaces(t *testing.T) {
	many := Interfaces{}
	for i := range 40 {
		many[fmt.Sprintf("eth%02d", i)] = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i)}), 64)}
	}
	b, dropped := EncodeInterfaces(many)
	if len(b) > 512 || len(dropped) == 0 {
		t.Fatalf("%d bytes, dropped %v", len(b), dropped)
	}
	out, err := DecodeInterfaces(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out)+len(dropped) != 40 || out["eth00"] == nil {
		t.Fatalf("kept %d, dropped %d of 40; eth00 kept: %v", len(out), len(dropped), out["eth00"] != nil)
	}
}

func FuzzDecodeInterfaces(f *testing.F) {
	b, _ := EncodeInterfaces(Interfaces{"eth0": {netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/64")}})
	f.Add(b)
	f.Add([]byte{2, 4, 'e', 't', 'h', '0', 1, 0x80 | 64, 1})
	f.Add([]byte{2, 1, 'x', 1, 33, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := DecodeInterfaces(b)
		if err != nil {
			return
		}
		again, dropped := EncodeInterfaces(out)
		if len(dropped) > 0 {
			return
		}
		back, err := DecodeInterfaces(again)
		if err != nil || back.String() != out.String() {
			t.Fatalf("round trip of %v: %v, %v", out, back, err)
		}
	})
}

// crash stops l the way a SIGKILL would: no leave message, sockets gone.
func (l *List) crash(t *testing.T) {
	l.left.Store(true)
	if err := l.ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	close(l.stop)
	l.wg.Wait()
}
