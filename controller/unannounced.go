package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
)

// The condition on a Service whose assigned addresses no node announces,
// and its reasons. It is set only while that lasts, and removed once every
// address is announced, so a healthy Service carries none.
const (
	ConditionAnnounced = "portico.dev/Announced"
	// ReasonNotAnnounced is the Warning Event saying the same.
	ReasonNotAnnounced = "NotAnnounced"

	// No L2Advertisement or BGPAdvertisement applies to the Service (its
	// pool, its labels and its namespace's).
	ReasonNoAdvertisement = "NoAdvertisement"
	// Every node is excluded, not Ready, without network, or left out
	// by the advertisements' and peers' node selectors.
	ReasonNoEligibleNode = "NoEligibleNode"
	// externalTrafficPolicy: Local, and no node that could announce has
	// a ready endpoint of the Service.
	ReasonNoLocalEndpoint = "NoLocalEndpoint"
	// Some node may announce the address, yet no speaker says it does.
	ReasonNotReported = "NotReported"
)

// Cluster is what WhyUnannounced looks at besides the Service.
type Cluster struct {
	// Pool is the Service's pool (nil when it is gone).
	Pool              *v1alpha1.AddressPool
	L2Advertisements  []v1alpha1.L2Advertisement
	BGPAdvertisements []v1alpha1.BGPAdvertisement
	BGPPeers          []v1alpha1.BGPPeer
	Nodes             []corev1.Node
	NamespaceLabels   map[string]string
	// EndpointNodes are the nodes with a ready endpoint of the Service.
	EndpointNodes map[string]bool
}

// WhyUnannounced says, by the speakers' rules, why no node announces the
// Service's addresses missing: a reason of the Announced condition and a
// message for a person. It checks what the API shows; what only the
// speakers know (an interface on the address's subnet, a BGP session) is
// named as what to look at when the API shows nothing wrong.
func WhyUnannounced(svc *corev1.Service, missing []netip.Addr, pool string, x Cluster) (reason, message string) {
	addrs := make([]string, len(missing))
	for i, ip := range missing {
		addrs[i] = ip.String()
	}
	what := strings.Join(addrs, ", ")
	explain := fmt.Sprintf("; kubectl portico explain service -n %s %s shows the whole chain", svc.Namespace, svc.Name)

	var poolLabels map[string]string
	if x.Pool != nil {
		poolLabels = x.Pool.Labels
	}
	applies := func(pools []string, poolSel, svcSel, nsSel []metav1.LabelSelector) bool {
		if !lbservice.SelectsPool(pool, poolLabels, pools, poolSel) {
			return false
		}
		sel, err := lbservice.ParseServiceSelection(svcSel, nsSel)
		return err == nil && sel.Matches(svc.Labels, x.NamespaceLabels)
	}
	var l2, bgp []int
	for i, a := range x.L2Advertisements {
		if applies(a.Spec.AddressPools, a.Spec.AddressPoolSelectors, a.Spec.ServiceSelectors, a.Spec.NamespaceSelectors) {
			l2 = append(l2, i)
		}
	}
	for i, a := range x.BGPAdvertisements {
		if applies(a.Spec.AddressPools, a.Spec.AddressPoolSelectors, a.Spec.ServiceSelectors, a.Spec.NamespaceSelectors) {
			bgp = append(bgp, i)
		}
	}
	if len(l2)+len(bgp) == 0 {
		return ReasonNoAdvertisement, fmt.Sprintf("%s is announced by no node: no L2Advertisement or BGPAdvertisement applies to pool %s and this Service; create one (for layer 2: kind L2Advertisement, spec.addressPools: [%s])%s",
			what, pool, pool, explain)
	}

	local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	var eligible, noEndpoint []string
	var whyNot []string
	for i := range x.Nodes {
		n := &x.Nodes[i]
		var why []string
		if lbservice.Excluded(n.Labels) {
			why = append(why, "labelled "+lbservice.ExcludeLabel)
		}
		if !lbservice.NodeReady(n) {
			why = append(why, "not Ready")
		}
		if lbservice.NetworkUnavailable(n) {
			why = append(why, "NetworkUnavailable")
		}
		byAd := slices.ContainsFunc(l2, func(i int) bool { return lbservice.SelectsNode(x.L2Advertisements[i].Spec.NodeSelectors, n.Labels) }) ||
			slices.ContainsFunc(bgp, func(i int) bool {
				ad := x.BGPAdvertisements[i]
				return lbservice.SelectsNode(ad.Spec.NodeSelectors, n.Labels) && slices.ContainsFunc(x.BGPPeers, func(p v1alpha1.BGPPeer) bool {
					return (len(ad.Spec.Peers) == 0 || slices.Contains(ad.Spec.Peers, p.Name)) && lbservice.SelectsNode(p.Spec.NodeSelectors, n.Labels)
				})
			})
		if !byAd {
			why = append(why, "left out by the advertisements' (and BGPPeers') nodeSelectors")
		}
		switch {
		case len(why) > 0:
			whyNot = append(whyNot, n.Name+": "+strings.Join(why, ", "))
		case local && !x.EndpointNodes[n.Name]:
			noEndpoint = append(noEndpoint, n.Name)
		default:
			eligible = append(eligible, n.Name)
		}
	}
	switch {
	case len(eligible) > 0:
		return ReasonNotReported, fmt.Sprintf("%s is announced by no node, although %s may announce it: for layer 2 such a node also needs an interface on the address's subnet, for BGP an established session (kubectl get bgppeers -o yaml); look at the speakers there (kubectl -n portico-system logs -l app.kubernetes.io/name=portico-speaker)%s",
			what, strings.Join(eligible, ", "), explain)
	case len(noEndpoint) > 0:
		return ReasonNoLocalEndpoint, fmt.Sprintf("%s is announced by no node: externalTrafficPolicy is Local and none of the nodes that may announce it (%s) has a ready endpoint of the Service%s",
			what, strings.Join(noEndpoint, ", "), explain)
	case len(x.Nodes) == 0:
		return ReasonNoEligibleNode, fmt.Sprintf("%s is announced by no node: the cluster has no Node%s", what, explain)
	}
	const shown = 5
	more := ""
	if len(whyNot) > shown {
		more = fmt.Sprintf("; and %d more", len(whyNot)-shown)
		whyNot = whyNot[:shown]
	}
	return ReasonNoEligibleNode, fmt.Sprintf("%s is announced by no node: no node may announce it (%s%s)%s",
		what, strings.Join(whyNot, "; "), more, explain)
}

// clusterView reads the cluster-wide part of what WhyUnannounced needs
// (pools, advertisements, peers, Nodes) straight from the API, and keeps
// it for a while, so that many Services left unannounced at once cost a
// few LISTs and not a few per Service; it does not justify caching every
// Node in the controller.
type clusterView struct {
	api client.Reader
	ttl time.Duration

	mu    sync.Mutex
	at    time.Time
	pools map[string]*v1alpha1.AddressPool
	base  Cluster
}

func (v *clusterView) shared(ctx context.Context) (Cluster, map[string]*v1alpha1.AddressPool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.at.IsZero() && time.Since(v.at) < v.ttl {
		return v.base, v.pools, nil
	}
	var pools v1alpha1.AddressPoolList
	var l2 v1alpha1.L2AdvertisementList
	var bgp v1alpha1.BGPAdvertisementList
	var peers v1alpha1.BGPPeerList
	var nodes corev1.NodeList
	for _, l := range []client.ObjectList{&pools, &l2, &bgp, &peers, &nodes} {
		if err := v.api.List(ctx, l); err != nil {
			return Cluster{}, nil, fmt.Errorf("listing %T: %w", l, err)
		}
	}
	v.pools = make(map[string]*v1alpha1.AddressPool, len(pools.Items))
	for i := range pools.Items {
		v.pools[pools.Items[i].Name] = &pools.Items[i]
	}
	v.base = Cluster{L2Advertisements: l2.Items, BGPAdvertisements: bgp.Items, BGPPeers: peers.Items, Nodes: nodes.Items}
	v.at = time.Now()
	return v.base, v.pools, nil
}

// read returns what WhyUnannounced needs for svc: the shared view, and the
// Service's own namespace labels (from c, which caches Namespaces) and,
// with externalTrafficPolicy Local, the nodes of its ready endpoints.
func (v *clusterView) read(ctx context.Context, c client.Reader, svc *corev1.Service, pool string) (Cluster, error) {
	x, pools, err := v.shared(ctx)
	if err != nil {
		return x, err
	}
	x.Pool = pools[pool]
	var ns corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: svc.Namespace}, &ns); err == nil {
		x.NamespaceLabels = ns.Labels
	}
	if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		return x, nil
	}
	var eps discoveryv1.EndpointSliceList
	if err := v.api.List(ctx, &eps, client.InNamespace(svc.Namespace), client.MatchingLabelsSelector{
		Selector: labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name}),
	}); err != nil {
		return x, fmt.Errorf("listing EndpointSlices: %w", err)
	}
	x.EndpointNodes = map[string]bool{}
	for _, es := range eps.Items {
		for _, ep := range es.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				x.EndpointNodes[*ep.NodeName] = true
			}
		}
	}
	return x, nil
}
