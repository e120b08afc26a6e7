//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/e2e/lab"
)

// How the benchmark probes and how long it lets things take. None of these
// is an assertion about speed: a failover that does not happen within
// failoverLimit is a broken failover, not a slow one.
const (
	probeEvery    = 10 * time.Millisecond
	failoverLimit = 15 * time.Second
	settleLimit   = 90 * time.Second
	// Settled: only the expected owner answered the probes for this long.
	settledFor = 1500 * time.Millisecond
)

// BenchmarkFailover measures layer 2 failover as a client on the LAN sees
// it: the client asks for the Service's address every 10 ms (ARP for the
// IPv4 one, NDP for the IPv6 one), the owner node fails, and each trial
// records the time from the failure to the first answer to a probe from
// another node's MAC.
//
//   - node-cut: the owner's switch port goes down (its cable is pulled).
//   - graceful-stop: the owner's speaker pod is deleted, so the node agent
//     SIGTERMs the speaker, which leaves memberlist first. Deleting the pod
//     rather than signalling the process keeps the node agent's restart
//     back-off (1 s doubling to 30 s for a container that keeps dying) out
//     of the run: the DaemonSet makes a fresh pod each time.
//
// Each runs for the IPv4 address, then (…-ipv6) for the IPv6 one, whose
// owner may be another node. Between trials the lab goes back to its steady
// state (the first owner answers alone and every speaker sees all the
// others) so that trials do not overlap. Run with -benchtime=20x (or more)
// for 20 trials each; the figures are p50-ms, p99-ms and max-ms per
// scenario.
func BenchmarkFailover(b *testing.B) {
	installPortico(b)
	plan, err := cfg.Plan()
	if err != nil {
		b.Fatal(err)
	}
	ns := namespace(b)
	kubectl(b, echoDeployment, "apply", "-n", ns, "-f", "-")
	kubectl(b, echoLoadBalancer, "apply", "-n", ns, "-f", "-")
	nodes, nodeOf := nodeMACs(b, plan)
	for _, vip := range lbIPs(b, ns, "echo-lb") {
		suffix := ""
		if strings.Contains(vip, ":") {
			suffix = "-ipv6"
		}
		benchmarkFailover(b, plan, nodes, nodeOf, vip, suffix)
	}
}

func benchmarkFailover(b *testing.B, plan lab.Plan, nodes []string, nodeOf map[string]string, vip, suffix string) {
	p := startProber(b, plan, vip)
	// The owner is whichever node answers once things are steady; with
	// every speaker alive it is the same node after every trial, since
	// the owner is a pure function of (IP, live members).
	ownerMAC := settle(b, p, "", plan, nodes)
	owner, ok := nodeOf[ownerMAC]
	if !ok {
		b.Fatalf("%s is answered by %s, which is no node's MAC (%v)", vip, ownerMAC, nodeOf)
	}
	fmt.Printf("failover: %s owned by %s (%s); nodes %v\n", vip, owner, ownerMAC, nodeOf)

	b.Run("node-cut"+suffix, func(b *testing.B) {
		port := func(state string) {
			out, err := exec.Command("ip", "netns", "exec", plan.Prefix+"lan", "ip", "link", "set", "v-"+owner, state).CombinedOutput()
			if err != nil {
				b.Fatalf("setting %s's switch port %s: %v: %s", owner, state, err, out)
			}
		}
		b.Cleanup(func() { port("up") })
		var took []time.Duration
		for b.Loop() {
			cut := time.Now()
			port("down")
			took = append(took, failedOver(b, p, cut, ownerMAC, nodeOf))
			port("up")
			settle(b, p, ownerMAC, plan, nodes)
		}
		report(b, "node-cut"+suffix, took)
	})

	b.Run("graceful-stop"+suffix, func(b *testing.B) {
		var took []time.Duration
		for b.Loop() {
			pod := speakerPod(b, owner, "")
			stop := time.Now()
			if err := cs.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
				b.Fatalf("deleting speaker pod %s: %v", pod.Name, err)
			}
			took = append(took, failedOver(b, p, stop, ownerMAC, nodeOf))
			speakerPod(b, owner, pod.UID) // the DaemonSet's replacement, Ready
			settle(b, p, ownerMAC, plan, nodes)
		}
		report(b, "graceful-stop"+suffix, took)
	})
}

// failedOver waits for the first answer to a probe, sent after since, from
// a node other than the one with oldMAC, and returns how long after since
// it came.
func failedOver(b testing.TB, p *prober, since time.Time, oldMAC string, nodeOf map[string]string) time.Duration {
	b.Helper()
	deadline := since.Add(failoverLimit)
	for time.Now().Before(deadline) {
		for _, r := range p.since(since) {
			if r.mac == oldMAC {
				continue
			}
			if _, ok := nodeOf[r.mac]; !ok {
				b.Fatalf("%s answered by %s, which is no node's MAC", p.vip, r.mac)
			}
			return r.at.Sub(since)
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.Fatalf("no node but %s answered %s within %s: replies since %v", oldMAC, p.vip, failoverLimit, summarise(p.since(since)))
	return 0
}

// settle waits for the lab's steady state: every speaker counts every node
// as a member, and for settledFor only one MAC (want, when given) answered
// the probes, and answered most of them. It returns that MAC.
func settle(b testing.TB, p *prober, want string, plan lab.Plan, nodes []string) string {
	b.Helper()
	deadline := time.Now().Add(settleLimit)
	var why error
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		if why = allMembers(plan, nodes); why != nil {
			continue
		}
		from := time.Now().Add(-settledFor)
		rs := p.since(from)
		macs := map[string]int{}
		for _, r := range rs {
			macs[r.mac]++
		}
		switch {
		case len(macs) != 1:
			why = fmt.Errorf("answers from %v in the last %s", macs, settledFor)
		case want != "" && macs[want] == 0:
			why = fmt.Errorf("answers from %v, want %s", macs, want)
		case len(rs) < int(settledFor/probeEvery)/2:
			why = fmt.Errorf("only %d answers in the last %s", len(rs), settledFor)
		case p.started().After(from):
			why = errors.New("probing for too short a time")
		default:
			return rs[0].mac
		}
	}
	b.Fatalf("%s did not settle within %s: %v", p.vip, settleLimit, why)
	return ""
}

// allMembers checks, through each speaker's metrics endpoint as a
// monitoring system would, that every speaker sees every node: after a cut
// link comes back the two sides must have merged before the next trial.
func allMembers(plan lab.Plan, nodes []string) error {
	want := fmt.Sprintf(`portico_speaker_memberlist_members{state="alive"} %d`, len(nodes))
	for _, n := range nodes {
		out, err := exec.Command("ip", "netns", "exec", plan.Prefix+n, "curl", "-sS", "-m", "2", "http://127.0.0.1:7474/metrics").CombinedOutput()
		if err != nil {
			return fmt.Errorf("metrics of the speaker on %s: %v: %s", n, err, out)
		}
		if !strings.Contains(string(out), "\n"+want+"\n") {
			return fmt.Errorf("the speaker on %s does not report %q", n, want)
		}
	}
	return nil
}

// speakerPod waits for the Ready speaker pod on node whose UID is not
// notUID and returns it.
func speakerPod(b testing.TB, node string, notUID types.UID) corev1.Pod {
	b.Helper()
	var pod corev1.Pod
	eventually(b, 60*time.Second, "a Ready speaker pod on "+node, func() error {
		l, err := cs.CoreV1().Pods("portico-system").List(context.Background(), metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/name=portico-speaker", FieldSelector: "spec.nodeName=" + node})
		if err != nil {
			return err
		}
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil && podReady(&p) && p.UID != notUID {
				pod = p
				return nil
			}
		}
		return fmt.Errorf("%d speaker pods on %s, none new and Ready", len(l.Items), node)
	})
	return pod
}

// report prints the percentiles of one scenario and reports them as the
// benchmark's metrics. p99 of fewer than 100 trials is the maximum.
func report(b *testing.B, scenario string, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	s := slices.Clone(took)
	slices.Sort(s)
	pct := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1 // nearest rank
		return s[max(0, min(i, len(s)-1))]
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(pct(0.50)), "p50-ms")
	b.ReportMetric(ms(pct(0.99)), "p99-ms")
	b.ReportMetric(ms(s[len(s)-1]), "max-ms")
	fmt.Printf("failover %-13s trials=%d p50=%v p99=%v max=%v (all: %v)\n", scenario, len(s),
		pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), rounded(took))
}

func rounded(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// A reply is one answer to one of the prober's requests.
type reply struct {
	at  time.Time
	mac string
}

// prober asks for vip every probeEvery from inside a network namespace, by
// ARP or NDP as its family needs, and keeps every answer. One long-lived
// socket, not a process per probe, so that 10 ms means 10 ms.
type prober struct {
	vip   netip.Addr
	start time.Time
	wg    sync.WaitGroup

	mu      sync.Mutex
	replies []reply
}

// asker asks the LAN who has one address and reads the answers.
type asker interface {
	ask() error
	// answer returns the MAC of the next answer to one of our requests;
	// gratuitous announcements are skipped, as they would time the new
	// owner's announcement, not whether a client gets an answer.
	answer(deadline time.Time) (string, error)
	close()
}

// nodeMACs returns the lab's node names and, for each MAC of a node's LAN
// interface, that node's name.
func nodeMACs(t testing.TB, plan lab.Plan) ([]string, map[string]string) {
	t.Helper()
	var nodes []string
	nodeOf := map[string]string{}
	for _, h := range plan.Nodes {
		out, err := exec.Command("ip", "netns", "exec", plan.Prefix+h.Name, "cat", "/sys/class/net/eth0/address").CombinedOutput()
		if err != nil {
			t.Fatalf("MAC of %s: %v: %s", h.Name, err, out)
		}
		nodes = append(nodes, h.Name)
		nodeOf[strings.ToLower(strings.TrimSpace(string(out)))] = h.Name
	}
	return nodes, nodeOf
}

// startProber probes vip from the lab's client until the test ends.
func startProber(t testing.TB, plan lab.Plan, vip string) *prober {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := probe(ctx, "/run/netns/"+plan.Prefix+"client", "eth0", vip)
	if err != nil {
		cancel()
		t.Fatalf("prober in the client namespace: %v", err)
	}
	t.Cleanup(func() { cancel(); p.wait() })
	return p
}

// probe opens an ARP or NDP socket on dev in the network namespace at
// netnsPath and probes vip until ctx ends.
func probe(ctx context.Context, netnsPath, dev, vip string) (*prober, error) {
	ip, err := netip.ParseAddr(vip)
	if err != nil {
		return nil, err
	}
	var a asker
	// A socket belongs to the network namespace it was made in, whatever
	// thread uses it later; so only its making needs the client's netns.
	err = inNetns(netnsPath, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		if ip.Is4() {
			a, err = dialARP(ifi, ip)
		} else {
			a, err = dialNDP(ifi, ip)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	p := &prober{vip: ip, start: time.Now()}
	p.wg.Add(2)
	go func() { // owns the socket's reading side, and closes it
		defer p.wg.Done()
		defer a.close()
		for ctx.Err() == nil {
			mac, err := a.answer(time.Now().Add(200 * time.Millisecond))
			if err != nil {
				continue
			}
			p.mu.Lock()
			p.replies = append(p.replies, reply{at: time.Now(), mac: mac})
			p.mu.Unlock()
		}
	}()
	go func() { // sends the requests
		defer p.wg.Done()
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for {
			_ = a.ask()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p, nil
}

func (p *prober) started() time.Time { return p.start }

func (p *prober) wait() { p.wg.Wait() }

// since returns the replies that came after t, oldest first.
func (p *prober) since(t time.Time) []reply {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, _ := slices.BinarySearchFunc(p.replies, t, func(r reply, t time.Time) int { return r.at.Compare(t) })
	return slices.Clone(p.replies[i:])
}

func summarise(rs []reply) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		m[r.mac]++
	}
	return m
}

// arpAsker asks by ARP.
type arpAsker struct {
	c  *arp.Client
	ip netip.Addr
}

func dialARP(ifi *net.Interface, ip netip.Addr) (asker, error) {
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, err
	}
	return &arpAsker{c: c, ip: ip}, nil
}

func (a *arpAsker) ask() error { return a.c.Request(a.ip) }
func (a *arpAsker) close()     { a.c.Close() }

func (a *arpAsker) answer(deadline time.Time) (string, error) {
	_ = a.c.SetReadDeadline(deadline)
	for {
		pkt, _, err := a.c.Read()
		if err != nil {
			return "", err
		}
		// Gratuitous ARP is broadcast; answers come to us.
		if pkt.Operation == arp.OperationReply && pkt.SenderIP == a.ip && bytes.Equal(pkt.TargetHardwareAddr, a.c.HardwareAddr()) {
			return strings.ToLower(pkt.SenderHardwareAddr.String()), nil
		}
	}
}

// ndpAsker asks by NDP: a neighbor solicitation to the address's
// solicited-node group, answered by a solicited advertisement. It has a
// socket of its own rather than an ndp.Conn, which names the interface
// by its name: that is resolved in the test's network namespace, not the
// client's.
type ndpAsker struct {
	pc  *ipv6.PacketConn
	ip  netip.Addr
	dst *net.IPAddr
	cm  *ipv6.ControlMessage
	ns  []byte
}

func dialNDP(ifi *net.Interface, ip netip.Addr) (asker, error) {
	snm, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return nil, err
	}
	ns, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: ip, Options: []ndp.Option{
		&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}})
	if err != nil {
		return nil, err
	}
	c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, err
	}
	pc := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := errors.Join(pc.SetICMPFilter(&f), pc.SetMulticastHopLimit(ndp.HopLimit)); err != nil {
		c.Close()
		return nil, err
	}
	return &ndpAsker{
		pc: pc, ip: ip, ns: ns,
		dst: &net.IPAddr{IP: snm.AsSlice(), Zone: strconv.Itoa(ifi.Index)},
		cm:  &ipv6.ControlMessage{HopLimit: ndp.HopLimit, IfIndex: ifi.Index},
	}, nil
}

func (a *ndpAsker) ask() error {
	_, err := a.pc.WriteTo(a.ns, a.cm, a.dst)
	return err
}

func (a *ndpAsker) close() { a.pc.Close() }

func (a *ndpAsker) answer(deadline time.Time) (string, error) {
	_ = a.pc.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, _, _, err := a.pc.ReadFrom(buf)
		if err != nil {
			return "", err
		}
		m, err := ndp.ParseMessage(buf[:n])
		if err != nil {
			continue
		}
		// Unsolicited advertisements (a new owner's) have Solicited unset.
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || !na.Solicited || na.TargetAddress != a.ip {
			continue
		}
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				return strings.ToLower(lla.Addr.String()), nil
			}
		}
	}
}

// inNetns runs f on a thread that is switched into the network namespace
// at path. The thread is never switched back: it stays locked and exits
// with its goroutine, so no other goroutine ever runs in that namespace.
func inNetns(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open %s: %w", path, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
