package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/speaker"
)

// PasswordFunc reads the MD5 password a BGPPeer's passwordSecret names. It
// returns an error wrapping ErrNoPassword when the Secret or its key does
// not exist, as opposed to the API server being unreachable.
type PasswordFunc func(ctx context.Context, ref v1alpha1.SecretKeyRef) (string, error)

// ErrNoPassword says the password Secret or its key does not exist.
var ErrNoPassword = errors.New("no such Secret or key")

// Passwords are read at most this often, and each read may take this long:
// the speaker's one loop also runs layer 2 failover, which must not wait on
// an API server that is away.
const (
	passwordTTL     = 30 * time.Second
	passwordTimeout = time.Second
)

// Protocol is the BGP speaker.Announcer: it turns the speaker's State into
// an Input, Computes the Plan and Applies it to the sessions.
type Protocol struct {
	ann       *Announcer
	passwords PasswordFunc

	// last holds the last password read for each Secret key, and when, so
	// that a session keeps its password while the API server is
	// unreachable. Only Announce's caller touches it.
	last map[v1alpha1.SecretKeyRef]password

	mu sync.Mutex // guards peers, which Peers reads from another goroutine
	// peers are the BGPPeers that select this node, as of the last
	// Announce.
	peers map[string]peerReport
}

type peerReport struct {
	generation int64
	problem    string
	since      time.Time // of the problem
}

// PeerStatus is this node's session to one BGPPeer, for its status.
type PeerStatus struct {
	SessionStatus
	// Generation is the BGPPeer's generation the session follows.
	Generation int64
	// Problem is why the session is not as configured (a password that
	// cannot be read, a bad address, a neighbour GoBGP refused), if it is
	// not.
	Problem string
}

type password struct {
	value string
	read  time.Time
}

var _ speaker.Announcer = (*Protocol)(nil)

// NewProtocol returns a Protocol driving ann; passwords may be nil when no
// BGPPeer uses one.
func NewProtocol(ann *Announcer, passwords PasswordFunc) *Protocol {
	return &Protocol{ann: ann, passwords: passwords, last: map[v1alpha1.SecretKeyRef]password{}, peers: map[string]peerReport{}}
}

// Announce implements speaker.Announcer. Configuration problems (a bad
// BGPPeer, a password that cannot be read) leave that part out and come
// back as the error, after everything else was applied.
func (p *Protocol) Announce(ctx context.Context, st *speaker.State) ([]speaker.Announcement, error) {
	in, problems := p.input(ctx, st)
	plan := Compute(in)
	problems = append(problems, plan.Problems...)
	if err := p.ann.Apply(ctx, plan); err != nil {
		problems = append(problems, err)
	}
	p.report(st, problems)
	return announcements(in, plan), errors.Join(problems...)
}

// report remembers which BGPPeers select this node and their problems.
func (p *Protocol) report(st *speaker.State, problems []error) {
	byPeer := map[string][]string{}
	var walk func(error)
	walk = func(err error) {
		if pe, ok := err.(*PeerError); ok {
			byPeer[pe.Peer] = append(byPeer[pe.Peer], pe.Err.Error())
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	for _, err := range problems {
		walk(err)
	}
	var labels map[string]string
	if n := st.Nodes[st.Node]; n != nil {
		labels = n.Labels
	}
	peers := map[string]peerReport{}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, bp := range st.BGPPeers {
		if !lbservice.SelectsNode(bp.Spec.NodeSelectors, labels) {
			continue
		}
		r := peerReport{generation: bp.Generation, problem: strings.Join(byPeer[bp.Name], "; ")}
		if old, ok := p.peers[bp.Name]; ok && old.problem == r.problem {
			r.since = old.since
		} else {
			r.since = time.Now()
		}
		peers[bp.Name] = r
	}
	p.peers = peers
}

// Peers returns this node's session to each BGPPeer that selects it, as
// of the last Announce, sorted by name; a peer whose configuration failed
// has a session in state idle. Safe to call from any goroutine.
func (p *Protocol) Peers() []PeerStatus {
	sessions := map[string]SessionStatus{}
	for _, s := range p.ann.Status() {
		sessions[s.Name] = s
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PeerStatus, 0, len(p.peers))
	for name, r := range p.peers {
		s, ok := sessions[name]
		if !ok {
			s = SessionStatus{Name: name, State: "idle", Since: r.since}
		}
		out = append(out, PeerStatus{SessionStatus: s, Generation: r.generation, Problem: r.problem})
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (p *Protocol) input(ctx context.Context, st *speaker.State) (Input, []error) {
	var problems []error
	in := Input{Node: Node{Name: st.Node}, PoolLabels: map[string]map[string]string{}}
	if n := st.Nodes[st.Node]; n != nil {
		in.Node.Labels = n.Labels
		in.Node.NetworkUnavailable = lbservice.NetworkUnavailable(n)
		in.Node.RouterID = nodeIPv4(n)
	}
	for name, pool := range st.Pools {
		in.PoolLabels[name] = pool.Labels
	}
	for _, bp := range st.BGPPeers {
		password, err := p.password(ctx, bp)
		if err != nil {
			problems = append(problems, &PeerError{Peer: bp.Name, Err: err})
			continue
		}
		peer, err := PeerFromAPI(bp, password)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		in.Peers = append(in.Peers, peer)
	}
	for _, ba := range st.BGPAdvertisements {
		adv, err := AdvertisementFromAPI(ba)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		in.Advertisements = append(in.Advertisements, adv)
	}
	for _, s := range st.Services {
		in.Services = append(in.Services, Service{
			Name: s.Name.String(), Pool: s.Pool, IPs: s.IPs,
			LocalTraffic: s.LocalTraffic, ReadyNodes: s.ReadyNodes,
			Labels: s.Labels(), NamespaceLabels: st.NamespaceLabels[s.Name.Namespace],
		})
	}
	return in, problems
}

func (p *Protocol) password(ctx context.Context, bp *v1alpha1.BGPPeer) (string, error) {
	ref := bp.Spec.PasswordSecret
	if ref == nil {
		return "", nil
	}
	key := *ref
	if key.Namespace == "" {
		key.Namespace = "portico-system"
	}
	if key.Key == "" {
		key.Key = "password"
	}
	if p.passwords == nil {
		return "", fmt.Errorf("passwordSecret %s/%s: this speaker cannot read Secrets", key.Namespace, key.Name)
	}
	last, known := p.last[key]
	if known && time.Since(last.read) < passwordTTL {
		return last.value, nil
	}
	rctx, cancel := context.WithTimeout(ctx, passwordTimeout)
	pw, err := p.passwords(rctx, key)
	cancel()
	switch {
	case err == nil:
		p.last[key] = password{value: pw, read: time.Now()}
		return pw, nil
	case known && !errors.Is(err, ErrNoPassword):
		return last.value, nil // the API is away: keep the session as it was
	default:
		delete(p.last, key)
		return "", fmt.Errorf("passwordSecret %s/%s key %q: %w", key.Namespace, key.Name, key.Key, err)
	}
}

// KeepOnExit implements speaker.Keeper: BGP sessions are left as they are
// when the speaker stops. With graceful restart the router keeps the routes
// while the speaker restarts; without it the router drops them as the
// connection goes.
func (p *Protocol) KeepOnExit() bool { return true }

// nodeIPv4 is the node's first IPv4 InternalIP, the default router ID.
func nodeIPv4(n *corev1.Node) netip.Addr {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Unmap().Is4() {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// announcements says, per Service address this node advertises, to which
// peers a prefix holding it goes.
func announcements(in Input, plan Plan) []speaker.Announcement {
	var out []speaker.Announcement
	for _, s := range in.Services {
		// An aggregated prefix may cover a Local Service with no endpoint
		// here; this node does not announce that one.
		if s.LocalTraffic && !s.ReadyNodes[in.Node.Name] {
			continue
		}
		for _, ip := range s.IPs {
			var via []string
			for peer, paths := range plan.Paths {
				if slices.ContainsFunc(paths, func(p Path) bool { return p.Prefix.Contains(ip.Unmap()) }) {
					via = append(via, peer)
				}
			}
			if len(via) == 0 {
				continue
			}
			slices.Sort(via)
			ns, name := splitName(s.Name)
			a := speaker.Announcement{IP: ip, Protocol: speaker.ProtocolBGP, Via: via}
			a.Service.Namespace, a.Service.Name = ns, name
			out = append(out, a)
		}
	}
	return out
}

func splitName(s string) (string, string) {
	for i := range len(s) {
		if s[i] == '/' {
			return s[:i], s[i+1:]
		}
	}
	return "", s
}
