package speaker

import (
	"context"
	"net/netip"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"
)

// fixed is an Announcer that reports the same announcements every time.
type fixed []Announcement

func (f *fixed) Announce(context.Context, *State) ([]Announcement, error) { return *f, nil }

func TestAnnouncementsMetric(t *testing.T) {
	web := types.NamespacedName{Namespace: "shop", Name: "web"}
	api := types.NamespacedName{Namespace: "shop", Name: "api"}
	v4, v6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")
	l2 := &fixed{
		{Service: web, IP: v4, Protocol: ProtocolL2, Via: []string{"eth0", "eth1"}}, // two interfaces, one announcement
		{Service: web, IP: v6, Protocol: ProtocolL2, Via: []string{"eth0"}},
		{Service: api, IP: v4, Protocol: ProtocolL2, Via: []string{"eth0"}}, // a shared IP counts per Service
	}
	bgp := &fixed{{Service: web, IP: v4, Protocol: ProtocolBGP, Via: []string{"tor-a", "tor-b"}}}
	s := newSpeaker(nil, nil, Options{Node: "n1", Announcers: []Announcer{l2, bgp}, Log: logr.Discard()})
	check := func(wantL2, wantBGP float64) {
		t.Helper()
		if got := testutil.ToFloat64(announcements.WithLabelValues(ProtocolL2)); got != wantL2 {
			t.Errorf(`portico_speaker_announcements{protocol="layer2"} = %v, want %v`, got, wantL2)
		}
		if got := testutil.ToFloat64(announcements.WithLabelValues(ProtocolBGP)); got != wantBGP {
			t.Errorf(`portico_speaker_announcements{protocol="bgp"} = %v, want %v`, got, wantBGP)
		}
	}
	if err := s.announce(context.Background(), &State{Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	check(3, 1)
	*l2 = (*l2)[:1]
	*bgp = nil
	if err := s.announce(context.Background(), &State{Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	check(1, 0)
	s.withdraw()
	check(0, 0)
}
