package bgp_test

import (
	"fmt"
	"net/netip"

	"github.com/portico-lb/portico/speaker/bgp"
)

// The speaker glue's loop, minus Kubernetes: convert, Compute, Apply.
func ExampleCompute() {
	node := bgp.Node{Name: "node-1", RouterID: netip.MustParseAddr("192.0.2.11")}
	peers := []bgp.Peer{{Session: bgp.Session{Name: "router", MyASN: 64512, PeerASN: 64512,
		Address: netip.MustParseAddr("192.0.2.1"), Port: 179, HoldTime: 90e9, KeepaliveTime: 30e9}}}
	pref := uint32(200)
	advs := []bgp.Advertisement{{Name: "public", Pools: []string{"public"}, LocalPref: &pref,
		Communities: []uint32{64512<<16 | 100}}}
	services := []bgp.Service{
		{Name: "shop/web", Pool: "public", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.10")}},
		{Name: "shop/api", Pool: "public", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.11")},
			LocalTraffic: true, ReadyNodes: map[string]bool{"node-2": true}},
	}
	plan := bgp.Compute(bgp.Input{Node: node, Services: services, Peers: peers, Advertisements: advs})
	for _, s := range plan.Sessions {
		fmt.Println(s.Name, "router ID", s.RouterID)
		for _, p := range plan.Paths[s.Name] {
			fmt.Println(" ", p)
		}
	}
	// The speaker then calls announcer.Apply(ctx, plan).
	// Output:
	// router router ID 192.0.2.11
	//   198.51.100.10/32 communities=[64512:100] local-pref=200
}
