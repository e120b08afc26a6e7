package l2

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/speaker"
)

func TestOwnerChanges(t *testing.T) {
	an := func(svc, ip string) speaker.Announcement {
		return speaker.Announcement{Service: types.NamespacedName{Namespace: "default", Name: svc}, IP: netip.MustParseAddr(ip), Protocol: speaker.ProtocolL2, Via: []string{"eth0"}}
	}
	steps := []struct {
		name string
		now  []speaker.Announcement
		want float64
	}{
		{"becomes owner of two", []speaker.Announcement{an("a", "192.0.2.10"), an("b", "2001:db8::10")}, 2},
		{"same again", []speaker.Announcement{an("a", "192.0.2.10"), an("b", "2001:db8::10")}, 0},
		{"a second Service on an owned address", []speaker.Announcement{an("a", "192.0.2.10"), an("c", "192.0.2.10"), an("b", "2001:db8::10")}, 0},
		{"one lost, one won", []speaker.Announcement{an("a", "192.0.2.10"), an("d", "192.0.2.11")}, 2},
		{"all lost", nil, 2},
	}
	var owns map[netip.Addr]bool
	for _, s := range steps {
		before := testutil.ToFloat64(ownerChanges)
		owns = countOwnerChanges(owns, s.now)
		if got := testutil.ToFloat64(ownerChanges) - before; got != s.want {
			t.Errorf("%s: portico_speaker_l2_owner_changes_total rose by %v, want %v", s.name, got, s.want)
		}
	}
}
