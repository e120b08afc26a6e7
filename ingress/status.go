package ingress

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// statusWriter puts the publish Service's LoadBalancer addresses into the
// status of every Ingress the controller serves, and takes them out of
// Ingresses it no longer serves. It runs on the leader only.
type statusWriter struct {
	client client.Client
	opts   Options
}

func setupStatus(mgr ctrl.Manager, opts Options) error {
	w := &statusWriter{client: mgr.GetClient(), opts: opts}
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var ings networkingv1.IngressList
		if err := w.client.List(ctx, &ings); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(ings.Items))
		for _, ing := range ings.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}})
		}
		return reqs
	})
	publish := func(obj client.Object) bool {
		return obj.GetNamespace() == opts.PublishService.Namespace && obj.GetName() == opts.PublishService.Name
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("ingress-status").
		For(&networkingv1.Ingress{}).
		Watches(&corev1.Service{}, all, builder.WithPredicates(predicate.NewPredicateFuncs(publish))).
		Watches(&networkingv1.IngressClass{}, all).
		Complete(w)
}

func (w *statusWriter) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var ing networkingv1.Ingress
	if err := w.client.Get(ctx, req.NamespacedName, &ing); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var classes networkingv1.IngressClassList
	if err := w.client.List(ctx, &classes); err != nil {
		return reconcile.Result{}, err
	}
	ours, err := w.addresses(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	have := ing.Status.LoadBalancer.Ingress
	var want []networkingv1.IngressLoadBalancerIngress
	if ClassOf(w.opts.ClassName, w.opts.WithoutClass, classes.Items).Serves(&ing) {
		want = ours
	} else if len(have) == 0 || !subset(have, ours) {
		// Not ours, and what is there was not written by us (another
		// controller's, or addresses we no longer publish): leave it.
		return reconcile.Result{}, nil
	}
	if slices.EqualFunc(have, want, sameAddress) {
		return reconcile.Result{}, nil
	}
	patch := client.MergeFrom(ing.DeepCopy())
	ing.Status.LoadBalancer.Ingress = want
	if err := w.client.Status().Patch(ctx, &ing, patch); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	ctrl.LoggerFrom(ctx).Info("ingress status updated", "ingress", req.String(), "addresses", len(want))
	return reconcile.Result{}, nil
}

// addresses returns the publish Service's LoadBalancer addresses as Ingress
// status entries: none while it has none.
func (w *statusWriter) addresses(ctx context.Context) ([]networkingv1.IngressLoadBalancerIngress, error) {
	var svc corev1.Service
	if err := w.client.Get(ctx, w.opts.PublishService, &svc); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	var out []networkingv1.IngressLoadBalancerIngress
	for _, a := range svc.Status.LoadBalancer.Ingress {
		if a.IP == "" && a.Hostname == "" {
			continue
		}
		out = append(out, networkingv1.IngressLoadBalancerIngress{IP: a.IP, Hostname: a.Hostname})
	}
	return out, nil
}

func sameAddress(a, b networkingv1.IngressLoadBalancerIngress) bool {
	return a.IP == b.IP && a.Hostname == b.Hostname && len(a.Ports) == len(b.Ports)
}

func subset(have, ours []networkingv1.IngressLoadBalancerIngress) bool {
	for _, h := range have {
		if !slices.ContainsFunc(ours, func(o networkingv1.IngressLoadBalancerIngress) bool { return sameAddress(h, o) }) {
			return false
		}
	}
	return true
}
