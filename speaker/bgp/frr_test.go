package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// frrConf is bgpd.conf for a router at 192.0.2.1 / 2001:db8::1 with short
// timers; neighbors are "address asn [password]".
func frrConf(asn uint32, neighbors ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults traditional\nhostname rtr\nlog stdout informational\n")
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n no bgp network import-check\n", asn)
	var v6 []string
	for _, n := range neighbors {
		f := strings.Fields(n)
		fmt.Fprintf(&b, " neighbor %s remote-as %s\n neighbor %s timers 3 9\n neighbor %s timers connect 1\n", f[0], f[1], f[0], f[0])
		if len(f) > 2 {
			fmt.Fprintf(&b, " neighbor %s password %s\n", f[0], f[2])
		}
		if strings.Contains(f[0], ":") {
			v6 = append(v6, f[0])
		}
	}
	if len(v6) > 0 {
		b.WriteString(" address-family ipv6 unicast\n")
		for _, a := range v6 {
			fmt.Fprintf(&b, "  neighbor %s activate\n", a)
		}
		b.WriteString(" exit-address-family\n")
	}
	return b.String()
}

func testSession(name string, myASN, peerASN uint32, addr string) Session {
	return Session{
		Name: name, MyASN: myASN, PeerASN: peerASN,
		Address:  netip.MustParseAddr(addr),
		RouterID: netip.MustParseAddr("192.0.2.2"),
		HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second,
	}
}

func path(prefix string) Path { return Path{Prefix: netip.MustParsePrefix(prefix)} }

// TestFRREBGP: an eBGP session to FRR carries routes with our address as next
// hop and the communities asked for; a withdrawal removes the route.
func TestFRREBGP(t *testing.T) {
	l := newLab(t)
	r := l.startFRR("frr", frrConf(64500, "192.0.2.2 64512"))
	s := l.startSpeaker("speaker")
	edge := testSession("edge", 64512, 64500, "192.0.2.1")
	web := Path{Prefix: netip.MustParsePrefix("198.51.100.10/32"),
		Communities:      []uint32{65000<<16 | 100, 0xFFFFFF01},
		LargeCommunities: []LargeCommunity{{64512, 1, 2}},
		LocalPref:        u32(300), // must not reach an eBGP peer
	}
	s.apply([]Session{edge}, map[string][]Path{"edge": {web}})
	l.eventually(20*time.Second, func() error { return r.established("192.0.2.2") })

	var got frrPath
	l.eventually(10*time.Second, func() error {
		paths, err := r.route("198.51.100.10/32")
		if err != nil || len(paths) != 1 {
			return fmt.Errorf("paths %+v, %v", paths, err)
		}
		got = paths[0]
		return nil
	})
	if !got.Valid || len(got.Nexthops) != 1 || got.Nexthops[0].IP != "192.0.2.2" {
		t.Errorf("route: valid %v, next hops %+v; want valid via 192.0.2.2", got.Valid, got.Nexthops)
	}
	if got.Community == nil || got.Community.String != "65000:100 no-export" {
		t.Errorf("communities = %+v, want 65000:100 no-export", got.Community)
	}
	if got.LargeCommunity == nil || got.LargeCommunity.String != "64512:1:2" {
		t.Errorf("large communities = %+v, want 64512:1:2", got.LargeCommunity)
	}
	if got.LocalPref != nil && *got.LocalPref == 300 {
		t.Error("local-pref 300 reached an eBGP peer")
	}
	rep := s.report()
	if st := rep.Status; len(st) != 1 || !st[0].Up || st[0].State != "established" || st[0].Prefixes != 1 {
		t.Errorf("speaker status = %+v, want edge up with 1 prefix", st)
	}
	if m := rep.Metrics; m["portico_speaker_bgp_sessions_up{edge}"] != 1 || m["portico_speaker_bgp_prefixes_advertised{edge}"] != 1 ||
		m["portico_speaker_bgp_updates_sent_total{edge}"] < 1 {
		t.Errorf("metrics = %v, want edge up with 1 prefix and at least 1 UPDATE sent", m)
	}
	if ev := rep.Events; len(ev) != 1 || ev[0].Name != "edge" || !ev[0].Up {
		t.Errorf("events = %+v, want one: edge up", ev)
	}
	if ls := l.listening(l.spk); ls != "" {
		t.Errorf("the speaker listens and should not:\n%s", ls)
	}

	// Time from Apply to the route in FRR, on an established session.
	var took []time.Duration
	paths := []Path{web}
	for i := range 20 {
		p := path(fmt.Sprintf("198.51.100.%d/32", 100+i))
		paths = append(paths, p)
		start := time.Now()
		s.apply([]Session{edge}, map[string][]Path{"edge": paths})
		took = append(took, r.routedAfter(p.Prefix, start))
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("Apply to route in FRR over 20 prefixes: p50 %s, max %s (2ms polling)", took[len(took)/2], took[len(took)-1])

	// Withdraw everything but one route.
	s.apply([]Session{edge}, map[string][]Path{"edge": {paths[5]}})
	l.eventually(10*time.Second, func() error {
		for _, p := range paths {
			got, err := r.route(p.Prefix.String())
			if err != nil {
				return err
			}
			if want := p.Prefix == paths[5].Prefix; (len(got) == 1) != want {
				return fmt.Errorf("%s: present %v, want %v", p.Prefix, len(got) == 1, want)
			}
		}
		return nil
	})
	if err := r.established("192.0.2.2"); err != nil {
		t.Errorf("withdrawing paths disturbed the session: %v", err)
	}

	// Removing the session withdraws its routes and closes it.
	s.apply(nil, nil)
	l.eventually(15*time.Second, func() error {
		if got, _ := r.route(paths[5].Prefix.String()); len(got) != 0 {
			return fmt.Errorf("%s still present", paths[5].Prefix)
		}
		if err := r.established("192.0.2.2"); err == nil {
			return fmt.Errorf("session still established")
		}
		return nil
	})
	rep = s.report()
	if len(rep.Status) != 0 || len(rep.Metrics) != 0 {
		t.Errorf("after removing every session: status %+v, metrics %v; want none", rep.Status, rep.Metrics)
	}
	if ev := rep.Events; len(ev) != 2 || ev[1].Name != "edge" || ev[1].Up {
		t.Errorf("events = %+v, want edge up then down", ev)
	}
}

// TestFRRIBGP: local-pref reaches an iBGP peer.
func TestFRRIBGP(t *testing.T) {
	l := newLab(t)
	r := l.startFRR("frr", frrConf(64512, "192.0.2.2 64512"))
	s := l.startSpeaker("speaker")
	core := testSession("core", 64512, 64512, "192.0.2.1")
	p := Path{Prefix: netip.MustParsePrefix("198.51.100.0/24"), LocalPref: u32(150), Communities: []uint32{64512<<16 | 7}}
	s.apply([]Session{core}, map[string][]Path{"core": {p}})
	l.eventually(20*time.Second, func() error { return r.established("192.0.2.2") })
	l.eventually(10*time.Second, func() error {
		paths, err := r.route("198.51.100.0/24")
		if err != nil || len(paths) != 1 {
			return fmt.Errorf("paths %+v, %v", paths, err)
		}
		got := paths[0]
		if !got.Valid || got.LocalPref == nil || *got.LocalPref != 150 || got.Nexthops[0].IP != "192.0.2.2" || got.Community.String != "64512:7" {
			return fmt.Errorf("path %+v: want valid, local-pref 150, via 192.0.2.2, community 64512:7", got)
		}
		return nil
	})
}

// TestFRRPassword: a wrong TCP MD5 password never establishes; the right
// one does.
func TestFRRPassword(t *testing.T) {
	l := newLab(t)
	r := l.startFRR("frr", frrConf(64500, "192.0.2.2 64512 s3cret-Pw"))
	s := l.startSpeaker("speaker")
	edge := testSession("edge", 64512, 64500, "192.0.2.1")
	edge.Password = "wrong"
	paths := map[string][]Path{"edge": {path("198.51.100.10/32")}}
	s.apply([]Session{edge}, paths)
	l.never(6*time.Second, "session established with a wrong password", func() error { return r.established("192.0.2.2") })

	edge.Password = "s3cret-Pw"
	s.apply([]Session{edge}, paths)
	l.eventually(20*time.Second, func() error { return r.established("192.0.2.2") })
	l.eventually(10*time.Second, func() error {
		if got, err := r.route("198.51.100.10/32"); err != nil || len(got) != 1 {
			return fmt.Errorf("route: %+v, %v", got, err)
		}
		return nil
	})

	// And no password at all against a router that wants one.
	edge.Password = ""
	s.apply([]Session{edge}, paths)
	l.eventually(15*time.Second, func() error {
		if r.established("192.0.2.2") == nil {
			return fmt.Errorf("still established")
		}
		return nil
	})
	l.never(5*time.Second, "session established without the password", func() error { return r.established("192.0.2.2") })
}

// TestFRRIPv6: IPv6 routes over an IPv6 session, next hop our IPv6 address.
func TestFRRIPv6(t *testing.T) {
	l := newLab(t)
	r := l.startFRR("frr", frrConf(64500, "2001:db8::2 64512"))
	s := l.startSpeaker("speaker")
	edge6 := testSession("edge6", 64512, 64500, "2001:db8::1")
	p := Path{Prefix: netip.MustParsePrefix("2001:db8:1::20/128"), LargeCommunities: []LargeCommunity{{1, 2, 3}}}
	s.apply([]Session{edge6}, map[string][]Path{"edge6": {p, path("2001:db8:2::/64")}})
	l.eventually(20*time.Second, func() error { return r.established("2001:db8::2") })
	for _, prefix := range []string{"2001:db8:1::20/128", "2001:db8:2::/64"} {
		l.eventually(10*time.Second, func() error {
			paths, err := r.route(prefix)
			if err != nil || len(paths) != 1 {
				return fmt.Errorf("%s: paths %+v, %v", prefix, paths, err)
			}
			var hops []string
			for _, h := range paths[0].Nexthops {
				hops = append(hops, h.IP)
			}
			if !paths[0].Valid || !slices.Contains(hops, "2001:db8::2") {
				return fmt.Errorf("%s: valid %v via %v, want valid via 2001:db8::2", prefix, paths[0].Valid, hops)
			}
			return nil
		})
	}
	s.apply([]Session{edge6}, map[string][]Path{"edge6": {p}})
	l.eventually(10*time.Second, func() error {
		if got, err := r.route("2001:db8:2::/64"); err != nil || len(got) != 0 {
			return fmt.Errorf("withdrawn route still there: %+v, %v", got, err)
		}
		return nil
	})
}

// TestFRRChangeLeavesOtherSessions: changing one session's configuration
// resets that session only, and changing paths resets none.
func TestFRRChangeLeavesOtherSessions(t *testing.T) {
	l := newLab(t)
	l.ip("-n", l.spk, "addr", "add", "192.0.2.4/24", "dev", "eth0")
	r := l.startFRR("frr", frrConf(64500, "192.0.2.2 64512", "192.0.2.4 64513"))
	s := l.startSpeaker("speaker")
	a := testSession("a", 64512, 64500, "192.0.2.1")
	a.SourceAddress = netip.MustParseAddr("192.0.2.2")
	b := testSession("b", 64513, 64500, "192.0.2.1")
	b.SourceAddress = netip.MustParseAddr("192.0.2.4")
	b.RouterID = netip.MustParseAddr("192.0.2.4")
	s.apply([]Session{a, b}, map[string][]Path{"a": {path("198.51.100.1/32")}, "b": {path("198.51.100.2/32")}})
	for _, addr := range []string{"192.0.2.2", "192.0.2.4"} {
		l.eventually(20*time.Second, func() error { return r.established(addr) })
	}
	before, err := r.neighbor("192.0.2.2")
	if err != nil {
		t.Fatal(err)
	}

	// New paths on both sessions and a new hold time on b.
	b.HoldTime, b.KeepaliveTime = 6*time.Second, 2*time.Second
	s.apply([]Session{a, b}, map[string][]Path{"a": {path("198.51.100.1/32"), path("198.51.100.3/32")}, "b": {path("198.51.100.4/32")}})
	l.eventually(20*time.Second, func() error {
		n, err := r.neighbor("192.0.2.4")
		if err != nil {
			return err
		}
		if n.State != "Established" || n.ConnectionsEstablished < 2 {
			return fmt.Errorf("b: %+v, want re-established after its change", n)
		}
		for _, p := range []string{"198.51.100.3/32", "198.51.100.4/32"} {
			if got, err := r.route(p); err != nil || len(got) != 1 {
				return fmt.Errorf("%s: %+v, %v", p, got, err)
			}
		}
		return nil
	})
	after, err := r.neighbor("192.0.2.2")
	if err != nil {
		t.Fatal(err)
	}
	if after.State != "Established" || after.ConnectionsEstablished != before.ConnectionsEstablished || after.UpTimer <= before.UpTimer {
		t.Errorf("session a was disturbed: before %+v, after %+v", before, after)
	}
}

// TestFRRListen: with Options.ListenPort the session is also accepted
// when the router connects. The speaker's own attempts go to a closed
// port here, so only the router's connection can establish it.
func TestFRRListen(t *testing.T) {
	l := newLab(t)
	r := l.startFRR("frr", frrConf(64500, "192.0.2.2 64512"))
	s := l.startSpeakerIn(l.spk, "speaker", listenEnv+"=179")
	edge := testSession("edge", 64512, 64500, "192.0.2.1")
	edge.SourceAddress = netip.MustParseAddr("192.0.2.2")
	edge.Port = 1790 // nothing there
	s.apply([]Session{edge}, map[string][]Path{"edge": {path("198.51.100.10/32")}})
	if ls := l.listening(l.spk); !strings.Contains(ls, "192.0.2.2:179 ") {
		t.Errorf("listening sockets:\n%s\nwant 192.0.2.2:179", ls)
	}
	l.eventually(20*time.Second, func() error { return r.established("192.0.2.2") })
	l.eventually(10*time.Second, func() error {
		if got, err := r.route("198.51.100.10/32"); err != nil || len(got) != 1 {
			return fmt.Errorf("route: %+v, %v", got, err)
		}
		return nil
	})
}

// TestFRREBGPMultiHop: an eBGP router two hops away is reached only with
// ebgpMultiHop; without it the TTL of 1 stops our packets at the first hop.
func TestFRREBGPMultiHop(t *testing.T) {
	l := newRoutedLab(t)
	conf := frrConf(64500, "192.0.2.2 64512") + " neighbor 192.0.2.2 ebgp-multihop 255\n"
	r := l.startFRR("frr", conf)
	s := l.startSpeaker("speaker")
	far := testSession("far", 64512, 64500, "203.0.113.2")
	paths := map[string][]Path{"far": {path("198.51.100.10/32")}}
	s.apply([]Session{far}, paths)
	l.never(6*time.Second, "session to a router two hops away established without ebgpMultiHop", func() error { return r.established("192.0.2.2") })

	far.EBGPMultiHop = true
	s.apply([]Session{far}, paths)
	l.eventually(20*time.Second, func() error { return r.established("192.0.2.2") })
	l.eventually(10*time.Second, func() error {
		got, err := r.route("198.51.100.10/32")
		if err != nil || len(got) != 1 || got[0].Nexthops[0].IP != "192.0.2.2" {
			return fmt.Errorf("route: %+v, %v; want one via 192.0.2.2", got, err)
		}
		return nil
	})
}

// TestFRRRestart: when the router's bgpd restarts, the speaker reconnects
// and the routes come back without anything being applied again. (It takes
// about 6s: GoBGP idles a fixed 5s after a session drops, then waits one
// to two ConnectRetry intervals.)
func TestFRRRestart(t *testing.T) {
	l := newLab(t)
	r := l.startFRR("frr", frrConf(64500, "192.0.2.2 64512"))
	s := l.startSpeaker("speaker")
	edge := testSession("edge", 64512, 64500, "192.0.2.1")
	s.apply([]Session{edge}, map[string][]Path{"edge": {path("198.51.100.10/32"), path("198.51.100.11/32")}})
	present := func() error {
		if err := r.established("192.0.2.2"); err != nil {
			return err
		}
		return prefixesIn(r, "192.0.2.2", 2)
	}
	l.eventually(20*time.Second, present)
	for i := range 2 {
		start := time.Now()
		r.restartBgpd()
		l.eventually(30*time.Second, present)
		t.Logf("restart %d: routes back in FRR %s after bgpd was killed", i+1, time.Since(start).Round(10*time.Millisecond))
	}
	if st := s.status(); len(st) != 1 || !st[0].Up || st[0].Prefixes != 2 {
		t.Errorf("speaker status after the restarts = %+v", st)
	}
}
