package bgp

import (
	"fmt"
	"net/netip"
	"strings"
)

// Event reasons on a BGPPeer, one per change of a node's session.
const (
	ReasonSessionUp   = "SessionUp"
	ReasonSessionDown = "SessionDown"
)

// SessionEvent returns the reason and note of the Event for a change of
// st on node. porticoctl reads the note back with ParseSessionNote, so
// its wording is fixed: "session from node <node> to <address> <state>".
func SessionEvent(node string, st SessionStatus) (reason, note string) {
	reason = ReasonSessionDown
	if st.Up {
		reason = ReasonSessionUp
	}
	return reason, fmt.Sprintf("session from node %s to %s %s", node, st.Address, st.State)
}

// ParseSessionNote reads a note written by SessionEvent.
func ParseSessionNote(note string) (node string, addr netip.Addr, state string, ok bool) {
	f := strings.Fields(note)
	if len(f) != 7 || f[0] != "session" || f[1] != "from" || f[2] != "node" || f[4] != "to" {
		return "", netip.Addr{}, "", false
	}
	addr, err := netip.ParseAddr(f[5])
	if err != nil {
		return "", netip.Addr{}, "", false
	}
	return f[3], addr, f[6], true
}
