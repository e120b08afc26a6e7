// Package controller hands out LoadBalancer addresses: it keeps the address
// pools and every assigned Service in a pools.Allocator, writes each
// Service's status.loadBalancer, and reports pool usage in pool status.
//
// The reconcilers are thin: what an assignment should be is decided by
// package pools; this package turns Kubernetes objects into its requests and
// its answers into status, annotations and Events.
package controller

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/pools"
)

// Event reasons on Services.
const (
	ReasonAllocated        = "IPAllocated"
	ReasonAllocationFailed = "AllocationFailed"
	ReasonReleased         = "IPReleased"
)

// Options configure the controller.
type Options struct {
	// IngressService is the bundled ingress's Service: it gets the first
	// address of the default pool.
	IngressService types.NamespacedName
	// Workers is how many Services are reconciled at once.
	Workers int
	// Classes says which Services are ours; RequireClass leaves
	// class-less Services to another load balancer.
	Classes lbservice.Classes
}

// Controller owns the allocator and the bookkeeping around it.
type Controller struct {
	client client.Client
	// events is the core/v1 recorder: the events.k8s.io one merges Events
	// that differ only in their note into one series and keeps the first
	// note, which would hide a second, different AllocationFailed reason.
	events record.EventRecorder
	opts   Options
	alloc  *pools.Allocator

	serviceKicks *kicker
	poolKicks    *kicker

	mu       sync.Mutex
	loaded   bool
	poolsSet poolState
	// pending holds Services that could not get an address, with the last
	// reason told to the user, so a retry that fails the same way stays quiet.
	pending map[types.NamespacedName]string
	// orphaned holds Services whose addresses left every pool, with those
	// addresses, until they are replaced or cleared.
	orphaned map[types.NamespacedName][]netip.Addr
	// statusWritten is when each pool's status was last written.
	statusWritten map[string]time.Time
}

// poolState is what the last pool configuration produced.
type poolState struct {
	fingerprint string
	report      pools.Report
	invalid     map[string]string // pool → why it cannot be used
}

// New returns a Controller; Setup wires it into a manager.
func New(c client.Client, rec record.EventRecorder, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	return &Controller{
		client:       c,
		events:       rec,
		opts:         opts,
		alloc:        pools.New(),
		serviceKicks: newKicker(),
		poolKicks:    newKicker(),
		pending:      map[types.NamespacedName]string{},
		orphaned:     map[types.NamespacedName][]netip.Addr{},

		statusWritten: map[string]time.Time{},
	}
}

// Setup registers the Service, AddressPool, L2Advertisement status and
// announcement reconcilers with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	c := New(mgr.GetClient(), mgr.GetEventRecorderFor("portico-controller"), opts) //nolint:staticcheck // see Controller.events
	if err := mgr.Add(c.serviceKicks); err != nil {
		return err
	}
	if err := mgr.Add(c.poolKicks); err != nil {
		return err
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("service").
		For(&corev1.Service{}).
		WatchesRawSource(c.serviceKicks.source()).
		Watches(&corev1.Namespace{}, handler.Funcs{UpdateFunc: c.namespaceChanged}).
		WithOptions(crcontroller.Options{MaxConcurrentReconciles: c.opts.Workers}).
		Complete(reconcile.Func(c.ReconcileService))
	if err != nil {
		return fmt.Errorf("service controller: %w", err)
	}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("addresspool").
		For(&v1alpha1.AddressPool{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(c.poolKicks.source()).
		Complete(reconcile.Func(c.ReconcilePool))
	if err != nil {
		return fmt.Errorf("addresspool controller: %w", err)
	}
	if err := setupL2Status(mgr); err != nil {
		return fmt.Errorf("l2advertisement controller: %w", err)
	}
	if err := setupAnnounced(mgr, c.events, c.opts.Classes); err != nil {
		return fmt.Errorf("announcement controller: %w", err)
	}
	return nil
}

// load fills the allocator with every pool and every address already
// assigned, before anything is allocated, so a restart never moves an IP.
// It runs once, on the first reconcile of whichever controller comes first;
// by then the manager's caches have synced.
func (c *Controller) load(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded {
		return nil
	}
	log := logr.FromContextOrDiscard(ctx)
	if _, err := c.applyPoolsLocked(ctx); err != nil {
		return err
	}
	var list corev1.ServiceList
	if err := c.client.List(ctx, &list); err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	// Oldest first: if two Services claim one address and may not share
	// it, the one that had it first keeps it.
	sort.Slice(list.Items, func(i, j int) bool {
		a, b := &list.Items[i], &list.Items[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	loaded := 0
	for i := range list.Items {
		svc := &list.Items[i]
		ips := StatusIPs(svc)
		if !c.opts.Classes.Ours(svc) || len(ips) == 0 {
			continue
		}
		req, _ := Request(svc, c.namespaceLabels(ctx, svc.Namespace), c.isIngress(svc))
		if _, err := c.alloc.Assign(req, ips); err != nil {
			// The Service's reconcile replaces or clears the address
			// and tells the user why.
			log.Info("existing assignment not kept", "service", req.Key, "ip", ips, "reason", err.Error())
			c.orphaned[client.ObjectKeyFromObject(svc)] = ips
			continue
		}
		loaded++
	}
	log.Info("allocator loaded", "services", loaded)
	c.loaded = true
	return nil
}

func (c *Controller) isIngress(svc *corev1.Service) bool {
	return svc.Namespace == c.opts.IngressService.Namespace && svc.Name == c.opts.IngressService.Name
}

func (c *Controller) namespaceLabels(ctx context.Context, name string) map[string]string {
	var ns corev1.Namespace
	if err := c.client.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
		return nil
	}
	return ns.Labels
}

// namespaceChanged retries pending Services in a namespace whose labels
// changed: a pool's namespace selector may now let them in.
func (c *Controller) namespaceChanged(_ context.Context, e event.UpdateEvent, _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) {
		c.retryPending()
	}
}

// ReconcileService brings one Service's assignment and status in line.
func (c *Controller) ReconcileService(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if err := c.load(ctx); err != nil {
		return reconcile.Result{}, err
	}
	key := req.NamespacedName
	var svc corev1.Service
	if err := c.client.Get(ctx, key, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			c.release(key)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if !c.opts.Classes.Ours(&svc) || !svc.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, c.unmanage(ctx, &svc)
	}

	request, err := Request(&svc, c.namespaceLabels(ctx, svc.Namespace), c.isIngress(&svc))
	if err != nil {
		return reconcile.Result{}, c.failed(ctx, &svc, "invalid request: "+err.Error(), reasonInvalidAnnotation, "")
	}
	a, err := c.alloc.Allocate(request)
	if err != nil {
		reason, pool := failureLabels(request.Pool, err)
		return reconcile.Result{}, c.failed(ctx, &svc, err.Error(), reason, pool)
	}
	return reconcile.Result{}, c.assigned(ctx, &svc, a)
}

// assigned writes a successful assignment to the Service.
func (c *Controller) assigned(ctx context.Context, svc *corev1.Service, a pools.Assignment) error {
	key := client.ObjectKeyFromObject(svc)
	old := StatusIPs(svc)
	changed := !slices.Equal(old, a.IPs)
	if err := c.writeStatus(ctx, svc, a.IPs, a.Pool); err != nil {
		return err
	}

	c.mu.Lock()
	lostIPs, wasOrphan := c.orphaned[key]
	delete(c.orphaned, key)
	delete(c.pending, key)
	c.mu.Unlock()

	if changed {
		switch {
		case wasOrphan && len(lostIPs) > 0:
			c.events.Eventf(svc, corev1.EventTypeWarning, ReasonReleased,
				"%s left every usable address pool; replaced by %s from pool %q", joinIPs(lostIPs), joinIPs(a.IPs), a.Pool)
		case len(old) > 0:
			c.events.Eventf(svc, corev1.EventTypeNormal, ReasonAllocated,
				"assigned %s from pool %q (was %s)", joinIPs(a.IPs), a.Pool, joinIPs(old))
		default:
			c.events.Eventf(svc, corev1.EventTypeNormal, ReasonAllocated,
				"assigned %s from pool %q", joinIPs(a.IPs), a.Pool)
		}
		if a.Note != "" {
			c.events.Eventf(svc, corev1.EventTypeWarning, ReasonAllocated, "%s", a.Note)
		}
		logr.FromContextOrDiscard(ctx).Info("assigned", "service", key.String(), "ip", joinIPs(a.IPs), "pool", a.Pool)
		c.kickPools(a.Pool)
	}
	return nil
}

// failed reports an allocation that could not be made. A Service that still
// holds a valid address keeps it; one whose address is gone is cleared.
// reason and pool label the failure in the metrics.
func (c *Controller) failed(ctx context.Context, svc *corev1.Service, why, reason, pool string) error {
	key := client.ObjectKeyFromObject(svc)
	cur, holds := c.alloc.Lookup(key.String())

	holds = holds && len(cur.IPs) > 0 && cur.Pool != ""

	c.mu.Lock()
	lostIPs, wasOrphan := c.orphaned[key]
	delete(c.orphaned, key)
	last, wasPending := c.pending[key]
	c.pending[key] = why
	c.mu.Unlock()
	if !wasPending || last != why {
		allocationFailures.WithLabelValues(pool, reason).Inc()
	}

	if holds {
		if err := c.writeStatus(ctx, svc, cur.IPs, cur.Pool); err != nil {
			return err
		}
		if !wasPending || last != why {
			c.events.Eventf(svc, corev1.EventTypeWarning, ReasonAllocationFailed,
				"%s; keeping %s", why, joinIPs(cur.IPs))
		}
		return nil
	}
	old := StatusIPs(svc)
	if err := c.writeStatus(ctx, svc, nil, ""); err != nil {
		return err
	}
	if len(old) > 0 {
		if !wasOrphan {
			lostIPs = old
		}
		c.events.Eventf(svc, corev1.EventTypeWarning, ReasonReleased,
			"%s is no longer usable and no replacement could be allocated: %s", joinIPs(lostIPs), why)
	} else if !wasPending || last != why {
		c.events.Eventf(svc, corev1.EventTypeWarning, ReasonAllocationFailed, "%s", why)
	}
	logr.FromContextOrDiscard(ctx).Info("allocation failed", "service", key.String(), "reason", why)
	return nil
}

// unmanage releases the addresses of a Service Portico no longer serves: it
// stopped being a LoadBalancer, moved to another class, or is being deleted.
func (c *Controller) unmanage(ctx context.Context, svc *corev1.Service) error {
	key := client.ObjectKeyFromObject(svc)
	a, held := c.alloc.Lookup(key.String())
	c.release(key)
	if _, ours := svc.Annotations[lbservice.AnnotationAllocatedFrom]; !ours {
		return nil
	}
	old := StatusIPs(svc)
	// A Service that moved to another class keeps whatever that class's
	// implementation has written since; only our own addresses are cleared.
	var keep []netip.Addr
	if held && !sameIPs(old, a.IPs) {
		keep = old
	}
	if err := c.writeStatus(ctx, svc, keep, ""); err != nil {
		return err
	}
	why := "it is no longer of type LoadBalancer"
	switch {
	case !svc.DeletionTimestamp.IsZero():
		why = "it is being deleted"
	case svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil:
		why = "it has no loadBalancerClass and the controller runs with --require-class"
	case svc.Spec.Type == corev1.ServiceTypeLoadBalancer:
		why = fmt.Sprintf("its loadBalancerClass is now %q", *svc.Spec.LoadBalancerClass)
	}
	// The API server itself clears status.loadBalancer when the type
	// changes, so the allocator's record names what was released.
	released := old
	if held && len(a.IPs) > 0 {
		released = a.IPs
	}
	if len(released) > 0 {
		c.events.Eventf(svc, corev1.EventTypeNormal, ReasonReleased, "released %s: %s", joinIPs(released), why)
	}
	return nil
}

// release frees a Service's addresses and lets waiting Services retry.
func (c *Controller) release(key types.NamespacedName) {
	a, held := c.alloc.Lookup(key.String())
	c.alloc.Release(key.String())
	c.mu.Lock()
	delete(c.pending, key)
	delete(c.orphaned, key)
	c.mu.Unlock()
	if held {
		c.kickPools(a.Pool)
		c.retryPending()
	}
}

// retryPending re-queues every Service waiting for an address.
func (c *Controller) retryPending() {
	c.mu.Lock()
	keys := make([]types.NamespacedName, 0, len(c.pending))
	for k := range c.pending {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	c.serviceKicks.Kick(keys...)
}

func (c *Controller) kickPools(names ...string) {
	for _, n := range names {
		if n != "" {
			c.poolKicks.Kick(types.NamespacedName{Name: n})
		}
	}
}

// writeStatus sets status.loadBalancer.ingress and the allocated-from-pool
// annotation, writing only what differs. Status goes first: it is what a
// restarted controller reads back.
func (c *Controller) writeStatus(ctx context.Context, svc *corev1.Service, ips []netip.Addr, pool string) error {
	want := make([]corev1.LoadBalancerIngress, 0, len(ips))
	vip := corev1.LoadBalancerIPModeVIP
	for _, ip := range ips {
		want = append(want, corev1.LoadBalancerIngress{IP: ip.String(), IPMode: &vip})
	}
	if !ingressEqual(svc.Status.LoadBalancer.Ingress, want) {
		orig := svc.DeepCopy()
		svc.Status.LoadBalancer.Ingress = want
		if err := c.client.Status().Patch(ctx, svc, client.MergeFrom(orig)); err != nil {
			return fmt.Errorf("writing status of %s/%s: %w", svc.Namespace, svc.Name, err)
		}
	}
	if svc.Annotations[lbservice.AnnotationAllocatedFrom] != pool {
		orig := svc.DeepCopy()
		if pool == "" {
			delete(svc.Annotations, lbservice.AnnotationAllocatedFrom)
		} else {
			if svc.Annotations == nil {
				svc.Annotations = map[string]string{}
			}
			svc.Annotations[lbservice.AnnotationAllocatedFrom] = pool
		}
		if err := c.client.Patch(ctx, svc, client.MergeFrom(orig)); err != nil {
			return fmt.Errorf("annotating %s/%s: %w", svc.Namespace, svc.Name, err)
		}
	}
	return nil
}

func ingressEqual(a, b []corev1.LoadBalancerIngress) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].IP != b[i].IP || a[i].Hostname != b[i].Hostname || len(a[i].Ports) > 0 ||
			a[i].IPMode == nil || b[i].IPMode == nil || *a[i].IPMode != *b[i].IPMode {
			return false
		}
	}
	return true
}

// StatusIPs reads the addresses in a Service's status, skipping any that do
// not parse (hostnames, garbage written by hand).
func StatusIPs(svc *corev1.Service) []netip.Addr {
	var ips []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(ing.IP); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	return ips
}

func sameIPs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, ip := range a {
		if !slices.Contains(b, ip) {
			return false
		}
	}
	return true
}

func joinIPs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}
