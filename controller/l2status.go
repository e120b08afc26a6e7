package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
)

// Condition type and reasons of an L2Advertisement.
const (
	ConditionReady    = "Ready"
	ReasonSelected    = "Selected"
	ReasonNoPool      = "NoPoolSelected"
	ReasonNoNode      = "NoNodeSelected"
	ReasonBadSelector = "InvalidSelector"
)

// l2Status writes what each L2Advertisement selects: its pools, its nodes,
// and Ready or why not. It is stateless; the controller's leader is the one
// writer.
type l2Status struct {
	client client.Client
}

// setupL2Status registers the L2Advertisement status reconciler. Pools and
// Nodes (their labels, through a metadata-only watch) re-queue every
// advertisement.
func setupL2Status(mgr ctrl.Manager) error {
	r := &l2Status{client: mgr.GetClient()}
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.L2AdvertisementList
		if err := r.client.List(ctx, &list); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, len(list.Items))
		for i := range list.Items {
			reqs[i].Name = list.Items[i].Name
		}
		return reqs
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("l2advertisement").
		For(&v1alpha1.L2Advertisement{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.AddressPool{}, all, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Watches(&corev1.Node{}, all, builder.OnlyMetadata, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *l2Status) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var adv v1alpha1.L2Advertisement
	if err := r.client.Get(ctx, req.NamespacedName, &adv); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var pools v1alpha1.AddressPoolList
	if err := r.client.List(ctx, &pools); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing address pools: %w", err)
	}
	nodes := &metav1.PartialObjectMetadataList{}
	nodes.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
	if err := r.client.List(ctx, nodes); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing nodes: %w", err)
	}
	want := L2AdvertisementStatus(&adv, pools.Items, nodes.Items)
	orig := adv.DeepCopy()
	st := &adv.Status
	st.ObservedGeneration, st.Pools, st.Nodes = want.ObservedGeneration, want.Pools, want.Nodes
	for _, c := range want.Conditions {
		meta.SetStatusCondition(&st.Conditions, c)
	}
	if equality.Semantic.DeepEqual(orig.Status, adv.Status) {
		return reconcile.Result{}, nil
	}
	if err := r.client.Status().Patch(ctx, &adv, client.MergeFrom(orig)); err != nil {
		return reconcile.Result{}, fmt.Errorf("L2Advertisement %q: writing status: %w", adv.Name, err)
	}
	return reconcile.Result{}, nil
}

// L2AdvertisementStatus computes what adv selects among pools and nodes,
// with its Ready condition. The rules are the speaker's: no pool names and
// no pool selectors select every pool; no node selectors select every
// node; nodes labelled node.kubernetes.io/exclude-from-external-load-balancers
// never announce. Invalid selectors, the Services' included, make it not
// Ready with reason InvalidSelector.
func L2AdvertisementStatus(adv *v1alpha1.L2Advertisement, pools []v1alpha1.AddressPool, nodes []metav1.PartialObjectMetadata) v1alpha1.L2AdvertisementStatus {
	st := v1alpha1.L2AdvertisementStatus{ObservedGeneration: adv.Generation}
	ready := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, ObservedGeneration: adv.Generation}

	// The Services it applies to are the speakers' business (they read
	// the Services and namespaces); a selector that does not parse makes
	// them leave the advertisement out, which is said here.
	for _, f := range []struct {
		name, then string
		sels       []metav1.LabelSelector
	}{
		{"addressPoolSelectors", "", adv.Spec.AddressPoolSelectors},
		{"nodeSelectors", "", adv.Spec.NodeSelectors},
		{"serviceSelectors", "; the speakers leave this advertisement out until it is fixed", adv.Spec.ServiceSelectors},
		{"namespaceSelectors", "; the speakers leave this advertisement out until it is fixed", adv.Spec.NamespaceSelectors},
	} {
		if _, err := lbservice.ParseSelectors(f.name, f.sels); err != nil {
			ready.Reason, ready.Message = ReasonBadSelector, err.Error()+f.then
			st.Conditions = []metav1.Condition{ready}
			return st
		}
	}

	known := map[string]bool{}
	for i := range pools {
		p := &pools[i]
		known[p.Name] = true
		if lbservice.SelectsPool(p.Name, p.Labels, adv.Spec.AddressPools, adv.Spec.AddressPoolSelectors) {
			st.Pools = append(st.Pools, p.Name)
		}
	}
	slices.Sort(st.Pools)
	var missing []string
	for _, name := range adv.Spec.AddressPools {
		if !known[name] {
			missing = append(missing, name)
		}
	}

	excluded := 0
	for i := range nodes {
		n := &nodes[i]
		if !lbservice.SelectsNode(adv.Spec.NodeSelectors, n.Labels) {
			continue
		}
		if lbservice.Excluded(n.Labels) {
			excluded++
			continue
		}
		st.Nodes = append(st.Nodes, n.Name)
	}
	slices.Sort(st.Nodes)

	switch {
	case len(st.Pools) == 0:
		ready.Reason = ReasonNoPool
		switch {
		case len(pools) == 0:
			ready.Message = "there is no AddressPool; create one"
		case len(missing) > 0:
			ready.Message = fmt.Sprintf("addressPools names %s, which do not exist, and its selectors match no pool", strings.Join(missing, ", "))
		default:
			ready.Message = "no AddressPool matches addressPools or addressPoolSelectors"
		}
	case len(st.Nodes) == 0:
		ready.Reason = ReasonNoNode
		if excluded > 0 {
			ready.Message = fmt.Sprintf("every node it selects (%d) is labelled %s", excluded, lbservice.ExcludeLabel)
		} else {
			ready.Message = "no node matches nodeSelectors"
		}
	default:
		ready.Status, ready.Reason = metav1.ConditionTrue, ReasonSelected
		ready.Message = fmt.Sprintf("%d pools announced from %d nodes", len(st.Pools), len(st.Nodes))
		if len(adv.Spec.ServiceSelectors)+len(adv.Spec.NamespaceSelectors) > 0 {
			ready.Message += ", for the Services its serviceSelectors and namespaceSelectors select"
		}
		if len(missing) > 0 {
			ready.Message += fmt.Sprintf("; addressPools names %s, which do not exist", strings.Join(missing, ", "))
		}
	}
	st.Conditions = []metav1.Condition{ready}
	return st
}
