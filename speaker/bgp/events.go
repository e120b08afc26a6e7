package bgp

import "fmt"

// Event reasons on a BGPPeer, one per change of a node's session.
const (
	ReasonSessionUp   = "SessionUp"
	ReasonSessionDown = "SessionDown"
)

// SessionEvent returns the reason and note of the Event for a change of
// st on node, for people reading kubectl describe: "session from node
// <node> to <address> <state>". Programs read the BGPPeer's status.
func SessionEvent(node string, st SessionStatus) (reason, note string) {
	reason = ReasonSessionDown
	if st.Up {
		reason = ReasonSessionUp
	}
	return reason, fmt.Sprintf("session from node %s to %s %s", node, st.Address, st.State)
}
