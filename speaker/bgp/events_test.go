package bgp

import (
	"net/netip"
	"testing"
)

func TestSessionNoteRoundTrip(t *testing.T) {
	for _, st := range []SessionStatus{
		{Name: "tor", Address: netip.MustParseAddr("192.0.2.1"), State: "established", Up: true},
		{Name: "tor6", Address: netip.MustParseAddr("2001:db8::1"), State: "active"},
	} {
		reason, note := SessionEvent("node-1", st)
		if want := map[bool]string{true: ReasonSessionUp, false: ReasonSessionDown}[st.Up]; reason != want {
			t.Errorf("reason %q, want %q", reason, want)
		}
		node, addr, state, ok := ParseSessionNote(note)
		if !ok || node != "node-1" || addr != st.Address || state != st.State {
			t.Errorf("ParseSessionNote(%q) = %q %v %q %v", note, node, addr, state, ok)
		}
	}
	if _, _, _, ok := ParseSessionNote("announcing 192.0.2.1 by bgp from node n via x"); ok {
		t.Error("parsed a note that is not a session's")
	}
}
