package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/e2e/apitest"
)

func explainJSON(t *testing.T, ns, name string) Explanation {
	t.Helper()
	var ex Explanation
	decode(t, "json", mustRun(t, "explain", "service", "-n", ns, name, "-o", "json"), &ex)
	return ex
}

func hasProblem(ex Explanation, s string) bool {
	return slices.ContainsFunc(ex.Problems, func(p string) bool { return strings.Contains(p, s) })
}

// TestExplainPoolWithoutAdvertisement is the newcomer's question: the
// Service has an address, in a pool no advertisement selects, so nothing
// announces it. explain must say so and show what to create.
func TestExplainPoolWithoutAdvertisement(t *testing.T) {
	apitest.Require(t)
	namespace(t, "explain-lonely", nil)
	create(t, pool("lonely", "192.0.2.0/28"))
	// An advertisement of another pool must not count.
	create(t, l2("not-lonely", []string{"someone-else"}, nil))
	svc := lbService("explain-lonely", "web", "lonely", "192.0.2.1")
	svc.Annotations["metallb.io/address-pool"] = "lonely"
	create(t, svc)

	out := mustRun(t, "explain", "service", "-n", "explain-lonely", "web")
	for _, want := range []string{
		"Portico serves it: it has no loadBalancerClass",
		"metallb.io/address-pool: lonely   (MetalLB's spelling of portico.dev/address-pool)",
		"Pool:      lonely",
		"the Service asks for pool lonely by annotation",
		"Addresses: 192.0.2.1",
		"Advertisements selecting pool lonely:\n  none",
		"192.0.2.1: not announced by any node",
		"no L2Advertisement or BGPAdvertisement selects pool lonely, so no node announces its addresses",
		"kind: L2Advertisement",
		"addressPools: [lonely]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q", want)
		}
	}
	if strings.Contains(out, "No problem found") {
		t.Errorf("explain finds no problem")
	}

	ex := explainJSON(t, "explain-lonely", "web")
	if !ex.Class.OK || ex.Pool == nil || ex.Pool.Name != "lonely" || len(ex.Advertisements) != 0 || len(ex.Problems) != 1 ||
		!hasProblem(ex, "no L2Advertisement or BGPAdvertisement selects pool lonely") {
		t.Errorf("explain -o json: %+v", ex)
	}
	if len(ex.Announcements) != 1 || ex.Announcements[0].Announced {
		t.Errorf("announcements: %+v", ex.Announcements)
	}

	// Once an advertisement selects the pool (by label here), that
	// problem is gone.
	create(t, &v1alpha1.L2Advertisement{
		ObjectMeta: metav1.ObjectMeta{Name: "lonely-by-label"},
		Spec:       v1alpha1.L2AdvertisementSpec{AddressPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"lonely": "no-more"}}}},
	})
	p := &v1alpha1.AddressPool{}
	if err := api.Client.Get(context.Background(), client.ObjectKey{Name: "lonely"}, p); err != nil {
		t.Fatal(err)
	}
	p.Labels = map[string]string{"lonely": "no-more"}
	if err := api.Client.Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ex = explainJSON(t, "explain-lonely", "web")
	if len(ex.Advertisements) != 1 || ex.Advertisements[0].Name != "lonely-by-label" || hasProblem(ex, "selects pool lonely") {
		t.Errorf("after an advertisement selects the pool: %+v", ex)
	}
}

// TestExplainChain follows one announced Service through every step:
// class, automatic pool choice with the order, the advertisement, every
// node and why it may not announce, the owner, and an Ingress routing to
// it.
func TestExplainChain(t *testing.T) {
	apitest.Require(t)
	ctx := context.Background()
	namespace(t, "explain-shop", nil)
	// Pools tried in priority order: chain-first refuses the namespace.
	first := pool("chain-first", "192.0.2.16/28")
	first.Spec.ServiceAllocation = &v1alpha1.ServiceAllocation{Priority: 1, Namespaces: []string{"elsewhere"}}
	second := pool("chain-second", "192.0.2.32/28")
	second.Spec.ServiceAllocation = &v1alpha1.ServiceAllocation{Priority: 2}
	create(t, first, second, l2("chain-l2", []string{"chain-second"}, map[string]string{"chain/announce": "yes"}))

	yes := map[string]string{"chain/announce": "yes"}
	node(t, "chain-ok", yes, true, true)
	node(t, "chain-excluded", map[string]string{"chain/announce": "yes", corev1.LabelNodeExcludeBalancers: ""}, true, true)
	node(t, "chain-nospeaker", yes, true, false)
	node(t, "chain-notready", yes, false, true)
	node(t, "chain-unselected", nil, true, true)

	svc := lbService("explain-shop", "web", "chain-second", "192.0.2.32")
	create(t, svc)
	if err := api.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
		t.Fatal(err)
	}
	create(t, announcement(svc, "chain-ok", v1alpha1.ProtocolLayer2, []string{"eth1"}, "192.0.2.32"))

	className := "portico"
	prefix := networkingv1.PathTypePrefix
	create(t,
		&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "portico"}, Spec: networkingv1.IngressClassSpec{Controller: "portico.dev/ingress"}},
		&networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Namespace: "explain-shop", Name: "shop"},
			Spec: networkingv1.IngressSpec{IngressClassName: &className, Rules: []networkingv1.IngressRule{{
				Host: "shop.example.com",
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{
					{Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
					{Path: "/api", PathType: &prefix, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "api", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
				}}},
			}}},
		},
	)
	other := "nginx"
	create(t, &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "explain-shop", Name: "not-ours"},
		Spec: networkingv1.IngressSpec{IngressClassName: &other, DefaultBackend: &networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
	})

	out := mustRun(t, "explain", "service", "-n", "explain-shop", "web")
	for _, want := range []string{
		"the Service asks for no pool and no address",
		"auto-assign order: chain-first, chain-second",
		`skipped chain-first: address pool "chain-first" only serves the namespaces "elsewhere"`,
		`L2Advertisement/chain-l2: names "chain-second" in addressPools`,
		"chain-ok: may announce by layer2",
		"192.0.2.32: chain-ok by layer2 via eth1",
		"explain-shop/shop: shop.example.com/ (Prefix) → port 80",
		"No problem found",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q", want)
		}
	}

	ex := explainJSON(t, "explain-shop", "web")
	if ex.Pool == nil || ex.Pool.Name != "chain-second" || len(ex.Pool.Skipped) != 1 {
		t.Errorf("pool: %+v", ex.Pool)
	}
	whyNot := map[string]string{}
	for _, n := range ex.Nodes {
		if strings.HasPrefix(n.Node, "chain-") {
			whyNot[n.Node] = strings.Join(n.WhyNot, "; ")
			if n.Eligible != (n.Node == "chain-ok") {
				t.Errorf("node %s eligible=%v", n.Node, n.Eligible)
			}
		}
	}
	for node, want := range map[string]string{
		"chain-ok":         "",
		"chain-excluded":   "labelled node.kubernetes.io/exclude-from-external-load-balancers",
		"chain-nospeaker":  "no ready speaker Pod runs on it",
		"chain-notready":   "it is not Ready",
		"chain-unselected": "the nodeSelectors of every advertisement selecting the pool leave it out",
	} {
		if whyNot[node] != want && !(want != "" && strings.HasPrefix(whyNot[node], want)) {
			t.Errorf("node %s: why not %q, want %q", node, whyNot[node], want)
		}
	}
	if len(ex.Ingresses) != 1 || ex.Ingresses[0].Name != "shop" || len(ex.Ingresses[0].Routes) != 1 {
		t.Errorf("ingresses: %+v", ex.Ingresses)
	}
	if len(ex.Problems) != 0 {
		t.Errorf("problems: %q", ex.Problems)
	}

	// externalTrafficPolicy: Local takes the nodes without a ready
	// endpoint out, and the owner's announcement gone makes it a problem
	// naming who may announce.
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	if err := api.Client.Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	ready := true
	create(t, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "explain-shop", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, NodeName: ptr("chain-unselected"), Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	})
	if err := api.Client.DeleteAllOf(ctx, &v1alpha1.ServiceAnnouncement{}, client.InNamespace("explain-shop")); err != nil {
		t.Fatal(err)
	}
	ex = explainJSON(t, "explain-shop", "web")
	for _, n := range ex.Nodes {
		if n.Node == "chain-ok" && (n.Eligible || !strings.Contains(strings.Join(n.WhyNot, ";"), "no ready endpoint")) {
			t.Errorf("chain-ok with no local endpoint: %+v", n)
		}
	}
	if !hasProblem(ex, "192.0.2.32 is not announced: no node may announce it") {
		t.Errorf("problems: %q", ex.Problems)
	}
}

// TestExplainPending asks the allocator, loaded as the controller's, why
// a Service has no address.
func TestExplainPending(t *testing.T) {
	apitest.Require(t)
	namespace(t, "explain-pending", nil)
	only := pool("pending-only", "192.0.2.48/30")
	only.Spec.AutoAssign = ptr(false)
	create(t, only)
	svc := lbService("explain-pending", "db", "")
	svc.Annotations["portico.dev/load-balancer-ips"] = "192.0.2.60"
	create(t, svc)

	ex := explainJSON(t, "explain-pending", "db")
	if ex.Pool == nil || ex.Pool.Name != "" || !hasProblem(ex, "no address: 192.0.2.60") {
		t.Errorf("pending: pool %+v, problems %q", ex.Pool, ex.Problems)
	}
	if ex.Request == nil || len(ex.Request.IPs) != 1 || ex.Request.IPs[0] != "192.0.2.60" {
		t.Errorf("request: %+v", ex.Request)
	}

	bad := lbService("explain-pending", "bad", "")
	bad.Annotations["portico.dev/load-balancer-ips"] = "not-an-ip"
	create(t, bad)
	ex = explainJSON(t, "explain-pending", "bad")
	if !hasProblem(ex, "the controller refuses the Service's request") || ex.Request.Invalid == "" {
		t.Errorf("invalid request: %+v", ex)
	}
}

// TestExplainNotPortico: another class, or not a LoadBalancer, stops the
// chain at the first step; a missing Service is exit 1.
func TestExplainNotPortico(t *testing.T) {
	apitest.Require(t)
	namespace(t, "explain-other", nil)
	other := lbService("explain-other", "theirs", "")
	other.Spec.LoadBalancerClass = ptr("example.com/lb")
	plain := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "explain-other", Name: "plain"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}
	create(t, other, plain)
	if ex := explainJSON(t, "explain-other", "theirs"); ex.Class.OK || !hasProblem(ex, `loadBalancerClass is "example.com/lb"`) || ex.Pool != nil {
		t.Errorf("other class: %+v", ex)
	}
	if ex := explainJSON(t, "explain-other", "plain"); ex.Class.OK || !hasProblem(ex, "type ClusterIP") {
		t.Errorf("ClusterIP: %+v", ex)
	}
	code, _, errOut := porticoctl(t, "explain", "service", "-n", "explain-other", "missing")
	if code != 1 || !strings.Contains(errOut, `service "missing" not found in namespace "explain-other"`) {
		t.Errorf("missing Service: exit %d, %q", code, errOut)
	}
}

func ptr[T any](v T) *T { return &v }

// A BGP-announced Service's explanation shows each node's session to the
// peers its advertisement sends to, as the speakers write them.
func TestExplainBGPSessions(t *testing.T) {
	apitest.Require(t)
	ctx := context.Background()
	namespace(t, "explain-bgp", nil)
	create(t, pool("bgp-pool", "198.51.100.0/28"))
	create(t, &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bgp-adv"}, Spec: v1alpha1.BGPAdvertisementSpec{AddressPools: []string{"bgp-pool"}}})
	peer := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor"}, Spec: v1alpha1.BGPPeerSpec{MyASN: 64512, PeerASN: 64513, PeerAddress: "192.0.2.254"}}
	create(t, peer)
	peer.Status.Nodes = []v1alpha1.BGPPeerNodeStatus{
		{Node: "node-a", State: "Established", PrefixesSent: 3, Since: metav1.Now()},
		{Node: "node-b", State: "Active", LastError: "connection refused", Since: metav1.Now()},
	}
	if err := api.Client.Status().Update(ctx, peer); err != nil {
		t.Fatal(err)
	}
	create(t, lbService("explain-bgp", "web", "bgp-pool", "198.51.100.1"))

	ex := explainJSON(t, "explain-bgp", "web")
	var sessions []string
	for _, p := range ex.BGPPeers {
		if p.Name == "tor" {
			sessions = p.Sessions
		}
	}
	want := []string{"node-a Established, 3 prefixes sent", "node-b Active, 0 prefixes sent, last error: connection refused"}
	if !slices.Equal(sessions, want) {
		t.Errorf("sessions of peer tor: %q, want %q", sessions, want)
	}
	if out := mustRun(t, "explain", "service", "-n", "explain-bgp", "web"); !strings.Contains(out, "tor (192.0.2.254): node-a Established, 3 prefixes sent; node-b Active") {
		t.Errorf("explain does not show the sessions:\n%s", out)
	}
}

// TestExplainServiceSelectors: of the advertisements selecting the pool,
// explain says which apply to this Service and why the others do not.
func TestExplainServiceSelectors(t *testing.T) {
	apitest.Require(t)
	namespace(t, "explain-sel", map[string]string{"team": "web"})
	create(t, pool("sel-pool", "198.51.100.64/28"))
	bgp := func(name string, services, namespaces []metav1.LabelSelector) *v1alpha1.BGPAdvertisement {
		return &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.BGPAdvertisementSpec{
			AddressPools: []string{"sel-pool"}, ServiceSelectors: services, NamespaceSelectors: namespaces}}
	}
	edge := []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}}
	create(t,
		bgp("sel-all", nil, nil),
		bgp("sel-edge", edge, nil),
		bgp("sel-ops", nil, []metav1.LabelSelector{{MatchLabels: map[string]string{"team": "ops"}}}),
		bgp("sel-edge-web", edge, []metav1.LabelSelector{{MatchLabels: map[string]string{"team": "web"}}}),
		bgp("sel-broken", []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Bogus"}}}}, nil),
	)
	front := lbService("explain-sel", "front", "sel-pool", "198.51.100.64")
	front.Labels = map[string]string{"tier": "edge"}
	core := lbService("explain-sel", "api", "sel-pool", "198.51.100.65")
	core.Labels = map[string]string{"tier": "core"}
	create(t, front, core)

	applies := func(svc string) map[string]AdvertisementMatch {
		t.Helper()
		out := map[string]AdvertisementMatch{}
		for _, a := range explainJSON(t, "explain-sel", svc).Advertisements {
			out[a.Name] = a
		}
		return out
	}
	for _, tt := range []struct {
		svc, adv string
		applies  bool
		why      string
	}{
		{"front", "sel-all", true, "applies to every Service of the pool"},
		{"front", "sel-edge", true, "its serviceSelectors match the Service's labels"},
		{"front", "sel-ops", false, "none of its namespaceSelectors (team=ops) matches namespace explain-sel's labels"},
		{"front", "sel-edge-web", true, "its serviceSelectors match the Service's labels and its namespaceSelectors match namespace explain-sel's labels"},
		{"front", "sel-broken", false, "the speakers leave it out: serviceSelectors[0]"},
		{"api", "sel-all", true, "applies to every Service of the pool"},
		{"api", "sel-edge", false, "none of its serviceSelectors (tier=edge) matches the Service's labels (tier=core)"},
		{"api", "sel-edge-web", false, "none of its serviceSelectors (tier=edge)"},
	} {
		got, ok := applies(tt.svc)[tt.adv]
		if !ok || got.Applies != tt.applies || !strings.HasPrefix(got.Service, tt.why) {
			t.Errorf("%s, %s: %+v, want applies=%v and %q", tt.svc, tt.adv, got, tt.applies, tt.why)
		}
	}
	out := mustRun(t, "explain", "service", "-n", "explain-sel", "api")
	for _, want := range []string{
		"BGPAdvertisement/sel-edge: names \"sel-pool\" in addressPools\n    does not apply to this Service: none of its serviceSelectors (tier=edge) matches the Service's labels (tier=core)",
		"BGPAdvertisement/sel-all: names \"sel-pool\" in addressPools\n    applies to this Service: applies to every Service of the pool",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}

	// Only advertisements that apply count: none applying is a problem.
	lone := lbService("explain-sel", "lone", "sel-pool", "198.51.100.66")
	create(t, lone)
	if err := api.Client.Delete(context.Background(), bgp("sel-all", nil, nil)); err != nil {
		t.Fatal(err)
	}
	if ex := explainJSON(t, "explain-sel", "lone"); !hasProblem(ex, "advertisements select pool sel-pool but none applies to this Service") {
		t.Errorf("problems: %q", ex.Problems)
	}
}
