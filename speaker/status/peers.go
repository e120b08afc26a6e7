package status

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// PeerSession is this node's session to one BGPPeer.
type PeerSession struct {
	Peer string
	// Generation is the BGPPeer's generation the session follows.
	Generation int64
	// State is GoBGP's name of the BGP state: idle, connect, active,
	// opensent, openconfirm, established.
	State    string
	Up       bool
	Prefixes int
	// Problem is the last configuration error, if any.
	Problem string
	// Since is when the session last went up or down.
	Since time.Time
}

// ConditionEstablished is the condition of a node's session to a BGPPeer.
const ConditionEstablished = "Established"

// Peers writes this node's entry in the status of each BGPPeer it has a
// session to, by server-side apply with a field manager of the node's own
// (FieldManager), so that the speakers never overwrite each other's
// entries. An entry goes when the session does, and when the speaker
// stops; the entries of nodes that are not live speakers are removed by
// the live speaker that ranks first by name, applying an empty status as
// the gone node's field manager.
//
// Sessions change on GoBGP's goroutines and prefix counts with every
// announcement, so the writer reads them from source: when poked, and
// every Poll. It is a manager Runnable.
type Peers struct {
	client client.Client
	node   string
	source func() []PeerSession
	opts   Options
	limit  *rate.Limiter
	kick   chan struct{}

	mu      sync.Mutex
	members []string // sorted; nil until known

	// Owned by Start.
	written map[string]PeerSession
	swept   string
}

// Poll is how often Peers reads its source without being poked.
const Poll = 2 * time.Second

// NewPeers returns the writer of node's entries; source must be safe to
// call from the writer's goroutine.
func NewPeers(c client.Client, node string, source func() []PeerSession, opts Options) *Peers {
	opts.defaults()
	return &Peers{
		client:  c,
		node:    node,
		source:  source,
		opts:    opts,
		limit:   rate.NewLimiter(rate.Limit(opts.QPS), opts.Burst),
		kick:    make(chan struct{}, 1),
		written: map[string]PeerSession{},
	}
}

// FieldManager is the field manager of node's entries.
func FieldManager(node string) string {
	m := "portico-speaker-" + node
	if len(m) <= 128 {
		return m
	}
	sum := sha256.Sum256([]byte(node))
	return "portico-speaker-" + hex.EncodeToString(sum[:])
}

// Poke makes the writer read its source now. It never blocks.
func (p *Peers) Poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// SetMembers says which speakers are alive. It never blocks.
func (p *Peers) SetMembers(names []string) {
	p.mu.Lock()
	p.members = slices.Sorted(slices.Values(names))
	p.mu.Unlock()
	p.Poke()
}

// NeedLeaderElection is false: every node writes its own entries.
func (p *Peers) NeedLeaderElection() bool { return false }

// Start writes until ctx ends, then removes this node's entries, best
// effort.
func (p *Peers) Start(ctx context.Context) error {
	poll := time.NewTicker(Poll)
	defer poll.Stop()
	resync := time.NewTicker(p.opts.Resync)
	defer resync.Stop()
	for {
		full := false
		select {
		case <-ctx.Done():
			p.cleanup()
			return nil
		case <-p.kick:
		case <-poll.C:
		case <-resync.C:
			full = true
		}
		if err := p.pass(ctx, full); err != nil && ctx.Err() == nil {
			p.opts.Log.Error(err, "writing BGPPeer status; retrying", "after", Poll)
		}
	}
}

func (p *Peers) pass(ctx context.Context, full bool) error {
	var errs []error
	now := map[string]bool{}
	for _, s := range p.source() {
		now[s.Peer] = true
		if old, ok := p.written[s.Peer]; ok && old == s && !full {
			continue
		}
		if err := p.apply(ctx, s.Peer, p.node, p.entry(s)); err != nil {
			errs = append(errs, err)
			continue
		}
		p.written[s.Peer] = s
	}
	for peer := range p.written {
		if now[peer] {
			continue
		}
		if err := p.apply(ctx, peer, p.node, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(p.written, peer)
	}
	p.mu.Lock()
	members := p.members
	p.mu.Unlock()
	if key := strings.Join(members, ","); len(members) > 0 && members[0] == p.node && (full || key != p.swept) {
		if err := p.sweep(ctx, members); err != nil {
			errs = append(errs, err)
		} else {
			p.swept = key
		}
	}
	return errors.Join(errs...)
}

func (p *Peers) entry(s PeerSession) *v1alpha1.BGPPeerNodeStatus {
	state := stateName(s.State)
	cond := metav1.Condition{
		Type:               ConditionEstablished,
		Status:             metav1.ConditionFalse,
		ObservedGeneration: s.Generation,
		LastTransitionTime: metav1.NewTime(s.Since.Truncate(time.Second)),
		Reason:             state,
		Message:            fmt.Sprintf("the session from node %s is %s", p.node, state),
	}
	switch {
	case s.Up:
		cond.Status = metav1.ConditionTrue
		cond.Message = fmt.Sprintf("the session from node %s is established; %d prefixes sent", p.node, s.Prefixes)
	case s.Problem != "":
		cond.Reason = "ConfigurationError"
		cond.Message = s.Problem
	}
	e := &v1alpha1.BGPPeerNodeStatus{
		Node:       p.node,
		State:      state,
		LastError:  s.Problem,
		Since:      cond.LastTransitionTime,
		Conditions: []metav1.Condition{cond},
	}
	if s.Up {
		e.PrefixesSent = int32(min(s.Prefixes, 1<<31-1))
	}
	return e
}

// stateName spells GoBGP's state as BGP's RFC does.
func stateName(s string) string {
	switch s {
	case "idle":
		return "Idle"
	case "connect":
		return "Connect"
	case "active":
		return "Active"
	case "opensent":
		return "OpenSent"
	case "openconfirm":
		return "OpenConfirm"
	case "established":
		return "Established"
	}
	return "Unknown"
}

// apply server-side applies node's entry of peer, as node's field manager;
// a nil entry removes it.
func (p *Peers) apply(ctx context.Context, peer, node string, e *v1alpha1.BGPPeerNodeStatus) error {
	st := map[string]any{}
	if e != nil {
		st["nodes"] = []*v1alpha1.BGPPeerNodeStatus{e}
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "BGPPeer",
		"metadata":   map[string]any{"name": peer},
		"status":     st,
	})
	if err != nil {
		return err
	}
	if err := p.limit.Wait(ctx); err != nil {
		return err
	}
	obj := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peer}}
	err = p.client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(FieldManager(node)), client.ForceOwnership)
	if apierrors.IsNotFound(err) {
		return nil // the BGPPeer is gone, and its status with it
	}
	if err != nil {
		return fmt.Errorf("BGPPeer %q: applying the status of node %q: %w", peer, node, err)
	}
	return nil
}

// sweep removes the entries of nodes that are not live speakers.
func (p *Peers) sweep(ctx context.Context, members []string) error {
	var list v1alpha1.BGPPeerList
	if err := p.client.List(ctx, &list); err != nil {
		return fmt.Errorf("listing BGPPeers: %w", err)
	}
	var errs []error
	for _, bp := range list.Items {
		for _, n := range bp.Status.Nodes {
			if slices.Contains(members, n.Node) {
				continue
			}
			p.opts.Log.Info("removing the BGPPeer status of a node that is gone", "peer", bp.Name, "node", n.Node)
			if err := p.apply(ctx, bp.Name, n.Node, nil); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (p *Peers) cleanup() {
	if len(p.written) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.CleanupTimeout)
	defer cancel()
	for peer := range p.written {
		if err := p.apply(ctx, peer, p.node, nil); err != nil {
			p.opts.Log.Error(err, "removing BGPPeer status on exit")
		}
	}
}
