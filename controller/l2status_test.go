package controller_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controller"
)

// TestL2AdvertisementStatus: the controller says which pools and nodes an
// L2Advertisement selects, and Ready or why not, and follows pools, node
// labels and the advertisement's own edits.
func TestL2AdvertisementStatus(t *testing.T) {
	cleanup(t)
	runController(t, false)
	ctx := context.Background()
	for _, n := range []string{"l2s-a", "l2s-b"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"zone": "z1"}}}
		if err := apiClient.Create(ctx, node); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = apiClient.Delete(ctx, node) })
	}
	adv := &v1alpha1.L2Advertisement{
		ObjectMeta: metav1.ObjectMeta{Name: "l2s"},
		Spec: v1alpha1.L2AdvertisementSpec{
			AddressPools:  []string{"l2s-lan"},
			NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"zone": "z1"}}},
		},
	}
	if err := apiClient.Create(ctx, adv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = apiClient.Delete(ctx, adv) })

	expect := func(what string, status metav1.ConditionStatus, reason string, pools, nodes []string) {
		t.Helper()
		waitUntil(t, what, func() (bool, string) {
			var got v1alpha1.L2Advertisement
			if err := apiClient.Get(ctx, client.ObjectKeyFromObject(adv), &got); err != nil {
				return false, err.Error()
			}
			c := meta.FindStatusCondition(got.Status.Conditions, controller.ConditionReady)
			ok := c != nil && c.Status == status && c.Reason == reason && c.ObservedGeneration == got.Generation &&
				got.Status.ObservedGeneration == got.Generation &&
				slices.Equal(got.Status.Pools, pools) && slices.Equal(got.Status.Nodes, nodes)
			return ok, fmt.Sprintf("status %+v", got.Status)
		})
	}
	expect("NoPoolSelected", metav1.ConditionFalse, controller.ReasonNoPool, nil, []string{"l2s-a", "l2s-b"})

	pool := &v1alpha1.AddressPool{ObjectMeta: metav1.ObjectMeta{Name: "l2s-lan"}, Spec: v1alpha1.AddressPoolSpec{Addresses: []v1alpha1.AddressRange{"192.0.2.0/28"}}}
	if err := apiClient.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	expect("Ready once the pool exists", metav1.ConditionTrue, controller.ReasonSelected, []string{"l2s-lan"}, []string{"l2s-a", "l2s-b"})

	// Both nodes excluded from load balancing: no node.
	for _, n := range []string{"l2s-a", "l2s-b"} {
		var node corev1.Node
		if err := apiClient.Get(ctx, client.ObjectKey{Name: n}, &node); err != nil {
			t.Fatal(err)
		}
		node.Labels[corev1.LabelNodeExcludeBalancers] = ""
		if err := apiClient.Update(ctx, &node); err != nil {
			t.Fatal(err)
		}
	}
	expect("NoNodeSelected", metav1.ConditionFalse, controller.ReasonNoNode, []string{"l2s-lan"}, nil)

	// A selector that matches another zone's node, which is not excluded.
	c := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "l2s-c", Labels: map[string]string{"zone": "z2"}}}
	if err := apiClient.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = apiClient.Delete(ctx, c) })
	if err := apiClient.Get(ctx, client.ObjectKeyFromObject(adv), adv); err != nil {
		t.Fatal(err)
	}
	adv.Spec.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"zone": "z2"}}}
	if err := apiClient.Update(ctx, adv); err != nil {
		t.Fatal(err)
	}
	expect("Ready from the other zone", metav1.ConditionTrue, controller.ReasonSelected, []string{"l2s-lan"}, []string{"l2s-c"})

	// The API takes any operator in a label selector; the speakers leave
	// an advertisement whose service or namespace selector does not parse
	// out, and the status says why.
	bogus := []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Bogus"}}}}
	edit := func(f func(*v1alpha1.L2Advertisement)) {
		t.Helper()
		if err := apiClient.Get(ctx, client.ObjectKeyFromObject(adv), adv); err != nil {
			t.Fatal(err)
		}
		f(adv)
		if err := apiClient.Update(ctx, adv); err != nil {
			t.Fatal(err)
		}
	}
	edit(func(a *v1alpha1.L2Advertisement) { a.Spec.ServiceSelectors = bogus })
	expect("InvalidSelector for serviceSelectors", metav1.ConditionFalse, controller.ReasonBadSelector, nil, nil)
	edit(func(a *v1alpha1.L2Advertisement) {
		a.Spec.ServiceSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}}
		a.Spec.NamespaceSelectors = bogus
	})
	expect("InvalidSelector for namespaceSelectors", metav1.ConditionFalse, controller.ReasonBadSelector, nil, nil)
	edit(func(a *v1alpha1.L2Advertisement) { a.Spec.NamespaceSelectors = nil })
	expect("Ready with a service selector", metav1.ConditionTrue, controller.ReasonSelected, []string{"l2s-lan"}, []string{"l2s-c"})
}
