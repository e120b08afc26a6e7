package bgp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/portico-lb/portico/lbservice"
)

// TestFRRECMPFollowsPlans runs Compute and the Announcer together on two
// nodes against one FRR: a Cluster Service gets an ECMP route through
// both nodes, in FRR and in the router's kernel; a Local Service only
// through the node with its endpoint, following the endpoint when it moves;
// a node that stops being eligible drops out of the next hops.
func TestFRRECMPFollowsPlans(t *testing.T) {
	l := newLabNodes(t, 2)
	conf := frrConf(64500, "192.0.2.2 64512", "192.0.2.3 64512") +
		" address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\n"
	r := l.startFRR("frr", conf)

	peer := Peer{Session: testSession("edge", 64512, 64500, "192.0.2.1")}
	peer.RouterID = netip.Addr{} // each node's own address, as Compute fills in
	nodes := []Node{
		{Name: "n1", RouterID: netip.MustParseAddr("192.0.2.2"), Labels: map[string]string{}},
		{Name: "n2", RouterID: netip.MustParseAddr("192.0.2.3"), Labels: map[string]string{}},
	}
	speakers := []*speakerProc{l.startSpeakerIn(l.nodes[0], "speaker-n1"), l.startSpeakerIn(l.nodes[1], "speaker-n2")}
	cluster := Service{Name: "ns/cluster", Pool: "public", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.10")}}
	local := Service{Name: "ns/local", Pool: "public", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.20")},
		LocalTraffic: true, ReadyNodes: map[string]bool{"n2": true}}
	advs := []Advertisement{{Name: "all"}}

	apply := func() {
		t.Helper()
		for i, n := range nodes {
			plan := Compute(Input{Node: n, Services: []Service{cluster, local}, Peers: []Peer{peer}, Advertisements: advs})
			if len(plan.Problems) > 0 {
				t.Fatal(plan.Problems)
			}
			speakers[i].apply(plan.Sessions, plan.Paths)
		}
	}
	// nexthops checks FRR's paths and the kernel route in the router.
	nexthops := func(prefix string, want ...string) func() error {
		return func() error {
			paths, err := r.route(prefix + "/32")
			if err != nil {
				return err
			}
			var got []string
			for _, p := range paths {
				if p.Valid && len(p.Nexthops) > 0 {
					got = append(got, p.Nexthops[0].IP)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("%s: FRR next hops %v, want %v", prefix, got, want)
			}
			kernel, err := kernelNexthops(l.rtr, prefix)
			if err != nil {
				return err
			}
			if !slices.Equal(kernel, want) {
				return fmt.Errorf("%s: kernel next hops %v, want %v", prefix, kernel, want)
			}
			return nil
		}
	}

	apply()
	l.eventually(20*time.Second, func() error {
		return errors.Join(r.established("192.0.2.2"), r.established("192.0.2.3"))
	})
	l.eventually(10*time.Second, nexthops("198.51.100.10", "192.0.2.2", "192.0.2.3"))
	l.eventually(10*time.Second, nexthops("198.51.100.20", "192.0.2.3"))

	// The Local Service's endpoint moves to n1.
	local.ReadyNodes = map[string]bool{"n1": true}
	apply()
	l.eventually(10*time.Second, nexthops("198.51.100.20", "192.0.2.2"))

	// n2 is excluded from load balancers: it withdraws, sessions stay.
	nodes[1].Labels = map[string]string{lbservice.ExcludeLabel: "true"}
	local.ReadyNodes = map[string]bool{"n1": true, "n2": true}
	apply()
	l.eventually(10*time.Second, nexthops("198.51.100.10", "192.0.2.2"))
	l.eventually(10*time.Second, nexthops("198.51.100.20", "192.0.2.2"))
	if err := r.established("192.0.2.3"); err != nil {
		t.Errorf("excluded node's session: %v", err)
	}

	// The Service goes.
	local.IPs = nil
	apply()
	l.eventually(10*time.Second, func() error {
		if paths, err := r.route("198.51.100.20/32"); err != nil || len(paths) != 0 {
			return fmt.Errorf("198.51.100.20 still routed: %+v, %v", paths, err)
		}
		return nil
	})
}

// kernelNexthops reads the route to prefix from the kernel of namespace ns.
func kernelNexthops(ns, prefix string) ([]string, error) {
	out, err := exec.Command("ip", "-n", ns, "-j", "route", "show", prefix).Output()
	if err != nil {
		return nil, fmt.Errorf("ip route show %s: %w", prefix, err)
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("ip route show %s: %w in %s", prefix, err, out)
	}
	var hops []string
	for _, r := range routes {
		if r.Gateway != "" {
			hops = append(hops, r.Gateway)
		}
		for _, h := range r.Nexthops {
			hops = append(hops, h.Gateway)
		}
	}
	slices.Sort(hops)
	return hops, nil
}
