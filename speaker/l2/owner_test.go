package l2

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/portico-lb/portico/lbservice"
)

var (
	lan    = netip.MustParsePrefix("192.0.2.0/24")
	lan6   = netip.MustParsePrefix("2001:db8::/64")
	other  = netip.MustParsePrefix("198.51.100.0/24")
	vip    = netip.MustParseAddr("192.0.2.100")
	vip6   = netip.MustParseAddr("2001:db8::100")
	anyAdv = []Advertisement{{}}
)

// node has one interface, eth0, with the given prefixes.
func node(name string, subnets ...netip.Prefix) Node {
	return Node{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}, Interfaces: map[string][]netip.Prefix{"eth0": subnets}}
}

func names(ns []Node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

func sel(t *testing.T, s string) labels.Selector {
	t.Helper()
	out, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEligible covers every eligibility rule of DESIGN.md, one at a time.
func TestEligible(t *testing.T) {
	excluded := node("excluded", lan)
	excluded.Labels[lbservice.ExcludeLabel] = ""
	down := node("down", lan)
	down.NetworkUnavailable = true
	zoneA := node("a", lan)
	zoneA.Labels["zone"] = "a"
	zoneB := node("b", lan)
	zoneB.Labels["zone"] = "b"

	tests := []struct {
		name string
		addr Address
		live []Node
		want []string
	}{
		{"no advertisement selects the pool: nobody", Address{IP: vip}, []Node{node("n1", lan)}, nil},
		{"an advertisement without node selectors: every node", Address{IP: vip, Advertisements: anyAdv},
			[]Node{node("n1", lan), node("n2", lan)}, []string{"n1", "n2"}},
		{"node selector", Address{IP: vip, Advertisements: []Advertisement{{NodeSelectors: []labels.Selector{sel(t, "zone=a")}}}},
			[]Node{zoneA, zoneB}, []string{"a"}},
		{"node selectors of one advertisement are ORed", Address{IP: vip, Advertisements: []Advertisement{{NodeSelectors: []labels.Selector{sel(t, "zone=a"), sel(t, "zone=b")}}}},
			[]Node{zoneA, zoneB, node("c", lan)}, []string{"a", "b"}},
		{"several advertisements are ORed", Address{IP: vip, Advertisements: []Advertisement{
			{NodeSelectors: []labels.Selector{sel(t, "zone=a")}}, {NodeSelectors: []labels.Selector{sel(t, "zone=b")}}}},
			[]Node{zoneA, zoneB, node("c", lan)}, []string{"a", "b"}},
		{"exclusion label, any value", Address{IP: vip, Advertisements: anyAdv},
			[]Node{excluded, node("n1", lan)}, []string{"n1"}},
		{"NetworkUnavailable", Address{IP: vip, Advertisements: anyAdv},
			[]Node{down, node("n1", lan)}, []string{"n1"}},
		{"only nodes on the subnet when one is", Address{IP: vip, Advertisements: anyAdv},
			[]Node{node("off", other), node("on", other, lan), node("none")}, []string{"on"}},
		{"on-subnet node listed last still wins", Address{IP: vip, Advertisements: anyAdv},
			[]Node{node("off1", other), node("off2"), node("on", lan)}, []string{"on"}},
		{"IPv6 subnet", Address{IP: vip6, Advertisements: anyAdv},
			[]Node{node("v4only", lan), node("v6", lan, lan6)}, []string{"v6"}},
		{"every node when none is on the subnet", Address{IP: vip, Advertisements: anyAdv},
			[]Node{node("n1", other), node("n2", netip.MustParsePrefix("203.0.113.0/24"))}, []string{"n1", "n2"}},
		{"off the subnet, a node needs an address of the family", Address{IP: vip, Advertisements: anyAdv},
			[]Node{node("v6only", lan6), node("n1", other)}, []string{"n1"}},
		{"subnet rule counts eligible nodes only", Address{IP: vip, Advertisements: anyAdv},
			[]Node{excluded, node("off", other)}, []string{"off"}},
		{"ETP Local: nodes with a ready endpoint", Address{IP: vip, Advertisements: anyAdv, LocalOnly: true, Endpoints: map[string]bool{"n2": true}},
			[]Node{node("n1", lan), node("n2", lan)}, []string{"n2"}},
		{"ETP Local without endpoints: nobody", Address{IP: vip, Advertisements: anyAdv, LocalOnly: true},
			[]Node{node("n1", lan), node("n2", lan)}, nil},
		{"ETP Local and subnet together", Address{IP: vip, Advertisements: anyAdv, LocalOnly: true, Endpoints: map[string]bool{"off": true}},
			[]Node{node("on", lan), node("off", other)}, []string{"off"}},
		{"no live speakers", Address{IP: vip, Advertisements: anyAdv}, nil, nil},
		{"named interface: only nodes that have it", Address{IP: vip, Advertisements: []Advertisement{{Interfaces: []string{"eth1"}}}},
			[]Node{node("n1", lan), {Name: "n2", Interfaces: map[string][]netip.Prefix{"eth0": {lan}, "eth1": {other}}}}, []string{"n2"}},
		{"no interface at all", Address{IP: vip, Advertisements: anyAdv}, []Node{{Name: "bare"}, node("n1", other)}, []string{"n1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := names(Eligible(tt.addr, tt.live))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Eligible = %v, want %v", got, tt.want)
			}
			owner, ok := Owner(tt.addr, tt.live)
			if ok != (len(tt.want) > 0) || (ok && !slices.Contains(tt.want, owner)) {
				t.Fatalf("Owner = %q, %v; want one of %v", owner, ok, tt.want)
			}
		})
	}
}

// TestOwnerIgnoresOrder: every speaker must get the same answer whatever
// order its member list is in.
func TestOwnerIgnoresOrder(t *testing.T) {
	live := []Node{node("n1", lan), node("n2", lan), node("n3", lan), node("n4", lan)}
	for i := range 200 {
		addr := Address{IP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Advertisements: anyAdv}
		want, _ := Owner(addr, live)
		rev := slices.Clone(live)
		slices.Reverse(rev)
		if got, _ := Owner(addr, rev); got != want {
			t.Fatalf("%s: owner %s in one order, %s in the other", addr.IP, want, got)
		}
	}
}

// TestOwnerStable: removing a node that owns nothing moves nothing, and
// removing an owner moves only its addresses.
func TestOwnerStable(t *testing.T) {
	var live []Node
	for i := range 10 {
		live = append(live, node(fmt.Sprintf("node-%d", i), lan))
	}
	addrs := testAddrs(1000)
	before := owners(addrs, live)
	for gone := range live {
		rest := slices.Delete(slices.Clone(live), gone, gone+1)
		after := owners(addrs, rest)
		for i, a := range addrs {
			if before[i] != live[gone].Name && after[i] != before[i] {
				t.Fatalf("removing %s moved %s from %s to %s", live[gone].Name, a.IP, before[i], after[i])
			}
			if before[i] == live[gone].Name && after[i] == live[gone].Name {
				t.Fatalf("%s still owned by removed %s", a.IP, live[gone].Name)
			}
		}
	}
	// A node that owns nothing: make one ineligible for every address
	// and remove it.
	excl := node("excluded", lan)
	excl.Labels[lbservice.ExcludeLabel] = "true"
	with := owners(addrs, append(slices.Clone(live), excl))
	if !slices.Equal(with, before) {
		t.Fatal("adding an excluded node moved addresses")
	}
	// Adding a node moves only the addresses it wins.
	newcomer := node("node-new", lan)
	added := owners(addrs, append(slices.Clone(live), newcomer))
	for i := range addrs {
		if added[i] != before[i] && added[i] != newcomer.Name {
			t.Fatalf("adding %s moved %s from %s to %s", newcomer.Name, addrs[i].IP, before[i], added[i])
		}
	}
}

// TestOwnerSpread reports how evenly 1,000 addresses spread and checks a
// loose bound; the exact ratios go in the log.
func TestOwnerSpread(t *testing.T) {
	for _, family := range []string{"IPv4", "IPv6"} {
		for _, n := range []int{3, 10} {
			var live []Node
			for i := range n {
				live = append(live, node(fmt.Sprintf("node-%d", i), lan, lan6))
			}
			count := map[string]int{}
			addrs := testAddrs(1000)
			if family == "IPv6" {
				addrs = testAddrs6(1000)
			}
			for _, o := range owners(addrs, live) {
				count[o]++
			}
			lo, hi := 1000, 0
			for _, nd := range live {
				lo, hi = min(lo, count[nd.Name]), max(hi, count[nd.Name])
			}
			ratio := float64(hi) / float64(max(lo, 1))
			t.Logf("%s, %d nodes: owned min %d, max %d, max/min %.2f", family, n, lo, hi, ratio)
			// Binomial noise at 1000/n per node stays well inside 1.6.
			if ratio > 1.6 {
				t.Errorf("%s, %d nodes: max/min %.2f, want <= 1.6", family, n, ratio)
			}
		}
	}
}

func TestInterfaces(t *testing.T) {
	local := map[string][]netip.Prefix{
		"eth0": {lan, lan6},
		"eth1": {other},
		"eth2": nil,
		"eth3": {netip.MustParsePrefix("203.0.113.0/24")},
		"eth4": {netip.MustParsePrefix("2001:db8:4::/64")},
	}
	n := node("n1")
	n.Labels["zone"] = "a"
	tests := []struct {
		name string
		addr Address
		want []string
	}{
		{"on the subnet", Address{IP: vip, Advertisements: anyAdv}, []string{"eth0"}},
		{"IPv6 on the subnet", Address{IP: vip6, Advertisements: anyAdv}, []string{"eth0"}},
		{"no interface on the subnet: all of its family", Address{IP: netip.MustParseAddr("198.18.0.1"), Advertisements: anyAdv}, []string{"eth0", "eth1", "eth3"}},
		{"IPv6, no interface on the subnet: all of its family", Address{IP: netip.MustParseAddr("2001:db8:9::1"), Advertisements: anyAdv}, []string{"eth0", "eth4"}},
		{"named interfaces", Address{IP: vip, Advertisements: []Advertisement{{Interfaces: []string{"eth1", "eth9"}}}}, []string{"eth1"}},
		{"named by two advertisements", Address{IP: vip, Advertisements: []Advertisement{{Interfaces: []string{"eth1"}}, {Interfaces: []string{"eth2"}}}}, []string{"eth1", "eth2"}},
		{"one advertisement names none: subnet", Address{IP: vip, Advertisements: []Advertisement{{Interfaces: []string{"eth1"}}, {}}}, []string{"eth0"}},
		{"advertisement not selecting the node is ignored", Address{IP: vip, Advertisements: []Advertisement{
			{Interfaces: []string{"eth1"}}, {NodeSelectors: []labels.Selector{sel(t, "zone=b")}}}}, []string{"eth1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Interfaces(tt.addr, n, local); !slices.Equal(got, tt.want) {
				t.Fatalf("Interfaces = %v, want %v", got, tt.want)
			}
		})
	}
}

func testAddrs(n int) []Address {
	var out []Address
	base := netip.MustParseAddr("10.0.0.0")
	for range n {
		base = base.Next()
		out = append(out, Address{IP: base, Advertisements: anyAdv})
	}
	return out
}

func testAddrs6(n int) []Address {
	var out []Address
	base := netip.MustParseAddr("2001:db8::")
	for range n {
		base = base.Next()
		out = append(out, Address{IP: base, Advertisements: anyAdv})
	}
	return out
}

func owners(addrs []Address, live []Node) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i], _ = Owner(a, live)
	}
	return out
}

func BenchmarkOwner(b *testing.B) {
	var live []Node
	for i := range 100 {
		live = append(live, node(fmt.Sprintf("node-%d", i), lan))
	}
	addr := Address{IP: vip, Advertisements: anyAdv}
	for b.Loop() {
		Owner(addr, live)
	}
}
