// Package speaker decides, on every node, which LoadBalancer addresses the
// node announces, and hands that to the protocols that announce them:
// layer 2 (package l2, ARP and NDP) and BGP (package bgp).
//
// The glue here watches the API through a cache, builds an immutable
// State from it and from the live speakers (package member), and gives it
// to each Announcer. What an Announcer does with the State is its own
// business; it reports back what this node announces, and the glue tells
// users with Events. Because the cache keeps what it last listed when the
// API server goes away, announcing goes on from the last-known State.
package speaker

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/pools"
	"github.com/portico-lb/portico/speaker/member"
)

// Protocol names, as they appear in Events and in porticoctl status.
const (
	ProtocolL2  = "layer2"
	ProtocolBGP = "bgp"
)

// Announcer is one way of announcing addresses: layer 2 or BGP.
type Announcer interface {
	// Announce makes this node announce what s calls for, and stop
	// announcing everything else, then returns what the node announces
	// now. It is called by one goroutine at a time, after every change,
	// with the whole State; it must not keep s beyond the call's effects
	// nor modify it, and must not block on the network for long. On error
	// the glue calls it again later with the then-current State.
	Announce(ctx context.Context, s *State) ([]Announcement, error)
}

// Announcement is one address this node announces for one Service.
type Announcement struct {
	Service  types.NamespacedName
	IP       netip.Addr
	Protocol string
	// Via says where: the interfaces for layer 2, the peers for BGP.
	Via []string
}

// State is the cluster as this speaker sees it. Built fresh for each
// Announce and never modified afterwards.
type State struct {
	// Node is this speaker's node.
	Node string
	// Members are the live speakers, this one included, by name.
	Members []member.Member
	// Nodes by name.
	Nodes map[string]*corev1.Node
	// Services are the LoadBalancer Services Portico serves that have
	// addresses, ordered by namespace/name.
	Services []Service
	// Pools by name.
	Pools map[string]*v1alpha1.AddressPool
	// NamespaceLabels are the labels of every namespace, by name, for
	// the advertisements' namespaceSelectors.
	NamespaceLabels   map[string]map[string]string
	L2Advertisements  []*v1alpha1.L2Advertisement
	BGPAdvertisements []*v1alpha1.BGPAdvertisement
	BGPPeers          []*v1alpha1.BGPPeer
}

// Service is a LoadBalancer Service with addresses.
type Service struct {
	Name types.NamespacedName
	IPs  []netip.Addr
	// Pool is the pool the addresses came from (the controller's
	// allocated-from-pool annotation, else the pool holding them).
	Pool string
	// LocalTraffic is externalTrafficPolicy: Local.
	LocalTraffic bool
	// ReadyNodes are the nodes with a ready endpoint of the Service.
	ReadyNodes map[string]bool
	Object     *corev1.Service
}

// Labels are the Service's labels.
func (s Service) Labels() map[string]string {
	if s.Object == nil {
		return nil
	}
	return s.Object.Labels
}

// SelectsPool reports whether an advertisement with these pool names and
// selectors covers the named pool. With neither, it covers every pool.
func (s *State) SelectsPool(pool string, names []string, selectors []metav1.LabelSelector) bool {
	var poolLabels map[string]string
	if p, ok := s.Pools[pool]; ok {
		poolLabels = p.Labels
	} else if len(names) > 0 || len(selectors) > 0 {
		return slices.Contains(names, pool)
	}
	return lbservice.SelectsPool(pool, poolLabels, names, selectors)
}

// SelectsService reports whether an advertisement's service selection
// applies to one of the State's Services.
func (s *State) SelectsService(sel lbservice.ServiceSelection, svc Service) bool {
	return sel.Matches(svc.Labels(), s.NamespaceLabels[svc.Name.Namespace])
}

// readNamespaces fills NamespaceLabels from r.
func (s *State) readNamespaces(ctx context.Context, r client.Reader) error {
	var list corev1.NamespaceList
	if err := r.List(ctx, &list); err != nil {
		return err
	}
	s.NamespaceLabels = make(map[string]map[string]string, len(list.Items))
	for i := range list.Items {
		s.NamespaceLabels[list.Items[i].Name] = list.Items[i].Labels
	}
	return nil
}

// poolOf finds the pool holding ip, for Services without the annotation.
func poolOf(ps map[string]*v1alpha1.AddressPool, ip netip.Addr) string {
	names := make([]string, 0, len(ps))
	for name := range ps {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, a := range ps[name].Spec.Addresses {
			r, err := pools.ParseRange(string(a))
			if err == nil && r.Contains(ip) {
				return name
			}
		}
	}
	return ""
}

// Event notes, for people reading kubectl describe: "announcing <ip> by
// <protocol> from node <node> via <a,b>". Programs read the
// ServiceAnnouncements instead.
const (
	ReasonAnnounced = "Announced"
	ReasonWithdrawn = "Withdrawn"
)

// Note is the note of an Announced or Withdrawn Event.
func Note(verb string, a Announcement, node string) string {
	via := strings.Join(a.Via, ",")
	if via == "" {
		via = "-"
	}
	return fmt.Sprintf("%s %s by %s from node %s via %s", verb, a.IP, a.Protocol, node, via)
}
