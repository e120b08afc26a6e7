package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controller"
	"github.com/portico-lb/portico/ingress"
	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/pools"
)

// Defaults of the other parts' flags that explain needs to know.
const (
	// defaultIngressService is the controller's --ingress-service.
	defaultIngressService = "portico-system/portico-ingress"
	// defaultIngressClass is the ingress's --ingress-class.
	defaultIngressClass = "portico"
	// speakerSelector finds the speaker Pods (manifests/speaker).
	speakerSelector = "app.kubernetes.io/name=portico-speaker"
)

// Explanation is `explain service -o json|yaml`: the decision chain for
// one Service, step by step, and what stands in its way.
type Explanation struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	// Class says whether Portico serves the Service, and why.
	Class Step `json:"class"`
	// Request is what the Service asks of the controller.
	Request *RequestInfo `json:"request,omitempty"`
	// Pool is the pool its addresses come from, or would, and why.
	Pool *PoolChoice `json:"pool,omitempty"`
	// Addresses are status.loadBalancer's.
	Addresses []string `json:"addresses"`
	// Advertisements are those selecting the pool, each saying whether it
	// applies to this Service (its service and namespace selectors).
	Advertisements []AdvertisementMatch `json:"advertisements"`
	// Nodes says, for every Node, whether it may announce the addresses.
	Nodes []NodeEligibility `json:"nodes"`
	// Announcements are the speakers' ServiceAnnouncements, per address.
	Announcements []AddressStatus `json:"announcements"`
	// BGPPeers are the peers the BGPAdvertisements send routes to.
	BGPPeers []PeerInfo `json:"bgpPeers,omitempty"`
	// Ingresses are the Ingresses of Portico's class routing to it.
	Ingresses []IngressRoute `json:"ingresses"`
	// Problems are what keeps the Service from working, each with what
	// to do; none when all is well.
	Problems []string `json:"problems"`
}

// Step is one decision and its reason.
type Step struct {
	OK  bool   `json:"ok"`
	Why string `json:"why"`
}

// RequestInfo is what the Service asks for, as the controller reads it.
type RequestInfo struct {
	// Annotations are the request annotations present, in whatever
	// spelling, with what they stand for.
	Annotations []AnnotationUse `json:"annotations,omitempty"`
	Pool        string          `json:"pool,omitempty"`
	IPs         []string        `json:"ips,omitempty"`
	SharingKey  string          `json:"sharingKey,omitempty"`
	Families    []string        `json:"families,omitempty"`
	Policy      string          `json:"ipFamilyPolicy"`
	Local       bool            `json:"externalTrafficPolicyLocal,omitempty"`
	// Invalid is the controller's reason for refusing the request.
	Invalid string `json:"invalid,omitempty"`
}

// AnnotationUse is one request annotation on the Service.
type AnnotationUse struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	// Means is the Portico key when Key is a MetalLB spelling.
	Means string `json:"means,omitempty"`
}

// PoolChoice is the pool and why.
type PoolChoice struct {
	Name string `json:"name,omitempty"`
	Why  string `json:"why"`
	// AutoAssignOrder is the order pools are tried for a Service that asks
	// for no pool and no address.
	AutoAssignOrder []string `json:"autoAssignOrder,omitempty"`
	// Skipped are pools tried before the chosen one, and why they were not
	// it.
	Skipped []string `json:"skipped,omitempty"`
}

// AdvertisementMatch is an advertisement selecting the pool.
type AdvertisementMatch struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Why says how it selects the pool.
	Why string `json:"why"`
	// Applies is whether it applies to this Service; only those that do
	// announce its addresses.
	Applies bool `json:"applies"`
	// Service says why it applies to the Service, or why not.
	Service string `json:"service"`
}

// NodeEligibility is whether a node may announce the Service's addresses.
type NodeEligibility struct {
	Node      string   `json:"node"`
	Eligible  bool     `json:"eligible"`
	Protocols []string `json:"protocols,omitempty"`
	// WhyNot are the reasons it may not, or may not by some protocol.
	WhyNot []string `json:"whyNot,omitempty"`
}

// PeerInfo is a BGPPeer and each node's session to it, as the speakers
// report them in its status.
type PeerInfo struct {
	Name     string   `json:"name"`
	Address  string   `json:"address"`
	Sessions []string `json:"sessions,omitempty"`
}

// IngressRoute is an Ingress sending traffic to the Service.
type IngressRoute struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Routes    []string `json:"routes"`
}

func explainCommand(e *env) *cobra.Command {
	explain := &cobra.Command{
		Use:   "explain",
		Short: "Explain Portico's decisions about an object",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("cannot explain %q: explain service NAME", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	svc := &cobra.Command{
		Use:     "service NAME",
		Aliases: []string{"svc", "services"},
		Short:   "Explain the whole decision chain for one LoadBalancer Service",
		Long: `Explain the whole decision chain for one LoadBalancer Service: whether
Portico serves it (type, loadBalancerClass), what it asks for (annotations in
Portico's and MetalLB's spellings, spec.loadBalancerIP), the pool chosen and
why, its addresses, the L2Advertisements and BGPAdvertisements selecting the
pool, which nodes may announce and why the others may not, who announces now
(ServiceAnnouncements), the BGP peers, and the Ingresses of Portico's class
routing to it. It ends with what stands in the way, and what to do.`,
		Example: "  " + name() + " explain service -n shop web\n  " + name() + " explain svc web -o yaml",
		Args:    exactArgs(1),
	}
	output := outputFlag(svc)
	ingressSvc := svc.Flags().String("ingress-service", defaultIngressService, "namespace/name of the bundled ingress's Service (the controller's --ingress-service)")
	ingressClass := svc.Flags().String("ingress-class", defaultIngressClass, "the IngressClass the bundled ingress serves (its --ingress-class)")
	svc.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(*output); err != nil {
			return err
		}
		ns, err := e.namespace()
		if err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		ex, err := Explain(cmd.Context(), c, types.NamespacedName{Namespace: ns, Name: args[0]}, ExplainOptions{IngressService: *ingressSvc, IngressClass: *ingressClass})
		if err != nil {
			return err
		}
		if done, err := writeStructured(e.out, *output, ex); done {
			return err
		}
		return printExplanation(e.out, ex, *output == outputWide)
	}
	explain.AddCommand(svc)
	return explain
}

// ExplainOptions are the other parts' settings that matter.
type ExplainOptions struct {
	IngressService string // namespace/name
	IngressClass   string
}

// Explain works out the decision chain for the Service key.
func Explain(ctx context.Context, c client.Reader, key types.NamespacedName, opts ExplainOptions) (*Explanation, error) {
	var svc corev1.Service
	if err := c.Get(ctx, key, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("service %q not found in namespace %q (use -n NAMESPACE)", key.Name, key.Namespace)
		}
		return nil, fmt.Errorf("reading service %s: %w", key, err)
	}
	ex := &Explanation{
		Namespace:      svc.Namespace,
		Name:           svc.Name,
		Type:           string(svc.Spec.Type),
		Addresses:      []string{},
		Advertisements: []AdvertisementMatch{},
		Nodes:          []NodeEligibility{},
		Announcements:  []AddressStatus{},
		Ingresses:      []IngressRoute{},
		Problems:       []string{},
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP != "" {
			ex.Addresses = append(ex.Addresses, ing.IP)
		}
	}
	var err error
	if ex.Ingresses, err = ingressRoutes(ctx, c, &svc, opts.IngressClass); err != nil {
		return nil, err
	}

	ex.Class = classStep(&svc)
	if !ex.Class.OK {
		ex.Problems = append(ex.Problems, ex.Class.Why)
		return ex, nil
	}

	x, err := readCluster(ctx, c, &svc)
	if err != nil {
		return nil, err
	}
	req, reqErr := controller.Request(&svc, x.nsLabels[svc.Namespace], opts.IngressService == svc.Namespace+"/"+svc.Name)
	ex.Request = requestInfo(&svc, req, reqErr)
	if reqErr != nil {
		ex.Problems = append(ex.Problems, "the controller refuses the Service's request: "+reqErr.Error()+"; fix the annotations or spec")
	}
	ex.Pool = x.choosePool(&svc, req, reqErr, ex)

	if ex.Pool == nil || ex.Pool.Name == "" {
		return ex, nil
	}
	pool := ex.Pool.Name
	selecting := x.ads.selecting(pool)
	var matched []advertisement // those applying to the Service
	for _, ad := range selecting {
		applies, why := ad.appliesTo(&svc, x.nsLabels[svc.Namespace])
		ex.Advertisements = append(ex.Advertisements, AdvertisementMatch{Kind: ad.Kind, Name: ad.Name, Why: ad.why(pool), Applies: applies, Service: why})
		if applies {
			matched = append(matched, ad)
		}
	}
	switch {
	case len(selecting) == 0:
		ex.Problems = append(ex.Problems, noAdvertisement(pool))
	case len(matched) == 0:
		ex.Problems = append(ex.Problems, fmt.Sprintf("advertisements select pool %s but none applies to this Service: their serviceSelectors or namespaceSelectors leave it out (see Advertisements), so nothing announces its addresses; label the Service or its namespace to match, or add an advertisement without selectors", pool))
	}
	ex.Nodes = x.eligibility(&svc, matched)
	ex.BGPPeers = x.peersOf(matched)

	if len(ex.Addresses) == 0 {
		return ex, nil
	}
	ex.Announcements = serviceStatus(&svc, x.announcements).Addresses
	var eligible []string
	for _, n := range ex.Nodes {
		if n.Eligible {
			eligible = append(eligible, n.Node)
		}
	}
	for _, a := range ex.Announcements {
		switch {
		case a.Announced:
		case len(matched) == 0:
			// Said above.
		case len(eligible) == 0:
			ex.Problems = append(ex.Problems, fmt.Sprintf("%s is not announced: no node may announce it (see Nodes); fix the reasons given there", a.IP))
		default:
			ex.Problems = append(ex.Problems, fmt.Sprintf("%s is not announced although %s may announce it: the speakers there have not reported it (no ServiceAnnouncement); for layer 2 a node also needs an interface on the address's subnet. Look at the speaker logs: kubectl -n portico-system logs -l %s",
				a.IP, strings.Join(eligible, ", "), speakerSelector))
		}
	}
	return ex, nil
}

// classStep says whether Portico serves svc, by lbservice's rule.
func classStep(svc *corev1.Service) Step {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return Step{false, fmt.Sprintf("the Service is of type %s: Portico only serves type: LoadBalancer", cmp.Or(string(svc.Spec.Type), "ClusterIP"))}
	}
	managed := lbservice.Ours(svc)
	switch {
	case managed && svc.Spec.LoadBalancerClass == nil:
		return Step{true, fmt.Sprintf("Portico serves it: it has no loadBalancerClass (Portico serves Services with none and those of class %s)", lbservice.Class)}
	case managed:
		return Step{true, fmt.Sprintf("Portico serves it: its loadBalancerClass is %s", lbservice.Class)}
	}
	return Step{false, fmt.Sprintf("its loadBalancerClass is %q, another load balancer's: Portico leaves it alone (it serves no class and %s; the class cannot be changed, recreate the Service to change it)",
		*svc.Spec.LoadBalancerClass, lbservice.Class)}
}

func requestInfo(svc *corev1.Service, req pools.Service, err error) *RequestInfo {
	ri := &RequestInfo{Pool: req.Pool, SharingKey: req.SharingKey, Policy: req.Policy.String(), Local: req.Local}
	for _, ip := range req.IPs {
		ri.IPs = append(ri.IPs, ip.String())
	}
	for _, f := range req.Families {
		ri.Families = append(ri.Families, f.String())
	}
	keys := make([]string, 0, len(svc.Annotations))
	for k := range svc.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if canon, ok := lbservice.RequestAnnotation(k); ok {
			u := AnnotationUse{Key: k, Value: svc.Annotations[k]}
			if canon != k {
				u.Means = canon
			}
			ri.Annotations = append(ri.Annotations, u)
		}
	}
	if err != nil {
		ri.Invalid = err.Error()
	}
	return ri
}

// cluster is what explain reads besides the Service.
type cluster struct {
	poolObjs      map[string]*v1alpha1.AddressPool
	alloc         *pools.Allocator
	unusable      map[string]string // pool → why the controller cannot use it
	ads           *advertisements
	nodes         []corev1.Node
	speakers      map[string]bool // node → a ready speaker Pod runs there
	readyNodes    map[string]bool // nodes with a ready endpoint of the Service
	peers         []v1alpha1.BGPPeer
	announcements []v1alpha1.ServiceAnnouncement
	nsLabels      map[string]map[string]string
}

// readCluster lists what explain needs and loads an allocator the way the
// controller does on start: every pool, then every assigned Service but
// this one, oldest first.
func readCluster(ctx context.Context, c client.Reader, svc *corev1.Service) (*cluster, error) {
	x := &cluster{poolObjs: map[string]*v1alpha1.AddressPool{}, alloc: pools.New(), unusable: map[string]string{}, speakers: map[string]bool{}, readyNodes: map[string]bool{}, nsLabels: map[string]map[string]string{}}
	var nss corev1.NamespaceList
	if err := c.List(ctx, &nss); err != nil {
		return nil, fmt.Errorf("listing Namespaces: %w", err)
	}
	for _, ns := range nss.Items {
		x.nsLabels[ns.Name] = ns.Labels
	}
	var pl v1alpha1.AddressPoolList
	if err := c.List(ctx, &pl); err != nil {
		return nil, fmt.Errorf("listing AddressPools (are Portico's CRDs installed?): %w", err)
	}
	var cfgs []pools.Pool
	for i := range pl.Items {
		p := &pl.Items[i]
		x.poolObjs[p.Name] = p
		cfg, err := controller.PoolConfig(p)
		if err != nil {
			x.unusable[p.Name] = err.Error()
			continue
		}
		cfgs = append(cfgs, cfg)
	}
	rep := x.alloc.SetPools(cfgs)
	for n, why := range rep.Invalid {
		x.unusable[n] = why
	}
	for n, why := range rep.Conflicts {
		x.unusable[n] = why
	}
	var err error
	if x.ads, err = listAdvertisements(ctx, c, pl.Items); err != nil {
		return nil, err
	}

	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs); err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	slices.SortFunc(svcs.Items, func(a, b corev1.Service) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name))
	})
	for i := range svcs.Items {
		o := &svcs.Items[i]
		if o.UID == svc.UID || !lbservice.Ours(o) {
			continue
		}
		if ips := controller.StatusIPs(o); len(ips) > 0 {
			req, _ := controller.Request(o, x.nsLabels[o.Namespace], false)
			_, _ = x.alloc.Assign(req, ips) // a misfit is the controller's to fix
		}
	}

	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	x.nodes = nodes.Items
	sel, _ := labels.Parse(speakerSelector)
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("listing speaker Pods: %w", err)
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" && p.DeletionTimestamp == nil && podReady(&p) {
			x.speakers[p.Spec.NodeName] = true
		}
	}
	var eps discoveryv1.EndpointSliceList
	if err := c.List(ctx, &eps, client.InNamespace(svc.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return nil, fmt.Errorf("listing EndpointSlices: %w", err)
	}
	for _, es := range eps.Items {
		for _, ep := range es.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				x.readyNodes[*ep.NodeName] = true
			}
		}
	}
	var peers v1alpha1.BGPPeerList
	if err := c.List(ctx, &peers); err != nil {
		return nil, fmt.Errorf("listing BGPPeers: %w", err)
	}
	x.peers = peers.Items
	var anns v1alpha1.ServiceAnnouncementList
	if err := c.List(ctx, &anns, client.InNamespace(svc.Namespace), client.MatchingLabels{v1alpha1.ServiceNameLabel: svc.Name}); err != nil {
		return nil, fmt.Errorf("listing ServiceAnnouncements: %w", err)
	}
	x.announcements = anns.Items
	return x, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// choosePool says which pool the Service's addresses come from, or would,
// and why, asking the allocator loaded like the controller's.
func (x *cluster) choosePool(svc *corev1.Service, req pools.Service, reqErr error, ex *Explanation) *PoolChoice {
	pc := &PoolChoice{AutoAssignOrder: x.alloc.AutoAssignOrder()}
	ips := controller.StatusIPs(svc)
	if len(ips) > 0 {
		pc.Name = svc.Annotations[lbservice.AnnotationAllocatedFrom]
		if pc.Name == "" {
			pc.Name = x.poolHolding(ips[0])
		}
	}
	if reqErr != nil && len(ips) == 0 {
		pc.Why = "none: the request is invalid (see Request)"
		return pc
	}

	if len(ips) == 0 {
		// Pending: ask the allocator what the controller would do now.
		a, err := x.alloc.Allocate(req)
		if err != nil {
			pc.Why = "none: " + err.Error()
			ex.Problems = append(ex.Problems, "no address: "+err.Error())
			if pe := (*pools.Error)(nil); errors.As(err, &pe) && pe.Reason == pools.UnknownPool && len(x.poolObjs) == 0 {
				ex.Problems = append(ex.Problems, "there is no AddressPool at all: create one, e.g.\n"+poolExample)
			}
			return pc
		}
		pc.Name = a.Pool
		pc.Why = why(req, a.Pool, pc, x) + fmt.Sprintf("; it would get %s now, yet has no address: is the controller running? kubectl -n portico-system logs deploy/portico-controller", joinAddrs(a.IPs))
		ex.Problems = append(ex.Problems, "the Service has no address although pool "+a.Pool+" has room for it: the controller has not handled it; look at its logs (kubectl -n portico-system logs deploy/portico-controller) and the Service's Events (kubectl describe service)")
		return pc
	}

	pc.Why = why(req, pc.Name, pc, x)
	if reqErr == nil {
		if _, err := x.alloc.Assign(req, ips); err != nil {
			ex.Problems = append(ex.Problems, fmt.Sprintf("its addresses %s no longer fit: %v; the controller will replace or release them (see the Service's Events)", joinAddrs(ips), err))
		}
	}
	if why, bad := x.unusable[pc.Name]; bad {
		ex.Problems = append(ex.Problems, fmt.Sprintf("pool %s is not usable: %s", pc.Name, why))
	}
	return pc
}

// why says why the Service's addresses come from pool.
func why(req pools.Service, pool string, pc *PoolChoice, x *cluster) string {
	switch {
	case req.Ingress:
		return "it is the bundled ingress's Service, which gets the first address of the default pool (the first of the auto-assign order)"
	case len(req.IPs) > 0:
		return fmt.Sprintf("the Service asks for %s, which pool %s holds", joinAddrs(req.IPs), pool)
	case req.Pool != "":
		return fmt.Sprintf("the Service asks for pool %s by annotation", req.Pool)
	}
	var w strings.Builder
	fmt.Fprintf(&w, "the Service asks for no pool and no address, so the controller gives it the first auto-assign pool, best priority first, that admits it and has room")
	if req.SharingKey != "" {
		fmt.Fprintf(&w, " (after the pools of the Services it shares addresses with, key %q)", req.SharingKey)
	}
	for _, p := range pc.AutoAssignOrder {
		if p == pool {
			break
		}
		if err := x.alloc.Admits(p, req); err != nil {
			pc.Skipped = append(pc.Skipped, fmt.Sprintf("%s: %v", p, err))
		} else {
			pc.Skipped = append(pc.Skipped, fmt.Sprintf("%s: admits it, but had no free address when the Service got its own, or the address came first (an assigned address stays where it is)", p))
		}
	}
	if !slices.Contains(pc.AutoAssignOrder, pool) && pool != "" {
		fmt.Fprintf(&w, "; pool %s is not among them (no autoAssign, or not usable): the Service keeps an address once assigned", pool)
	}
	return w.String()
}

func (x *cluster) poolHolding(ip netip.Addr) string {
	names := make([]string, 0, len(x.poolObjs))
	for n := range x.poolObjs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, a := range x.poolObjs[n].Spec.Addresses {
			if r, err := pools.ParseRange(string(a)); err == nil && r.Contains(ip) {
				return n
			}
		}
	}
	return ""
}

func joinAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}

// eligibility says for each node whether it may announce the Service's
// addresses, by the speakers' rules: an advertisement selecting the pool
// selects the node, the node is not excluded, not NetworkUnavailable nor
// NotReady, runs a ready speaker, and for externalTrafficPolicy: Local
// has a ready endpoint; for BGP a BGPPeer must also select it. Layer 2's
// last rule, an interface on the address's subnet, is known only to the
// speakers (memberlist) and is not checked here.
func (x *cluster) eligibility(svc *corev1.Service, matched []advertisement) []NodeEligibility {
	local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	out := []NodeEligibility{}
	for i := range x.nodes {
		n := &x.nodes[i]
		ne := NodeEligibility{Node: n.Name}
		if lbservice.Excluded(n.Labels) {
			ne.WhyNot = append(ne.WhyNot, "labelled "+lbservice.ExcludeLabel)
		}
		if lbservice.NetworkUnavailable(n) {
			ne.WhyNot = append(ne.WhyNot, "its NetworkUnavailable condition is True")
		}
		if !lbservice.NodeReady(n) {
			ne.WhyNot = append(ne.WhyNot, "it is not Ready")
		}
		if !x.speakers[n.Name] {
			ne.WhyNot = append(ne.WhyNot, "no ready speaker Pod runs on it ("+speakerSelector+")")
		}
		if local && !x.readyNodes[n.Name] {
			ne.WhyNot = append(ne.WhyNot, "externalTrafficPolicy is Local and it has no ready endpoint of the Service")
		}
		blocked := len(ne.WhyNot) > 0
		var l2, bgp, bgpNoPeer []string
		for _, ad := range matched {
			if !lbservice.SelectsNode(ad.NodeSelectors, n.Labels) {
				continue
			}
			if ad.Kind == "L2Advertisement" {
				l2 = append(l2, ad.Name)
				continue
			}
			if x.peerFor(ad, n) {
				bgp = append(bgp, ad.Name)
			} else {
				bgpNoPeer = append(bgpNoPeer, ad.Name)
			}
		}
		if len(matched) > 0 && len(l2)+len(bgp)+len(bgpNoPeer) == 0 {
			ne.WhyNot = append(ne.WhyNot, "the nodeSelectors of every advertisement selecting the pool leave it out")
		}
		if len(bgp) == 0 && len(bgpNoPeer) > 0 {
			ne.WhyNot = append(ne.WhyNot, "no BGPPeer of BGPAdvertisement "+strings.Join(bgpNoPeer, ", ")+" selects it (peers' nodeSelectors)")
		}
		if !blocked {
			if len(l2) > 0 {
				ne.Protocols = append(ne.Protocols, v1alpha1.ProtocolLayer2)
			}
			if len(bgp) > 0 {
				ne.Protocols = append(ne.Protocols, v1alpha1.ProtocolBGP)
			}
		}
		ne.Eligible = len(ne.Protocols) > 0
		out = append(out, ne)
	}
	return out
}

// peerFor: a BGPPeer the advertisement sends to selects the node.
func (x *cluster) peerFor(ad advertisement, n *corev1.Node) bool {
	for _, p := range x.peers {
		if len(ad.Peers) > 0 && !slices.Contains(ad.Peers, p.Name) {
			continue
		}
		if lbservice.SelectsNode(p.Spec.NodeSelectors, n.Labels) {
			return true
		}
	}
	return false
}

// peersOf lists the BGPPeers the matched BGPAdvertisements send to.
func (x *cluster) peersOf(matched []advertisement) []PeerInfo {
	var out []PeerInfo
	for _, p := range x.peers {
		if !slices.ContainsFunc(matched, func(ad advertisement) bool {
			return ad.Kind == "BGPAdvertisement" && (len(ad.Peers) == 0 || slices.Contains(ad.Peers, p.Name))
		}) {
			continue
		}
		pi := PeerInfo{Name: p.Name, Address: p.Spec.PeerAddress}
		for _, n := range p.Status.Nodes {
			sess := fmt.Sprintf("%s %s, %d prefixes sent", n.Node, n.State, n.PrefixesSent)
			if n.LastError != "" {
				sess += ", last error: " + n.LastError
			}
			pi.Sessions = append(pi.Sessions, sess)
		}
		out = append(out, pi)
	}
	return out
}

// ingressRoutes finds the Ingresses of the bundled ingress's class whose
// backends name the Service, by the ingress's own class rule.
func ingressRoutes(ctx context.Context, c client.Reader, svc *corev1.Service, class string) ([]IngressRoute, error) {
	var classes networkingv1.IngressClassList
	if err := c.List(ctx, &classes); err != nil {
		return nil, fmt.Errorf("listing IngressClasses: %w", err)
	}
	cl := ingress.ClassOf(class, false, classes.Items)
	var ings networkingv1.IngressList
	if err := c.List(ctx, &ings, client.InNamespace(svc.Namespace)); err != nil {
		return nil, fmt.Errorf("listing Ingresses: %w", err)
	}
	out := []IngressRoute{}
	for i := range ings.Items {
		ing := &ings.Items[i]
		if !cl.Serves(ing) {
			continue
		}
		var routes []string
		if b := ing.Spec.DefaultBackend; b != nil && b.Service != nil && b.Service.Name == svc.Name {
			routes = append(routes, "* (default backend) → "+port(b.Service.Port))
		}
		for _, r := range ing.Spec.Rules {
			if r.HTTP == nil {
				continue
			}
			for _, p := range r.HTTP.Paths {
				if p.Backend.Service == nil || p.Backend.Service.Name != svc.Name {
					continue
				}
				pt := ""
				if p.PathType != nil {
					pt = " (" + string(*p.PathType) + ")"
				}
				routes = append(routes, cmp.Or(r.Host, "*")+p.Path+pt+" → "+port(p.Backend.Service.Port))
			}
		}
		if len(routes) > 0 {
			out = append(out, IngressRoute{Namespace: ing.Namespace, Name: ing.Name, Routes: routes})
		}
	}
	return out, nil
}

func port(p networkingv1.ServiceBackendPort) string {
	if p.Name != "" {
		return "port " + p.Name
	}
	return fmt.Sprintf("port %d", p.Number)
}

const poolExample = `    kubectl apply -f - <<EOF
    apiVersion: portico.dev/v1alpha1
    kind: AddressPool
    metadata:
      name: lan
    spec:
      addresses: ["192.168.1.240-192.168.1.250"]
    EOF`

// noAdvertisement tells a newcomer why nothing announces a pool's
// addresses, and what to create.
func noAdvertisement(pool string) string {
	return fmt.Sprintf(`no L2Advertisement or BGPAdvertisement selects pool %s, so no node announces its addresses and nothing on the network answers for them. Create one, e.g. for layer 2 (ARP/NDP):
    kubectl apply -f - <<EOF
    apiVersion: portico.dev/v1alpha1
    kind: L2Advertisement
    metadata:
      name: %s
    spec:
      addressPools: [%s]
    EOF
  or a BGPAdvertisement with a BGPPeer to announce it to your router by BGP`, pool, pool, pool)
}
