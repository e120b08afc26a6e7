package speaker

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
)

// recording is an Announcer that remembers the States it was given.
type recording struct {
	keep   bool
	states []*State
}

func (r *recording) Announce(_ context.Context, s *State) ([]Announcement, error) {
	r.states = append(r.states, s)
	return nil, nil
}

func (r *recording) KeepOnExit() bool { return r.keep }

// TestWithdrawLeavesKeepers: on the way out every announcer is told to
// announce nothing, except a Keeper (BGP, whose routes graceful restart
// keeps while the speaker restarts).
func TestWithdrawLeavesKeepers(t *testing.T) {
	l2, bgp := &recording{}, &recording{keep: true}
	s := newSpeaker(nil, nil, Options{Node: "node-1", Announcers: []Announcer{l2, bgp}, Log: logr.Discard()})
	s.withdraw()
	if len(l2.states) != 1 || l2.states[0].Node != "node-1" || len(l2.states[0].Services) != 0 {
		t.Errorf("layer 2 was given %+v, want one empty State", l2.states)
	}
	if len(bgp.states) != 0 {
		t.Errorf("a Keeper was told to withdraw: %+v", bgp.states)
	}
}
