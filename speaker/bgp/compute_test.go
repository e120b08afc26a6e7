package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
)

func u32(v uint32) *uint32 { return &v }

func sel(t *testing.T, s string) labels.Selector {
	t.Helper()
	l, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestCompute(t *testing.T) {
	node := Node{Name: "n1", Labels: map[string]string{"zone": "a", "rack": "r1"}, RouterID: netip.MustParseAddr("192.0.2.11")}
	ebgp := Peer{Session: Session{Name: "edge", MyASN: 64512, PeerASN: 64500, Address: netip.MustParseAddr("192.0.2.1")}}
	ibgp := Peer{Session: Session{Name: "core", MyASN: 64512, PeerASN: 64512, Address: netip.MustParseAddr("192.0.2.2")}}
	v6 := Peer{Session: Session{Name: "edge6", MyASN: 64512, PeerASN: 64500, Address: netip.MustParseAddr("2001:db8::1")}}
	web := Service{Name: "ns/web", Pool: "public", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.10")}}
	dual := Service{Name: "ns/dual", Pool: "public", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.20"), netip.MustParseAddr("2001:db8:1::20")}}
	all := Advertisement{Name: "all"}
	pools := map[string]map[string]string{"public": {"tier": "front"}, "private": {"tier": "back"}}

	type want map[string][]string // session → paths as Path.String
	tests := []struct {
		name     string
		node     Node
		services []Service
		peers    []Peer
		advs     []Advertisement
		want     want
	}{
		{
			name:     "cluster policy: every eligible node advertises",
			services: []Service{web},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{all},
			want:     want{"edge": {"198.51.100.10/32"}},
		},
		{
			name:     "no advertisement: sessions open, nothing advertised",
			services: []Service{web},
			peers:    []Peer{ebgp},
			want:     want{"edge": nil},
		},
		{
			name:     "local policy with a ready endpoint here",
			services: []Service{{Name: "ns/l", Pool: "public", IPs: web.IPs, LocalTraffic: true, ReadyNodes: map[string]bool{"n1": true}}},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{all},
			want:     want{"edge": {"198.51.100.10/32"}},
		},
		{
			name:     "local policy with endpoints elsewhere only: withdraw",
			services: []Service{{Name: "ns/l", Pool: "public", IPs: web.IPs, LocalTraffic: true, ReadyNodes: map[string]bool{"n2": true}}},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{all},
			want:     want{"edge": nil},
		},
		{
			name:     "local policy with no endpoints at all",
			services: []Service{{Name: "ns/l", Pool: "public", IPs: web.IPs, LocalTraffic: true}},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{all},
			want:     want{"edge": nil},
		},
		{
			name:     "cluster policy ignores endpoints",
			services: []Service{{Name: "ns/c", Pool: "public", IPs: web.IPs, ReadyNodes: map[string]bool{"n2": true}}},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{all},
			want:     want{"edge": {"198.51.100.10/32"}},
		},
		{
			name:     "excluded node advertises nothing but keeps sessions",
			node:     Node{Name: "n1", Labels: map[string]string{lbservice.ExcludeLabel: ""}, RouterID: node.RouterID},
			services: []Service{web},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{all},
			want:     want{"edge": nil},
		},
		{
			name:     "network-unavailable node advertises nothing",
			node:     Node{Name: "n1", NetworkUnavailable: true, RouterID: node.RouterID},
			services: []Service{web},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{all},
			want:     want{"edge": nil},
		},
		{
			name:     "peer node selector not matching: no session",
			services: []Service{web},
			peers:    []Peer{{Session: ebgp.Session, Nodes: Selector{sel(t, "zone=b")}}},
			advs:     []Advertisement{all},
			want:     want{},
		},
		{
			name:     "peer node selectors are ORed",
			services: []Service{web},
			peers:    []Peer{{Session: ebgp.Session, Nodes: Selector{sel(t, "zone=b"), sel(t, "rack=r1")}}},
			advs:     []Advertisement{all},
			want:     want{"edge": {"198.51.100.10/32"}},
		},
		{
			name:     "advertisement node selector not matching",
			services: []Service{web},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{{Name: "b", Nodes: Selector{sel(t, "zone=b")}}},
			want:     want{"edge": nil},
		},
		{
			name:     "pool by name",
			services: []Service{web, {Name: "ns/db", Pool: "private", IPs: []netip.Addr{netip.MustParseAddr("203.0.113.5")}}},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{{Name: "p", Pools: []string{"private"}}},
			want:     want{"edge": {"203.0.113.5/32"}},
		},
		{
			name:     "pool by selector",
			services: []Service{web, {Name: "ns/db", Pool: "private", IPs: []netip.Addr{netip.MustParseAddr("203.0.113.5")}}},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{{Name: "p", PoolSelectors: []labels.Selector{sel(t, "tier=front")}}},
			want:     want{"edge": {"198.51.100.10/32"}},
		},
		{
			name:     "pool names and selectors are ORed",
			services: []Service{web, {Name: "ns/db", Pool: "private", IPs: []netip.Addr{netip.MustParseAddr("203.0.113.5")}}},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{{Name: "p", Pools: []string{"private"}, PoolSelectors: []labels.Selector{sel(t, "tier=front")}}},
			want:     want{"edge": {"198.51.100.10/32", "203.0.113.5/32"}},
		},
		{
			name:     "advertisement limited to one peer",
			services: []Service{web},
			peers:    []Peer{ebgp, ibgp},
			advs:     []Advertisement{{Name: "p", Peers: []string{"core"}}},
			want:     want{"edge": nil, "core": {"198.51.100.10/32"}},
		},
		{
			name:     "advertisement naming an unknown peer advertises nothing",
			services: []Service{web},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{{Name: "p", Peers: []string{"gone"}}},
			want:     want{"edge": nil},
		},
		{
			name: "aggregation merges services into one prefix",
			services: []Service{web, {Name: "ns/b", Pool: "public", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.77")}},
				{Name: "ns/c", Pool: "public", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.200")}}},
			peers: []Peer{ebgp},
			advs:  []Advertisement{{Name: "agg", AggregationLength: 25}},
			want:  want{"edge": {"198.51.100.0/25", "198.51.100.128/25"}},
		},
		{
			name:     "aggregation v6",
			services: []Service{dual},
			peers:    []Peer{v6},
			advs:     []Advertisement{{Name: "agg", AggregationLength: 24, AggregationLengthV6: 64}},
			want:     want{"edge6": {"2001:db8:1::/64"}},
		},
		{
			name:     "families go to sessions of their family",
			services: []Service{dual},
			peers:    []Peer{ebgp, v6},
			advs:     []Advertisement{all},
			want:     want{"edge": {"198.51.100.20/32"}, "edge6": {"2001:db8:1::20/128"}},
		},
		{
			name:     "communities standard and large; local-pref only on iBGP",
			services: []Service{web},
			peers:    []Peer{ebgp, ibgp},
			advs: []Advertisement{{Name: "c", LocalPref: u32(150), Communities: []uint32{65000<<16 | 100, 0xFFFFFF01},
				LargeCommunities: []LargeCommunity{{1, 2, 3}}}},
			want: want{
				"edge": {"198.51.100.10/32 communities=[65000:100 65535:65281] large=[1:2:3]"},
				"core": {"198.51.100.10/32 communities=[65000:100 65535:65281] large=[1:2:3] local-pref=150"},
			},
		},
		{
			name:     "two advertisements: union of communities, highest local-pref",
			services: []Service{web},
			peers:    []Peer{ibgp},
			advs: []Advertisement{
				{Name: "a", LocalPref: u32(200), Communities: []uint32{2, 1}, LargeCommunities: []LargeCommunity{{9, 9, 9}}},
				{Name: "b", LocalPref: u32(100), Communities: []uint32{1, 3}, LargeCommunities: []LargeCommunity{{1, 2, 3}, {9, 9, 9}}},
			},
			want: want{"core": {"198.51.100.10/32 communities=[0:1 0:2 0:3] large=[1:2:3 9:9:9] local-pref=200"}},
		},
		{
			name:     "service gone: nothing advertised",
			services: nil,
			peers:    []Peer{ebgp},
			advs:     []Advertisement{all},
			want:     want{"edge": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := node
			if tt.node.Name != "" {
				n = tt.node
			}
			plan := Compute(Input{Node: n, Services: tt.services, PoolLabels: pools, Peers: tt.peers, Advertisements: tt.advs})
			if len(plan.Problems) > 0 {
				t.Fatalf("problems: %v", plan.Problems)
			}
			got := want{}
			for name, paths := range plan.Paths {
				var ss []string
				for _, p := range paths {
					ss = append(ss, p.String())
				}
				got[name] = ss
			}
			if len(got) != len(tt.want) {
				t.Fatalf("sessions = %v, want %v", got, tt.want)
			}
			for name, w := range tt.want {
				g, ok := got[name]
				if !ok || !slices.Equal(g, w) {
					t.Errorf("session %q: paths = %q, want %q", name, g, w)
				}
			}
			var names []string
			for _, s := range plan.Sessions {
				names = append(names, s.Name)
			}
			if !slices.IsSorted(names) || len(names) != len(tt.want) {
				t.Errorf("sessions %v: want sorted and one per entry of %v", names, tt.want)
			}
		})
	}
}

func TestComputeDuplicateAddress(t *testing.T) {
	a := Peer{Session: Session{Name: "a", MyASN: 1, PeerASN: 2, Address: netip.MustParseAddr("192.0.2.1")}}
	b := a
	b.Name = "b"
	other := Peer{Session: Session{Name: "c", MyASN: 1, PeerASN: 2, Address: netip.MustParseAddr("192.0.2.9")}, Nodes: Selector{sel(t, "zone=b")}}
	dupElsewhere := other
	dupElsewhere.Name, dupElsewhere.Nodes = "d", Selector{sel(t, "zone=c")}
	plan := Compute(Input{Node: Node{Name: "n1", Labels: map[string]string{"zone": "b"}, RouterID: netip.MustParseAddr("192.0.2.11")},
		Peers: []Peer{b, dupElsewhere, other, a}})
	var names []string
	for _, s := range plan.Sessions {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"a", "c"}) {
		t.Errorf("sessions %v, want a and c (b duplicates a; d is for other nodes)", names)
	}
	if len(plan.Problems) != 1 || !strings.Contains(plan.Problems[0].Error(), `BGPPeer "b"`) {
		t.Errorf("problems %v, want one about b", plan.Problems)
	}
}

func TestComputeDuplicateAddressAfterUnusablePeer(t *testing.T) {
	// a cannot open (no router ID anywhere); b, to the same router, can.
	a := Peer{Session: Session{Name: "a", MyASN: 1, PeerASN: 2, Address: netip.MustParseAddr("192.0.2.1")}}
	b := a
	b.Name, b.RouterID = "b", netip.MustParseAddr("10.0.0.1")
	plan := Compute(Input{Node: Node{Name: "v6only"}, Peers: []Peer{a, b}})
	if len(plan.Sessions) != 1 || plan.Sessions[0].Name != "b" || len(plan.Problems) != 1 {
		t.Errorf("sessions %+v, problems %v; want b open and one problem about a", plan.Sessions, plan.Problems)
	}
}

func TestComputeRouterID(t *testing.T) {
	peer := Peer{Session: Session{Name: "edge", MyASN: 1, PeerASN: 2, Address: netip.MustParseAddr("192.0.2.1")}}
	plan := Compute(Input{Node: Node{Name: "n1", RouterID: netip.MustParseAddr("192.0.2.11")}, Peers: []Peer{peer}})
	if got := plan.Sessions[0].RouterID; got != netip.MustParseAddr("192.0.2.11") {
		t.Errorf("default router ID = %v, want the node's address", got)
	}
	peer.RouterID = netip.MustParseAddr("10.9.9.9")
	plan = Compute(Input{Node: Node{Name: "n1", RouterID: netip.MustParseAddr("192.0.2.11")}, Peers: []Peer{peer}})
	if got := plan.Sessions[0].RouterID; got != peer.RouterID {
		t.Errorf("router ID = %v, want the peer's %v", got, peer.RouterID)
	}
	peer.RouterID = netip.Addr{}
	plan = Compute(Input{Node: Node{Name: "v6only"}, Peers: []Peer{peer}})
	if len(plan.Sessions) != 0 || len(plan.Problems) != 1 || !strings.Contains(plan.Problems[0].Error(), "routerID") {
		t.Errorf("node without IPv4: sessions %v, problems %v; want none and one problem naming routerID", plan.Sessions, plan.Problems)
	}
}

// TestComputeWithdraw follows one Service through the changes that must
// withdraw it, comparing successive plans as Announcer would.
func TestComputeWithdraw(t *testing.T) {
	in := Input{
		Node:           Node{Name: "n1", Labels: map[string]string{"bgp": "yes"}, RouterID: netip.MustParseAddr("192.0.2.11")},
		Peers:          []Peer{{Session: Session{Name: "edge", MyASN: 1, PeerASN: 2, Address: netip.MustParseAddr("192.0.2.1")}}},
		Advertisements: []Advertisement{{Name: "a", Nodes: Selector{sel(t, "bgp=yes")}}},
		Services: []Service{{Name: "ns/s", Pool: "p", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.1")},
			LocalTraffic: true, ReadyNodes: map[string]bool{"n1": true}}},
	}
	count := func() int { return len(Compute(in).Paths["edge"]) }
	if count() != 1 {
		t.Fatal("not advertised at the start")
	}
	in.Services[0].ReadyNodes = map[string]bool{"n2": true}
	if count() != 0 {
		t.Error("still advertised after the local endpoint moved away")
	}
	in.Services[0].ReadyNodes["n1"] = true
	if count() != 1 {
		t.Error("not advertised again after the endpoint came back")
	}
	in.Node.Labels = map[string]string{"bgp": "no"}
	if count() != 0 {
		t.Error("still advertised after the node left the advertisement's selector")
	}
	in.Node.Labels = map[string]string{"bgp": "yes"}
	in.Services = nil
	if count() != 0 {
		t.Error("still advertised after the Service went")
	}
}

func TestParseCommunity(t *testing.T) {
	tests := []struct {
		in    string
		std   uint32
		large *LargeCommunity
		err   bool
	}{
		{in: "65000:100", std: 65000<<16 | 100},
		{in: "0:0", std: 0},
		{in: "65535:65535", std: 0xFFFFFFFF},
		{in: "no-export", std: 0xFFFFFF01},
		{in: "no-advertise", std: 0xFFFFFF02},
		{in: "no-export-subconfed", std: 0xFFFFFF03},
		{in: "no-peer", std: 0xFFFFFF04},
		{in: "blackhole", std: 65535<<16 | 666},
		{in: "graceful-shutdown", std: 65535 << 16},
		{in: "large:1:2:3", large: &LargeCommunity{1, 2, 3}},
		{in: "large:4294967295:0:4294967295", large: &LargeCommunity{4294967295, 0, 4294967295}},
		{in: "65536:1", err: true},
		{in: "1:65536", err: true},
		{in: "1", err: true},
		{in: "a:b", err: true},
		{in: "large:1:2", err: true},
		{in: "large:1:2:4294967296", err: true},
		{in: "", err: true},
	}
	for _, tt := range tests {
		std, large, err := ParseCommunity(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParseCommunity(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if tt.err {
			continue
		}
		if std != tt.std || (large == nil) != (tt.large == nil) || (large != nil && *large != *tt.large) {
			t.Errorf("ParseCommunity(%q) = %d, %v; want %d, %v", tt.in, std, large, tt.std, tt.large)
		}
	}
}

func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "large:1:2:3", "no-export", "1:", ":", "large:::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		std, large, err := ParseCommunity(s)
		if err != nil {
			return
		}
		// Whatever parses must print back to an equivalent spelling.
		var again string
		if large != nil {
			again = "large:" + large.String()
		} else {
			again = communityStrings([]uint32{std})[0]
		}
		std2, large2, err := ParseCommunity(again)
		if err != nil || std2 != std || (large == nil) != (large2 == nil) || (large != nil && *large != *large2) {
			t.Fatalf("%q parsed to %d/%v, which prints as %q and parses to %d/%v (%v)", s, std, large, again, std2, large2, err)
		}
	})
}

func dur(d string) *metav1.Duration {
	v, err := time.ParseDuration(d)
	if err != nil {
		panic(err)
	}
	return &metav1.Duration{Duration: v}
}

func TestPeerFromAPI(t *testing.T) {
	base := func() *v1alpha1.BGPPeer {
		return &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "edge"},
			Spec: v1alpha1.BGPPeerSpec{MyASN: 64512, PeerASN: 64500, PeerAddress: "192.0.2.1"}}
	}
	p, err := PeerFromAPI(base(), "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Port != 179 || p.HoldTime != DefaultHoldTime || p.KeepaliveTime != DefaultHoldTime/3 || p.RouterID.IsValid() {
		t.Errorf("defaults: %+v", p.Session)
	}

	full := base()
	full.Spec.PeerPort = 1179
	full.Spec.SourceAddress = "192.0.2.11"
	full.Spec.RouterID = "10.0.0.1"
	full.Spec.HoldTime = dur("9s")
	full.Spec.KeepaliveTime = dur("2s")
	full.Spec.EBGPMultiHop = true
	full.Spec.GracefulRestart = true
	full.Spec.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"zone": "a"}}}
	p, err = PeerFromAPI(full, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	want := Session{Name: "edge", MyASN: 64512, PeerASN: 64500, Address: netip.MustParseAddr("192.0.2.1"), Port: 1179,
		SourceAddress: netip.MustParseAddr("192.0.2.11"), RouterID: netip.MustParseAddr("10.0.0.1"),
		HoldTime: 9e9, KeepaliveTime: 2e9, EBGPMultiHop: true, Password: "s3cret", GracefulRestart: true}
	if p.Session != want {
		t.Errorf("session = %+v\nwant      %+v", p.Session, want)
	}
	if !p.Nodes.Matches(map[string]string{"zone": "a"}) || p.Nodes.Matches(map[string]string{"zone": "b"}) {
		t.Error("node selector not converted")
	}

	bad := []func(*v1alpha1.BGPPeer){
		func(p *v1alpha1.BGPPeer) { p.Spec.PeerAddress = "router" },
		func(p *v1alpha1.BGPPeer) { p.Spec.SourceAddress = "2001:db8::1" },
		func(p *v1alpha1.BGPPeer) { p.Spec.RouterID = "2001:db8::1" },
		func(p *v1alpha1.BGPPeer) { p.Spec.HoldTime = dur("1s") },
		func(p *v1alpha1.BGPPeer) { p.Spec.HoldTime = dur("0s") },
		func(p *v1alpha1.BGPPeer) { p.Spec.HoldTime, p.Spec.KeepaliveTime = dur("9s"), dur("9s") },
		func(p *v1alpha1.BGPPeer) { p.Spec.MyASN = 0 },
		func(p *v1alpha1.BGPPeer) { p.Spec.PeerPort = 70000 },
		func(p *v1alpha1.BGPPeer) {
			p.Spec.NodeSelectors = []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}}
		},
	}
	for i, mutate := range bad {
		p := base()
		mutate(p)
		if _, err := PeerFromAPI(p, ""); err == nil || !strings.Contains(err.Error(), `BGPPeer "edge"`) {
			t.Errorf("case %d: error = %v, want one naming the BGPPeer", i, err)
		}
	}
}

func TestAdvertisementFromAPI(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	i64 := func(v int64) *int64 { return &v }
	a := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "adv"}, Spec: v1alpha1.BGPAdvertisementSpec{
		AddressPools:         []string{"public"},
		AddressPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "front"}}},
		Peers:                []string{"edge"},
		AggregationLength:    i32(24),
		AggregationLengthV6:  i32(64),
		LocalPref:            i64(300),
		Communities:          []v1alpha1.Community{"65000:100", "large:1:2:3", "no-export"},
	}}
	got, err := AdvertisementFromAPI(a)
	if err != nil {
		t.Fatal(err)
	}
	if got.AggregationLength != 24 || got.AggregationLengthV6 != 64 || *got.LocalPref != 300 ||
		!slices.Equal(got.Communities, []uint32{65000<<16 | 100, 0xFFFFFF01}) ||
		!slices.Equal(got.LargeCommunities, []LargeCommunity{{1, 2, 3}}) ||
		!got.selectsPool("other", map[string]string{"tier": "front"}) || got.selectsPool("other", nil) {
		t.Errorf("converted = %+v", got)
	}
	for _, mutate := range []func(*v1alpha1.BGPAdvertisement){
		func(a *v1alpha1.BGPAdvertisement) { a.Spec.AggregationLength = i32(0) },
		func(a *v1alpha1.BGPAdvertisement) { a.Spec.AggregationLengthV6 = i32(129) },
		func(a *v1alpha1.BGPAdvertisement) { a.Spec.LocalPref = i64(-1) },
		func(a *v1alpha1.BGPAdvertisement) { a.Spec.Communities = []v1alpha1.Community{"70000:1"} },
	} {
		b := a.DeepCopy()
		mutate(b)
		if _, err := AdvertisementFromAPI(b); err == nil {
			t.Errorf("%+v: accepted", b.Spec)
		}
	}
}

// BenchmarkCompute10000 is the speaker's cost of recomputing after any
// change with 10,000 Services, three advertisements and four peers.
func BenchmarkCompute10000(b *testing.B) {
	in := Input{Node: Node{Name: "n1", Labels: map[string]string{"zone": "a"}, RouterID: netip.MustParseAddr("192.0.2.11")}}
	for i := range 4 {
		in.Peers = append(in.Peers, Peer{Session: Session{Name: fmt.Sprintf("p%d", i), MyASN: 64512, PeerASN: 64500,
			Address: netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i)})}})
	}
	in.Advertisements = []Advertisement{
		{Name: "all", Communities: []uint32{1}},
		{Name: "agg", AggregationLength: 24, Peers: []string{"p0"}},
		{Name: "lp", LocalPref: u32(200), Nodes: Selector{labels.SelectorFromSet(labels.Set{"zone": "a"})}},
	}
	for i := range 10000 {
		in.Services = append(in.Services, Service{Name: fmt.Sprintf("ns/s%d", i), Pool: "public",
			IPs:          []netip.Addr{netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})},
			LocalTraffic: i%2 == 0, ReadyNodes: map[string]bool{"n1": i%4 == 0}})
	}
	b.ReportAllocs()
	for b.Loop() {
		if plan := Compute(in); len(plan.Paths["p1"]) != 7500 {
			b.Fatalf("%d paths", len(plan.Paths["p1"]))
		}
	}
}

// TestComputeServiceSelectors: two Services of one pool, one labelled;
// advertisements with service and namespace selectors decide which of
// them they apply to, and what applies is merged per prefix.
func TestComputeServiceSelectors(t *testing.T) {
	node := Node{Name: "n1", RouterID: netip.MustParseAddr("192.0.2.11")}
	ebgp := Peer{Session: Session{Name: "edge", MyASN: 64512, PeerASN: 64500, Address: netip.MustParseAddr("192.0.2.1")}}
	ibgp := Peer{Session: Session{Name: "core", MyASN: 64512, PeerASN: 64512, Address: netip.MustParseAddr("192.0.2.2")}}
	team := map[string]string{"team": "a"}
	labelled := Service{Name: "shop/front", Pool: "public", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.10")},
		Labels: map[string]string{"tier": "edge"}, NamespaceLabels: team}
	plain := Service{Name: "shop/api", Pool: "public", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.11")}, NamespaceLabels: team}
	other := Service{Name: "lab/front", Pool: "public", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.12")},
		Labels: map[string]string{"tier": "edge"}, NamespaceLabels: map[string]string{"team": "b"}}
	selection := func(services, namespaces []metav1.LabelSelector) lbservice.ServiceSelection {
		s, err := lbservice.ParseServiceSelection(services, namespaces)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	edgeSel := []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}}
	teamASel := []metav1.LabelSelector{{MatchLabels: team}}
	all := Advertisement{Name: "all", Communities: []uint32{65000<<16 | 200}}
	edge := Advertisement{Name: "edge", Services: selection(edgeSel, nil), Communities: []uint32{65000<<16 | 100}, LocalPref: u32(300)}

	type want map[string][]string
	tests := []struct {
		name     string
		services []Service
		peers    []Peer
		advs     []Advertisement
		want     want
	}{
		{
			name:     "only the labelled Service is advertised",
			services: []Service{labelled, plain},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{edge},
			want:     want{"edge": {"198.51.100.10/32 communities=[65000:100]"}},
		},
		{
			name:     "both apply to the labelled Service: communities merged, the other gets the pool's",
			services: []Service{labelled, plain},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{all, edge},
			want: want{"edge": {
				"198.51.100.10/32 communities=[65000:100 65000:200]",
				"198.51.100.11/32 communities=[65000:200]",
			}},
		},
		{
			name:     "local preference of the selected advertisement, on iBGP",
			services: []Service{labelled, plain},
			peers:    []Peer{ibgp},
			advs:     []Advertisement{all, edge},
			want: want{"core": {
				"198.51.100.10/32 communities=[65000:100 65000:200] local-pref=300",
				"198.51.100.11/32 communities=[65000:200]",
			}},
		},
		{
			name:     "namespace selector",
			services: []Service{labelled, plain, other},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{{Name: "team-a", Services: selection(nil, teamASel)}},
			want:     want{"edge": {"198.51.100.10/32", "198.51.100.11/32"}},
		},
		{
			name:     "service and namespace selectors: both must match",
			services: []Service{labelled, plain, other},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{{Name: "edge-a", Services: selection(edgeSel, teamASel)}},
			want:     want{"edge": {"198.51.100.10/32"}},
		},
		{
			name:     "the pool must be selected too",
			services: []Service{labelled},
			peers:    []Peer{ebgp},
			advs:     []Advertisement{{Name: "private-edge", Pools: []string{"private"}, Services: selection(edgeSel, nil)}},
			want:     want{"edge": nil},
		},
		{
			name:     "an aggregate carries what applies to any Service it covers",
			services: []Service{labelled, plain},
			peers:    []Peer{ebgp},
			advs: []Advertisement{
				{Name: "agg", AggregationLength: 24, Communities: []uint32{65000<<16 | 200}},
				{Name: "agg-edge", AggregationLength: 24, Services: selection(edgeSel, nil), Communities: []uint32{65000<<16 | 100}},
			},
			want: want{"edge": {"198.51.100.0/24 communities=[65000:100 65000:200]"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Compute(Input{Node: node, Services: tt.services, Peers: tt.peers, Advertisements: tt.advs})
			got := want{}
			for name, paths := range plan.Paths {
				got[name] = nil
				for _, p := range paths {
					got[name] = append(got[name], p.String())
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("paths\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestAdvertisementFromAPIServiceSelectors(t *testing.T) {
	a := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: v1alpha1.BGPAdvertisementSpec{
		ServiceSelectors:   []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}},
		NamespaceSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"team": "a"}}},
	}}
	got, err := AdvertisementFromAPI(a)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Services.Matches(map[string]string{"tier": "edge"}, map[string]string{"team": "a"}) ||
		got.Services.Matches(map[string]string{"tier": "edge"}, nil) || got.Services.Matches(nil, map[string]string{"team": "a"}) {
		t.Errorf("selection not converted: %+v", got.Services)
	}
	a.Spec.NamespaceSelectors[0].MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Bogus"}}
	if _, err := AdvertisementFromAPI(a); err == nil || !strings.Contains(err.Error(), `BGPAdvertisement "edge": namespaceSelectors[0]`) {
		t.Errorf("error = %v, want one naming the advertisement and the field", err)
	}
}
