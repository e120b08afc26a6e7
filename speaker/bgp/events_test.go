package bgp

import (
	"net/netip"
	"testing"
)

func TestSessionEvent(t *testing.T) {
	for _, c := range []struct {
		st           SessionStatus
		reason, note string
	}{
		{SessionStatus{Name: "tor", Address: netip.MustParseAddr("192.0.2.1"), State: "established", Up: true},
			ReasonSessionUp, "session from node node-1 to 192.0.2.1 established"},
		{SessionStatus{Name: "tor6", Address: netip.MustParseAddr("2001:db8::1"), State: "active"},
			ReasonSessionDown, "session from node node-1 to 2001:db8::1 active"},
	} {
		reason, note := SessionEvent("node-1", c.st)
		if reason != c.reason || note != c.note {
			t.Errorf("SessionEvent(node-1, %+v) = %q, %q; want %q, %q", c.st, reason, note, c.reason, c.note)
		}
	}
}
