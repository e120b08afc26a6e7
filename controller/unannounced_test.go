package controller_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controller"
	"github.com/portico-lb/portico/lbservice"
)

func TestWhyUnannounced(t *testing.T) {
	node := func(name string, ready bool, labels ...string) corev1.Node {
		n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
		for i := 0; i+1 < len(labels); i += 2 {
			n.Labels[labels[i]] = labels[i+1]
		}
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
		return n
	}
	l2 := func(pools []string, opts ...func(*v1alpha1.L2AdvertisementSpec)) v1alpha1.L2Advertisement {
		a := v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "l2"}, Spec: v1alpha1.L2AdvertisementSpec{AddressPools: pools}}
		for _, o := range opts {
			o(&a.Spec)
		}
		return a
	}
	edgeOnly := func(s *v1alpha1.L2AdvertisementSpec) {
		s.ServiceSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}}
	}
	rack1 := []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "1"}}}
	onRack1 := func(s *v1alpha1.L2AdvertisementSpec) { s.NodeSelectors = rack1 }
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "shop"}}
	local := svc.DeepCopy()
	local.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	missing := []netip.Addr{netip.MustParseAddr("192.0.2.10")}
	tests := []struct {
		name   string
		svc    *corev1.Service
		x      controller.Cluster
		reason string
		says   []string
	}{
		{"no advertisement at all", svc, controller.Cluster{Nodes: []corev1.Node{node("a", true)}},
			controller.ReasonNoAdvertisement, []string{"192.0.2.10", "pool lan", "addressPools: [lan]", "kubectl portico explain service -n web shop"}},
		{"an advertisement of another pool", svc, controller.Cluster{L2Advertisements: []v1alpha1.L2Advertisement{l2([]string{"dmz"})}, Nodes: []corev1.Node{node("a", true)}},
			controller.ReasonNoAdvertisement, nil},
		{"an advertisement of the pool for other Services", svc, controller.Cluster{L2Advertisements: []v1alpha1.L2Advertisement{l2([]string{"lan"}, edgeOnly)}, Nodes: []corev1.Node{node("a", true)}},
			controller.ReasonNoAdvertisement, nil},
		{"every node excluded or not ready", svc, controller.Cluster{
			L2Advertisements: []v1alpha1.L2Advertisement{l2(nil)},
			Nodes:            []corev1.Node{node("a", true, lbservice.ExcludeLabel, ""), node("b", false)}},
			controller.ReasonNoEligibleNode, []string{"a: labelled " + lbservice.ExcludeLabel, "b: not Ready"}},
		{"left out by node selectors", svc, controller.Cluster{
			L2Advertisements: []v1alpha1.L2Advertisement{l2(nil, onRack1)},
			Nodes:            []corev1.Node{node("a", true, "rack", "2")}},
			controller.ReasonNoEligibleNode, []string{"a: left out by the advertisements'"}},
		{"BGP with no peer for the node", svc, controller.Cluster{
			BGPAdvertisements: []v1alpha1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "bgp"}}},
			BGPPeers:          []v1alpha1.BGPPeer{{ObjectMeta: metav1.ObjectMeta{Name: "tor"}, Spec: v1alpha1.BGPPeerSpec{NodeSelectors: rack1}}},
			Nodes:             []corev1.Node{node("a", true, "rack", "2")}},
			controller.ReasonNoEligibleNode, []string{"BGPPeers"}},
		{"no node at all", svc, controller.Cluster{L2Advertisements: []v1alpha1.L2Advertisement{l2(nil)}},
			controller.ReasonNoEligibleNode, []string{"no Node"}},
		{"Local with no endpoint on an eligible node", local, controller.Cluster{
			L2Advertisements: []v1alpha1.L2Advertisement{l2(nil)},
			Nodes:            []corev1.Node{node("a", true), node("b", false)},
			EndpointNodes:    map[string]bool{"b": true}},
			controller.ReasonNoLocalEndpoint, []string{"Local", "(a)"}},
		{"eligible nodes that do not report it", local, controller.Cluster{
			L2Advertisements: []v1alpha1.L2Advertisement{l2(nil)},
			Nodes:            []corev1.Node{node("a", true), node("b", true)},
			EndpointNodes:    map[string]bool{"b": true}},
			controller.ReasonNotReported, []string{"although b may announce it", "interface on the address's subnet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, msg := controller.WhyUnannounced(tt.svc, missing, "lan", tt.x)
			if reason != tt.reason {
				t.Errorf("reason %s, want %s (%s)", reason, tt.reason, msg)
			}
			for _, s := range tt.says {
				if !strings.Contains(msg, s) {
					t.Errorf("message does not say %q: %s", s, msg)
				}
			}
		})
	}
}

// TestNotAnnouncedCondition: an address no node announces for the grace
// period gets the Service a False Announced condition and a NotAnnounced
// Warning saying why; the reason follows the cluster; a speaker's
// ServiceAnnouncement clears the condition.
func TestNotAnnouncedCondition(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "unheard", []string{"198.51.100.8/30"})
	svc := makeService(t, "unheard-a", annotate(lbservice.AnnotationPool, "unheard"))
	ip := waitAnyIP(t, svc)[0]

	condition := func(want string) {
		t.Helper()
		waitUntil(t, "Announced condition "+want, func() (bool, string) {
			var got corev1.Service
			if err := apiClient.Get(context.Background(), client.ObjectKeyFromObject(svc), &got); err != nil {
				return false, err.Error()
			}
			c := meta.FindStatusCondition(got.Status.Conditions, controller.ConditionAnnounced)
			if want == "" {
				return c == nil, fmt.Sprint(c)
			}
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == want && strings.Contains(c.Message, ip), fmt.Sprint(c)
		})
	}
	condition(controller.ReasonNoAdvertisement)
	waitEvent(t, svc, controller.ReasonNotAnnounced, ip, "no L2Advertisement or BGPAdvertisement applies to pool unheard")

	// An advertisement of the pool, in a cluster with no Node: the reason
	// moves on at the next look.
	adv := &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "unheard"}, Spec: v1alpha1.L2AdvertisementSpec{AddressPools: []string{"unheard"}}}
	if err := apiClient.Create(context.Background(), adv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = apiClient.Delete(context.Background(), adv) })
	// The reason is worked out again at the 30 s recheck, or when an
	// announcement queues the Service, from a view of the cluster at most
	// 2 s old: wait that out, then announce another address and withdraw
	// it to queue the Service now.
	time.Sleep(2500 * time.Millisecond)
	withdraw := announce(t, svc, "node-a", "203.0.113.9")
	deleteObject(t, withdraw)
	condition(controller.ReasonNoEligibleNode)

	announce(t, svc, "node-a", ip)
	condition("")
}
