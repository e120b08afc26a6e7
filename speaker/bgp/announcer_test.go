package bgp

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAnnouncerWithoutPeer drives the Announcer with no router at all: the
// session is reported down, its metrics say so, a bad session is an error
// that does not stop the others, and removing sessions empties the state.
func TestAnnouncerWithoutPeer(t *testing.T) {
	ctx := context.Background()
	a := NewAnnouncer(Options{ConnectRetry: time.Second})
	defer a.Close(ctx)
	// Port 1 on loopback: refused at once, never established.
	down := Session{Name: "down", MyASN: 64512, PeerASN: 64500, Address: netip.MustParseAddr("127.0.0.1"), Port: 1,
		RouterID: netip.MustParseAddr("192.0.2.2"), HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second}
	bad := down
	bad.Name, bad.RouterID = "bad", netip.Addr{}
	err := a.Apply(ctx, Plan{Sessions: []Session{bad, down}, Paths: map[string][]Path{"down": {path("198.51.100.1/32"), path("2001:db8::1/128")}}})
	if err == nil || !strings.Contains(err.Error(), `BGPPeer "bad": session`) {
		t.Errorf("Apply error = %v, want one naming session bad", err)
	}
	st := a.Status()
	if len(st) != 1 || st[0].Name != "down" || st[0].Up || st[0].Prefixes != 0 {
		t.Errorf("status = %+v, want only down, not up, 0 prefixes", st)
	}
	want := `
# HELP portico_speaker_bgp_prefixes_advertised Prefixes advertised to the BGPPeer; 0 while the session is down (metallb_bgp_announced_prefixes_total).
# TYPE portico_speaker_bgp_prefixes_advertised gauge
portico_speaker_bgp_prefixes_advertised{peer="down"} 0
# HELP portico_speaker_bgp_sessions_up 1 when the BGP session to the BGPPeer is established, 0 otherwise (metallb_bgp_session_up).
# TYPE portico_speaker_bgp_sessions_up gauge
portico_speaker_bgp_sessions_up{peer="down"} 0
# HELP portico_speaker_bgp_updates_sent_total BGP UPDATE messages sent to the BGPPeer, as GoBGP counts them; starts again from 0 when the session is reset for a configuration change (metallb_bgp_updates_total).
# TYPE portico_speaker_bgp_updates_sent_total counter
portico_speaker_bgp_updates_sent_total{peer="down"} 0
`
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	// Applying the same plan again leaves the session alone; removing it
	// clears everything.
	if err := a.Apply(ctx, Plan{Sessions: []Session{down}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(ctx, Plan{}); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(); len(st) != 0 {
		t.Errorf("status after an empty plan = %+v", st)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("metrics after an empty plan: %d series, %v", n, err)
	}
	if len(a.spare) != 1 {
		t.Errorf("%d spare servers, want the closed session's one kept for reuse", len(a.spare))
	}
}

func TestAPIPath(t *testing.T) {
	for _, p := range []Path{
		path("198.51.100.0/24"),
		{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), Communities: []uint32{1}, LargeCommunities: []LargeCommunity{{1, 2, 3}}, LocalPref: u32(5)},
	} {
		ap, err := apiPath(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		// Origin, next hop (or MP_REACH), then one attribute per kind.
		want := 2
		if len(p.Communities) > 0 {
			want += 3
		}
		if len(ap.Pattrs) != want {
			t.Errorf("%s: %d attributes, want %d", p, len(ap.Pattrs), want)
		}
	}
}
