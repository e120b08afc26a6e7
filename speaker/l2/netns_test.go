package l2

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/speaker"
	"github.com/portico-lb/portico/speaker/member"
)

// The namespace tests build, with no Kubernetes at all, a LAN of two
// namespaces joined by a bridge:
//
//	client ns: br0 192.0.2.1/24 2001:db8::1/64, ports pa and pb
//	node ns:   va 192.0.2.11/24 (02:00:00:00:00:0a) -- pa
//	           vb 192.0.2.12/24 (02:00:00:00:00:0b) -- pb
//
// Responders run in the node namespace, one on va and one on vb, so that
// two "nodes" with different MACs share the LAN. The client checks them
// with the tools a user would use: arping, ndisc6, ip neigh.

const (
	macA = "02:00:00:00:00:0a"
	macB = "02:00:00:00:00:0b"
)

var (
	vipA  = netip.MustParseAddr("192.0.2.100")
	vipB  = netip.MustParseAddr("192.0.2.101")
	vip6A = netip.MustParseAddr("2001:db8::100")
	vip6B = netip.MustParseAddr("2001:db8::101")
)

type lab struct {
	client, node string
}

// needNetns fails under CI (CI=true) and skips elsewhere when the tests
// cannot run: not root, or the tools are missing and cannot be installed.
func needNetns(t *testing.T) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("namespace tests need root (network namespaces, raw sockets)")
		return
	}
	var missing []string
	for tool, pkg := range map[string]string{"arping": "iputils-arping", "ndisc6": "ndisc6", "ip": "iproute2", "ping": "iputils-ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		t.Logf("installing %v", missing)
		install := exec.Command("sh", "-c", "apt-get update -qq && apt-get install -y -qq "+strings.Join(missing, " "))
		install.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := install.CombinedOutput(); err != nil {
			fail("namespace tests need %v and installing them failed: %v\n%s", missing, err, out)
		}
	}
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newLab(t *testing.T) *lab {
	needNetns(t)
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	l := &lab{client: "portico-cli-" + id, node: "portico-node-" + id}
	for _, ns := range []string{l.client, l.node} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		// No duplicate address detection: addresses are usable at once.
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	c := func(args ...string) { run(t, append([]string{"ip", "-n", l.client}, args...)...) }
	n := func(args ...string) { run(t, append([]string{"ip", "-n", l.node}, args...)...) }
	// A bridge as Linux makes it by default, multicast snooping on, as on
	// the lab's LAN.
	c("link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
	for _, v := range []struct{ node, client, mac, v4, v6 string }{
		{"va", "pa", macA, "192.0.2.11/24", "2001:db8::11/64"},
		{"vb", "pb", macB, "192.0.2.12/24", "2001:db8::12/64"},
	} {
		run(t, "ip", "link", "add", v.node, "netns", l.node, "address", v.mac, "type", "veth", "peer", "name", v.client, "netns", l.client)
		c("link", "set", v.client, "master", "br0", "up")
		n("addr", "add", v.v4, "dev", v.node)
		n("addr", "add", v.v6, "dev", v.node, "nodad")
		n("link", "set", v.node, "up")
	}
	c("addr", "add", "192.0.2.1/24", "dev", "br0")
	c("addr", "add", "2001:db8::1/64", "dev", "br0", "nodad")
	c("link", "set", "br0", "up")
	n("link", "set", "lo", "up")
	// NDP needs the link-local addresses to be ready, and nothing works
	// before the bridge has carrier.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := run(t, "ip", "-n", l.client, "link", "show", "dev", "br0")
		if strings.Contains(out, "LOWER_UP") && !strings.Contains(out, "NO-CARRIER") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("br0 has no carrier:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, ns := range []struct{ name, dev string }{{l.node, "va"}, {l.node, "vb"}, {l.client, "br0"}} {
		for {
			out := run(t, "ip", "-n", ns.name, "-6", "addr", "show", "dev", ns.dev, "scope", "link")
			if strings.Contains(out, "fe80") && !strings.Contains(out, "tentative") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s got no usable link-local address:\n%s", ns.dev, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return l
}

// inNode runs f on a thread inside the node namespace. The thread keeps
// its lock and exits with f's goroutine, so it dies and no other goroutine
// ever runs in the namespace; sockets opened there stay in it.
func (l *lab) inNode(t *testing.T, f func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open("/var/run/netns/" + l.node)
		if err != nil {
			done <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns: %w", err)
			return
		}
		f()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("entering %s: %v", l.node, err)
	}
}

// listen starts a Responder on ifname inside the node namespace.
func (l *lab) listen(t *testing.T, ifname string, opts ResponderOptions) *Responder {
	t.Helper()
	var r *Responder
	var err error
	l.inNode(t, func() { r, err = Listen(ifname, opts) })
	if err != nil {
		t.Fatalf("Listen(%s): %v", ifname, err)
	}
	t.Cleanup(r.Close)
	return r
}

func (l *lab) exec(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", l.client}, args...)...).CombinedOutput()
	return string(out), err
}

var macRE = regexp.MustCompile(`(?i)([0-9a-f]{2}(:[0-9a-f]{2}){5})`)

// arping returns the MACs of the replies the client got for ip.
func (l *lab) arping(t *testing.T, ip netip.Addr) []string {
	t.Helper()
	out, _ := l.exec(t, "arping", "-c", "3", "-w", "3", "-I", "br0", ip.String())
	var macs []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "reply from") {
			macs = append(macs, strings.ToLower(macRE.FindString(line)))
		}
	}
	t.Logf("arping %s: %q", ip, macs)
	return macs
}

// ndisc6 returns the target link-layer addresses the client got for ip.
func (l *lab) ndisc6(t *testing.T, ip netip.Addr) []string {
	t.Helper()
	out, _ := l.exec(t, "ndisc6", "-n", "-r", "3", "-w", "500", ip.String(), "br0")
	var macs []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "Target link-layer address") {
			macs = append(macs, strings.ToLower(macRE.FindString(line)))
		}
	}
	t.Logf("ndisc6 %s: %q", ip, macs)
	return macs
}

func allOf(macs []string, want string) bool {
	if len(macs) == 0 {
		return false
	}
	for _, m := range macs {
		if m != want {
			return false
		}
	}
	return true
}

// TestResponderAnswersOwnedOnly: arping and ndisc6 get answers for owned
// addresses only, from the owner's MAC only, and stop getting them the
// moment the address is dropped.
func TestResponderAnswersOwnedOnly(t *testing.T) {
	l := newLab(t)
	a := l.listen(t, "va", ResponderOptions{})
	b := l.listen(t, "vb", ResponderOptions{})
	a.SetAddresses([]netip.Addr{vipA, vip6A})
	b.SetAddresses([]netip.Addr{vipB, vip6B})

	if got := l.arping(t, vipA); !allOf(got, macA) {
		t.Errorf("arping %s: replies from %v, want only from %s", vipA, got, macA)
	}
	if got := l.arping(t, vipB); !allOf(got, macB) {
		t.Errorf("arping %s: replies from %v, want only from %s", vipB, got, macB)
	}
	if got := l.ndisc6(t, vip6A); !allOf(got, macA) {
		t.Errorf("ndisc6 %s: answers from %v, want only from %s", vip6A, got, macA)
	}
	if got := l.ndisc6(t, vip6B); !allOf(got, macB) {
		t.Errorf("ndisc6 %s: answers from %v, want only from %s", vip6B, got, macB)
	}
	// Nobody owns these.
	if got := l.arping(t, netip.MustParseAddr("192.0.2.102")); len(got) != 0 {
		t.Errorf("arping for an unowned address got replies from %v", got)
	}
	if got := l.ndisc6(t, netip.MustParseAddr("2001:db8::102")); len(got) != 0 {
		t.Errorf("ndisc6 for an unowned address got answers from %v", got)
	}
	// Dropped: silence at once.
	a.SetAddresses(nil)
	if got := l.arping(t, vipA); len(got) != 0 {
		t.Errorf("arping %s after it was dropped: replies from %v", vipA, got)
	}
	if got := l.ndisc6(t, vip6A); len(got) != 0 {
		t.Errorf("ndisc6 %s after it was dropped: answers from %v", vip6A, got)
	}
}

// TestGratuitousMovesNeighbour: the client learns an address's MAC from
// the first owner; when a second owner takes over, its gratuitous ARP and
// unsolicited NA replace the client's neighbour entry without the client
// asking again.
func TestGratuitousMovesNeighbour(t *testing.T) {
	l := newLab(t)
	a := l.listen(t, "va", ResponderOptions{})
	b := l.listen(t, "vb", ResponderOptions{})
	a.SetAddresses([]netip.Addr{vipA, vip6A})

	// Make the client resolve both addresses through the kernel, so they
	// are in its neighbour table with A's MAC. Nothing answers the pings.
	l.exec(t, "ping", "-c", "1", "-W", "1", vipA.String())
	l.exec(t, "ping", "-6", "-c", "1", "-W", "1", vip6A.String())
	for _, ip := range []netip.Addr{vipA, vip6A} {
		if mac := l.neighbour(t, ip); mac != macA {
			t.Fatalf("client's neighbour entry for %s has MAC %q, want %s", ip, mac, macA)
		}
	}

	// Owner change: A lets go, B takes over and announces.
	a.SetAddresses(nil)
	b.SetAddresses([]netip.Addr{vipA, vip6A})
	for _, ip := range []netip.Addr{vipA, vip6A} {
		deadline := time.Now().Add(3 * time.Second)
		for {
			mac := l.neighbour(t, ip)
			if mac == macB {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("client's neighbour entry for %s still has MAC %q 3s after B took over, want %s", ip, mac, macB)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestReannounce: after another node claimed an address and let go, the
// owner's Reannounce brings the client's neighbour entry back to it.
func TestReannounce(t *testing.T) {
	l := newLab(t)
	// One gratuitous packet only, so that nothing but Reannounce can
	// bring the entry back.
	a := l.listen(t, "va", ResponderOptions{Gratuitous: []time.Duration{0}})
	b := l.listen(t, "vb", ResponderOptions{})
	a.SetAddresses([]netip.Addr{vipA, vip6A})
	l.exec(t, "ping", "-c", "1", "-W", "1", vipA.String())
	l.exec(t, "ping", "-6", "-c", "1", "-W", "1", vip6A.String())
	// B claims the addresses, as a node cut off from the others would, then
	// lets go once it is back; A never stopped owning them.
	b.SetAddresses([]netip.Addr{vipA, vip6A})
	l.waitNeighbour(t, macB, vipA, vip6A)
	b.SetAddresses(nil)
	time.Sleep(1100 * time.Millisecond) // past the neighbour table's lock time
	a.Reannounce()
	l.waitNeighbour(t, macA, vipA, vip6A)
}

func (l *lab) waitNeighbour(t *testing.T, mac string, ips ...netip.Addr) {
	t.Helper()
	for _, ip := range ips {
		deadline := time.Now().Add(3 * time.Second)
		for {
			got := l.neighbour(t, ip)
			if got == mac {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("client's neighbour entry for %s has MAC %q, want %s", ip, got, mac)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestRefresh: with a refresh period, the owner keeps announcing.
func TestRefresh(t *testing.T) {
	l := newLab(t)
	before := counter(gratuitousSent.WithLabelValues("ipv4"))
	a := l.listen(t, "va", ResponderOptions{Gratuitous: []time.Duration{0}, Refresh: 100 * time.Millisecond})
	a.SetAddresses([]netip.Addr{vipA})
	time.Sleep(550 * time.Millisecond)
	a.SetAddresses(nil)
	sent := counter(gratuitousSent.WithLabelValues("ipv4")) - before
	// Two forms per announcement, at 0, 100, ..., 500 ms.
	if sent < 8 {
		t.Fatalf("%v gratuitous ARP packets in 550ms with a 100ms refresh, want at least 8", sent)
	}
	time.Sleep(300 * time.Millisecond)
	if after := counter(gratuitousSent.WithLabelValues("ipv4")) - before; after > sent+2 {
		t.Fatalf("gratuitous ARP kept going after the address was dropped: %v then %v", sent, after)
	}
}

func (l *lab) neighbour(t *testing.T, ip netip.Addr) string {
	t.Helper()
	out, err := l.exec(t, "ip", "neigh", "show", ip.String(), "dev", "br0")
	if err != nil {
		t.Fatalf("ip neigh: %v\n%s", err, out)
	}
	if i := strings.Index(out, "lladdr "); i >= 0 {
		return strings.ToLower(strings.Fields(out[i+len("lladdr "):])[0])
	}
	return ""
}

func counter(c interface {
	Write(*dto.Metric) error
}) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// TestResponderWithoutIPv4: an interface with no IPv4 address still
// answers NDP, and says it cannot answer ARP, so the announcer can try
// again once the address is there.
func TestResponderWithoutIPv4(t *testing.T) {
	l := newLab(t)
	run(t, "ip", "-n", l.node, "-4", "addr", "flush", "dev", "vb")
	r := l.listen(t, "vb", ResponderOptions{})
	if r.ServesARP() || !r.ServesNDP() {
		t.Fatalf("without IPv4: ServesARP %v, ServesNDP %v; want false, true", r.ServesARP(), r.ServesNDP())
	}
	r.SetAddresses([]netip.Addr{vip6B})
	if got := l.ndisc6(t, vip6B); !allOf(got, macB) {
		t.Errorf("ndisc6 %s: answers from %v, want only from %s", vip6B, got, macB)
	}
	run(t, "ip", "-n", l.node, "addr", "add", "192.0.2.12/24", "dev", "vb")
	again := l.listen(t, "vb", ResponderOptions{})
	if !again.ServesARP() || !again.ServesNDP() {
		t.Fatalf("with IPv4 back: ServesARP %v, ServesNDP %v; want both", again.ServesARP(), again.ServesNDP())
	}
}

// TestAnnouncerReopens: a responder lacking a protocol its addresses need
// is opened again when its interface's addresses change, or after
// ReopenEvery, not on every sync; and when the interfaces cannot be
// listed, the addresses stay answered and reported.
func TestAnnouncerReopens(t *testing.T) {
	l := newLab(t)
	run(t, "ip", "-n", l.node, "-4", "addr", "flush", "dev", "vb")

	onVB := adv([]string{"lan"})
	onVB.Spec.Interfaces = []v1alpha1.InterfaceName{"vb"}
	st := state("n1", []speaker.Service{svc("a", "lan", vipB.String())}, onVB)
	st.Nodes = map[string]*corev1.Node{"n1": st.Nodes["n1"]}
	st.Members = []member.Member{{Name: "n1", Interfaces: member.Interfaces{"vb": {lan}}}}

	a := NewAnnouncer(ResponderOptions{}, nil)
	t.Cleanup(a.Close)
	opens := 0
	a.listen = func(ifname string, o ResponderOptions) (*Responder, error) {
		opens++
		return Listen(ifname, o)
	}
	clock := time.Now()
	a.now = func() time.Time { return clock }
	announce := func() ([]speaker.Announcement, error) {
		var got []speaker.Announcement
		var err error
		l.inNode(t, func() { got, err = a.Announce(context.Background(), st) })
		return got, err
	}

	for i := range 4 {
		got, err := announce()
		if err == nil || len(got) != 0 {
			t.Fatalf("sync %d without IPv4 on vb: %v, %v; want nothing announced and an error", i, got, err)
		}
	}
	if opens != 1 {
		t.Fatalf("4 syncs opened the responder %d times, want once", opens)
	}
	clock = clock.Add(ReopenEvery)
	if _, err := announce(); err == nil || opens != 2 {
		t.Fatalf("after ReopenEvery: %d opens (want 2), err %v", opens, err)
	}

	changes := counter(ownerChanges)
	run(t, "ip", "-n", l.node, "addr", "add", "192.0.2.12/24", "dev", "vb")
	got, err := announce()
	if err != nil || opens != 3 || len(got) != 1 || got[0].IP != vipB {
		t.Fatalf("with IPv4 back on vb: %v, %v after %d opens; want %s announced after 3", got, err, opens, vipB)
	}
	if n := counter(ownerChanges) - changes; n != 1 {
		t.Errorf("becoming the owner of %s counted %v owner changes, want 1", vipB, n)
	}
	if macs := l.arping(t, vipB); !allOf(macs, macB) {
		t.Fatalf("arping %s: answers from %v, want only from %s", vipB, macs, macB)
	}

	a.interfaces = func() (map[string][]netip.Prefix, error) { return nil, errors.New("netlink: no buffer space") }
	again, err := announce()
	if err == nil || !reflect.DeepEqual(again, got) {
		t.Fatalf("interfaces not listed: %v, %v; want %v reported and an error", again, err, got)
	}
	if macs := l.arping(t, vipB); !allOf(macs, macB) {
		t.Fatalf("arping %s with the interfaces not listed: answers from %v, want only from %s", vipB, macs, macB)
	}
}
