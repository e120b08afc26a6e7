// Package bgp is the BGP half of the speaker: it decides which prefixes this
// node advertises to which peers (Compute, pure and table-tested) and keeps
// embedded GoBGP sessions in line with that decision (Announcer).
//
// The speaker glue turns Kubernetes objects into the plain types of this
// file (PeerFromAPI and AdvertisementFromAPI do the CRDs), calls Compute
// whenever something changes, and hands the Plan to Announcer.Apply.
package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
)

// Defaults of the BGP timers (RFC 4271 suggests 90 s hold, a third of it
// for keepalives).
const (
	DefaultHoldTime = 90 * time.Second
	DefaultPort     = 179
)

// Session is one BGP session as the Announcer opens it: every field is
// resolved, and two Sessions are equal exactly when the session on the wire
// would be the same, so Apply can leave equal sessions alone.
type Session struct {
	// Name is the BGPPeer's name; it keys the session.
	Name          string
	MyASN         uint32
	PeerASN       uint32
	Address       netip.Addr
	Port          uint16 // 0 means 179
	SourceAddress netip.Addr
	RouterID      netip.Addr
	// HoldTime (at least 3s) and KeepaliveTime are sent rounded down to
	// whole seconds.
	HoldTime        time.Duration
	KeepaliveTime   time.Duration
	EBGPMultiHop    bool
	Password        string
	GracefulRestart bool
}

// Internal reports whether the session is iBGP.
func (s Session) Internal() bool { return s.MyASN == s.PeerASN }

// Peer is a BGPPeer: a Session template plus the nodes that open it. A zero
// RouterID is filled with the node's address by Compute.
type Peer struct {
	Session
	Nodes Selector
}

// Node is the node this speaker runs on.
type Node struct {
	Name   string
	Labels map[string]string
	// RouterID is the default BGP identifier, the node's IPv4 address.
	RouterID netip.Addr
	// NetworkUnavailable is the node condition of that name; such a node
	// advertises nothing, as does one labelled lbservice.ExcludeLabel.
	NetworkUnavailable bool
}

// Service is a LoadBalancer Service with addresses, as BGP needs to see it.
type Service struct {
	// Name is "namespace/name", for logs and tests.
	Name string
	// Pool is the AddressPool the IPs came from.
	Pool string
	IPs  []netip.Addr
	// LocalTraffic is externalTrafficPolicy: Local.
	LocalTraffic bool
	// ReadyNodes holds the nodes with at least one ready endpoint of the
	// Service; only consulted when LocalTraffic is set.
	ReadyNodes map[string]bool
	// Labels and NamespaceLabels are the Service's and its namespace's,
	// for the advertisements' service and namespace selectors.
	Labels, NamespaceLabels map[string]string
}

// LargeCommunity is an RFC 8092 large community.
type LargeCommunity struct {
	ASN, Data1, Data2 uint32
}

func (c LargeCommunity) String() string {
	return fmt.Sprintf("%d:%d:%d", c.ASN, c.Data1, c.Data2)
}

func (c LargeCommunity) compare(d LargeCommunity) int {
	if c.ASN != d.ASN {
		return cmpU32(c.ASN, d.ASN)
	}
	if c.Data1 != d.Data1 {
		return cmpU32(c.Data1, d.Data1)
	}
	return cmpU32(c.Data2, d.Data2)
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Advertisement is a BGPAdvertisement.
type Advertisement struct {
	Name string
	// Pools and PoolSelectors pick pools; when both are empty every pool is
	// picked, otherwise a pool named in Pools or matched by any selector is.
	Pools         []string
	PoolSelectors []labels.Selector
	// Services limits the Services of those pools it applies to; the
	// zero value applies to every one.
	Services lbservice.ServiceSelection
	// Nodes limits the nodes that advertise; empty means every node.
	Nodes Selector
	// Peers limits the sessions the paths go to; empty means every session.
	Peers []string
	// AggregationLength and AggregationLengthV6 are the prefix lengths
	// advertised; 0 means a host route (32 or 128).
	AggregationLength   int
	AggregationLengthV6 int
	// LocalPref is sent on iBGP sessions only; nil leaves the peer's default.
	LocalPref        *uint32
	Communities      []uint32
	LargeCommunities []LargeCommunity
}

// Selector is a list of label selectors ORed together; an empty Selector
// matches every label set, as an empty nodeSelectors list does in the API.
type Selector = lbservice.Selector

// SelectorFromAPI converts the API's list of label selectors.
func SelectorFromAPI(ls []metav1.LabelSelector) (Selector, error) {
	var s Selector
	for i := range ls {
		sel, err := metav1.LabelSelectorAsSelector(&ls[i])
		if err != nil {
			return nil, fmt.Errorf("selector %d: %w", i, err)
		}
		s = append(s, sel)
	}
	return s, nil
}

// Well-known communities (RFC 1997, RFC 3765, RFC 7999, RFC 8326).
var wellKnown = map[string]uint32{
	"no-export":           0xFFFFFF01,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
	"no-peer":             0xFFFFFF04,
	"blackhole":           0xFFFF029A,
	"graceful-shutdown":   0xFFFF0000,
}

// ParseCommunity parses the API spelling of a community: "ASN:value",
// "large:ASN:value:value" or a well-known name. Exactly one of the results
// is meaningful: large is nil for a standard community.
func ParseCommunity(s string) (standard uint32, large *LargeCommunity, err error) {
	if v, ok := wellKnown[s]; ok {
		return v, nil, nil
	}
	if rest, ok := strings.CutPrefix(s, "large:"); ok {
		parts := strings.Split(rest, ":")
		if len(parts) != 3 {
			return 0, nil, fmt.Errorf("community %q: a large community is large:ASN:value:value", s)
		}
		var v [3]uint32
		for i, p := range parts {
			n, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				return 0, nil, fmt.Errorf("community %q: part %d must be 0-4294967295", s, i+1)
			}
			v[i] = uint32(n)
		}
		return 0, &LargeCommunity{v[0], v[1], v[2]}, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, nil, fmt.Errorf("community %q: want ASN:value, large:ASN:value:value or a well-known name", s)
	}
	h, err1 := strconv.ParseUint(hi, 10, 16)
	l, err2 := strconv.ParseUint(lo, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, nil, fmt.Errorf("community %q: each part of a standard community must be 0-65535", s)
	}
	return uint32(h)<<16 | uint32(l), nil, nil
}

// PeerFromAPI converts a BGPPeer; password is the content of its
// passwordSecret, read by the caller.
func PeerFromAPI(p *v1alpha1.BGPPeer, password string) (Peer, error) {
	wrap := func(err error) error { return &PeerError{Peer: p.Name, Err: err} }
	s := p.Spec
	out := Peer{Session: Session{
		Name:            p.Name,
		MyASN:           uint32(s.MyASN),
		PeerASN:         uint32(s.PeerASN),
		Port:            DefaultPort,
		HoldTime:        DefaultHoldTime,
		EBGPMultiHop:    s.EBGPMultiHop,
		Password:        password,
		GracefulRestart: s.GracefulRestart,
	}}
	if s.MyASN < 1 || s.MyASN > 4294967295 || s.PeerASN < 1 || s.PeerASN > 4294967295 {
		return Peer{}, wrap(fmt.Errorf("ASNs must be 1-4294967295"))
	}
	var err error
	if out.Address, err = netip.ParseAddr(s.PeerAddress); err != nil {
		return Peer{}, wrap(fmt.Errorf("peerAddress: %w", err))
	}
	out.Address = out.Address.Unmap()
	if s.PeerPort != 0 {
		if s.PeerPort < 1 || s.PeerPort > 65535 {
			return Peer{}, wrap(fmt.Errorf("peerPort %d: must be 1-65535", s.PeerPort))
		}
		out.Port = uint16(s.PeerPort)
	}
	if s.SourceAddress != "" {
		if out.SourceAddress, err = netip.ParseAddr(s.SourceAddress); err != nil {
			return Peer{}, wrap(fmt.Errorf("sourceAddress: %w", err))
		}
		out.SourceAddress = out.SourceAddress.Unmap()
		if out.SourceAddress.Is4() != out.Address.Is4() {
			return Peer{}, wrap(fmt.Errorf("sourceAddress %s and peerAddress %s are of different families", out.SourceAddress, out.Address))
		}
	}
	if s.RouterID != "" {
		if out.RouterID, err = netip.ParseAddr(s.RouterID); err != nil || !out.RouterID.Is4() {
			return Peer{}, wrap(fmt.Errorf("routerID %q: must be an IPv4 address", s.RouterID))
		}
	}
	if s.HoldTime != nil {
		out.HoldTime = s.HoldTime.Duration
	}
	if s.KeepaliveTime != nil {
		out.KeepaliveTime = s.KeepaliveTime.Duration
	} else {
		out.KeepaliveTime = out.HoldTime / 3
	}
	// GoBGP replaces a hold time of 0 with 90s; say so rather than send
	// something else than what was asked.
	if out.HoldTime < 3*time.Second {
		return Peer{}, wrap(fmt.Errorf("holdTime %s: must be at least 3s (a hold time of 0, no keepalives, is not supported by the speaker's BGP implementation)", out.HoldTime))
	}
	if out.KeepaliveTime >= out.HoldTime {
		return Peer{}, wrap(fmt.Errorf("keepaliveTime %s must be shorter than holdTime %s", out.KeepaliveTime, out.HoldTime))
	}
	if out.Nodes, err = SelectorFromAPI(s.NodeSelectors); err != nil {
		return Peer{}, wrap(fmt.Errorf("nodeSelectors: %w", err))
	}
	return out, nil
}

// AdvertisementFromAPI converts a BGPAdvertisement.
func AdvertisementFromAPI(a *v1alpha1.BGPAdvertisement) (Advertisement, error) {
	wrap := func(err error) error { return fmt.Errorf("BGPAdvertisement %q: %w", a.Name, err) }
	s := a.Spec
	out := Advertisement{
		Name:  a.Name,
		Pools: slices.Clone(s.AddressPools),
		Peers: slices.Clone(s.Peers),
	}
	var err error
	for i := range s.AddressPoolSelectors {
		sel, err := metav1.LabelSelectorAsSelector(&s.AddressPoolSelectors[i])
		if err != nil {
			return Advertisement{}, wrap(fmt.Errorf("addressPoolSelectors %d: %w", i, err))
		}
		out.PoolSelectors = append(out.PoolSelectors, sel)
	}
	if out.Services, err = lbservice.ParseServiceSelection(s.ServiceSelectors, s.NamespaceSelectors); err != nil {
		return Advertisement{}, wrap(err)
	}
	if out.Nodes, err = SelectorFromAPI(s.NodeSelectors); err != nil {
		return Advertisement{}, wrap(fmt.Errorf("nodeSelectors: %w", err))
	}
	// Zero would be a default route: nobody means that, and a router
	// taking it would send all its traffic to the cluster.
	if l := s.AggregationLength; l != nil {
		if *l < 1 || *l > 32 {
			return Advertisement{}, wrap(fmt.Errorf("aggregationLength %d: must be 1-32", *l))
		}
		out.AggregationLength = int(*l)
	}
	if l := s.AggregationLengthV6; l != nil {
		if *l < 1 || *l > 128 {
			return Advertisement{}, wrap(fmt.Errorf("aggregationLengthV6 %d: must be 1-128", *l))
		}
		out.AggregationLengthV6 = int(*l)
	}
	if s.LocalPref != nil {
		if *s.LocalPref < 0 || *s.LocalPref > 4294967295 {
			return Advertisement{}, wrap(fmt.Errorf("localPref %d: must be 0-4294967295", *s.LocalPref))
		}
		v := uint32(*s.LocalPref)
		out.LocalPref = &v
	}
	for _, c := range s.Communities {
		std, large, err := ParseCommunity(string(c))
		if err != nil {
			return Advertisement{}, wrap(err)
		}
		if large != nil {
			out.LargeCommunities = append(out.LargeCommunities, *large)
		} else {
			out.Communities = append(out.Communities, std)
		}
	}
	return out, nil
}
