package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/pools"
)

// announced compares each Service's assigned addresses with the speakers'
// ServiceAnnouncements and keeps portico_pool_addresses_unannounced: per
// pool and family, the assigned addresses that no node announces. It is
// what the PorticoAddressNotAnnounced alert reads, exactly, where pool
// usage against the speakers' announcement counts could only bound it.
//
// A Service whose address stays unannounced for Grace also gets the
// Announced condition (False, with the reason) and a NotAnnounced Warning
// Event, both saying why; the condition goes once every address is
// announced.
type announced struct {
	client  client.Client
	classes lbservice.Classes
	// view reads what explains a missing announcement.
	view   *clusterView
	events record.EventRecorder
	log    logr.Logger
	grace  time.Duration
	// pace is the time between two Services told about (Start): the
	// reasons, the condition writes and the Events cost at most that,
	// however many Services nobody announces, and never slow down
	// allocating addresses, whose writes share the client's rate limit.
	pace time.Duration

	mu     sync.Mutex
	ledger unannounced
	// since is when each Service was first seen missing an address; due
	// is when Start should next work out why; told is the last reason and
	// message its Event said.
	since map[types.NamespacedName]time.Time
	due   map[types.NamespacedName]time.Time
	told  map[types.NamespacedName]string
}

// Grace is how long an assigned address may go unannounced before the
// Service is told: enough for a speaker to announce a new address and
// write its ServiceAnnouncement, or to fail over, with room to spare.
const Grace = 5 * time.Second

// viewTTL is how long the cluster-wide view behind the reasons is reused.
const viewTTL = 2 * time.Second

// recheck is how often the reason of a Service still unannounced is worked
// out again: Nodes and advertisements change it without queueing the
// Service.
const recheck = 30 * time.Second

// setupAnnounced registers the reconciler: a Service, or any
// ServiceAnnouncement naming it, queues the Service.
func setupAnnounced(mgr ctrl.Manager, events record.EventRecorder, classes lbservice.Classes) error {
	r := &announced{
		client: mgr.GetClient(), classes: classes, events: events, grace: Grace,
		log:    mgr.GetLogger().WithName("announced"),
		view:   &clusterView{api: mgr.GetAPIReader(), ttl: viewTTL},
		pace:   100 * time.Millisecond,
		ledger: newUnannounced(),
		since:  map[types.NamespacedName]time.Time{},
		due:    map[types.NamespacedName]time.Time{},
		told:   map[types.NamespacedName]string{},
	}
	if err := mgr.Add(r); err != nil {
		return err
	}
	owner := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		name := o.GetLabels()[v1alpha1.ServiceNameLabel]
		if name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("announced").
		For(&corev1.Service{}, builder.WithPredicates(addressesChanged)).
		Watches(&v1alpha1.ServiceAnnouncement{}, owner).
		Complete(r)
}

// addressesChanged passes the Service events that can change what the
// reconciler counts: a Service created with addresses, deleted, or updated
// in its addresses, pool, type or class. Most updates of a Service (its
// spec while it keeps its addresses, the allocator's own annotation write
// before its status) cost nothing then.
var addressesChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool {
		svc, ok := e.Object.(*corev1.Service)
		return !ok || len(svc.Status.LoadBalancer.Ingress) > 0
	},
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Service)
		n, ok2 := e.ObjectNew.(*corev1.Service)
		if !ok1 || !ok2 {
			return true
		}
		return !equality.Semantic.DeepEqual(o.Status.LoadBalancer, n.Status.LoadBalancer) ||
			o.Annotations[lbservice.AnnotationAllocatedFrom] != n.Annotations[lbservice.AnnotationAllocatedFrom] ||
			o.Spec.Type != n.Spec.Type || !equality.Semantic.DeepEqual(o.Spec.LoadBalancerClass, n.Spec.LoadBalancerClass)
	},
}

// Reconcile implements reconcile.Reconciler.
func (r *announced) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var svc corev1.Service
	if err := r.client.Get(ctx, req.NamespacedName, &svc); err != nil {
		if client.IgnoreNotFound(err) != nil {
			return reconcile.Result{}, err
		}
		r.set(req.NamespacedName, nil, "")
		return reconcile.Result{}, nil
	}
	ips := StatusIPs(&svc)
	if !r.classes.Ours(&svc) || len(ips) == 0 {
		r.set(req.NamespacedName, nil, "")
		return reconcile.Result{}, r.clear(ctx, &svc)
	}
	var anns v1alpha1.ServiceAnnouncementList
	if err := r.client.List(ctx, &anns, client.InNamespace(svc.Namespace), client.MatchingLabels{v1alpha1.ServiceNameLabel: svc.Name}); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing ServiceAnnouncements of %s: %w", req.NamespacedName, err)
	}
	pool := svc.Annotations[lbservice.AnnotationAllocatedFrom]
	missing := Unannounced(&svc, anns.Items)
	r.set(req.NamespacedName, missing, pool)
	if len(missing) == 0 {
		return reconcile.Result{}, r.clear(ctx, &svc)
	}
	return reconcile.Result{}, nil
}

// NeedLeaderElection: the leader tells, as it counts.
func (r *announced) NeedLeaderElection() bool { return true }

// Start tells Services about addresses unannounced past the grace period,
// one at a time, the most overdue first, every pace.
func (r *announced) Start(ctx context.Context) error {
	tick := time.NewTicker(r.pace)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		key, ok := r.next(time.Now())
		if !ok {
			continue
		}
		again := recheck
		if err := r.tell(ctx, key); err != nil {
			r.log.Error(err, "telling a Service why its address is not announced", "service", key)
			again = time.Second
		}
		r.mu.Lock()
		if _, ok := r.due[key]; ok {
			r.due[key] = time.Now().Add(again)
		}
		r.mu.Unlock()
	}
}

// next returns the Service most overdue for telling, if any is due.
func (r *announced) next(now time.Time) (types.NamespacedName, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var key types.NamespacedName
	var at time.Time
	for k, t := range r.due {
		if !t.After(now) && (at.IsZero() || t.Before(at)) {
			key, at = k, t
		}
	}
	return key, !at.IsZero()
}

// tell works out why key's addresses are not announced and says so in its
// Announced condition and, when the reason changed, a Warning Event.
func (r *announced) tell(ctx context.Context, key types.NamespacedName) error {
	r.mu.Lock()
	missing, pool := slices.Clone(r.ledger.missing[key]), r.ledger.pool[key]
	r.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	var svc corev1.Service
	if err := r.client.Get(ctx, key, &svc); err != nil {
		return client.IgnoreNotFound(err)
	}
	x, err := r.view.read(ctx, r.client, &svc, pool)
	if err != nil {
		return fmt.Errorf("finding why %s is not announced: %w", key, err)
	}
	reason, msg := WhyUnannounced(&svc, missing, pool, x)
	orig := svc.DeepCopy()
	meta.SetStatusCondition(&svc.Status.Conditions, metav1.Condition{
		Type: ConditionAnnounced, Status: metav1.ConditionFalse, ObservedGeneration: svc.Generation,
		Reason: reason, Message: msg,
	})
	if !equality.Semantic.DeepEqual(orig.Status.Conditions, svc.Status.Conditions) {
		if err := r.client.Status().Patch(ctx, &svc, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("service %s: writing the %s condition: %w", key, ConditionAnnounced, err)
		}
	}
	r.mu.Lock()
	_, still := r.due[key]
	tell := still && r.told[key] != reason+msg
	if tell {
		r.told[key] = reason + msg
	}
	r.mu.Unlock()
	if !still {
		// Announced while we wrote: take back what we wrote.
		return r.clear(ctx, &svc)
	}
	if tell {
		r.events.Event(&svc, corev1.EventTypeWarning, ReasonNotAnnounced, msg)
	}
	return nil
}

// clear removes the Announced condition, if the Service has it.
func (r *announced) clear(ctx context.Context, svc *corev1.Service) error {
	if meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced) == nil {
		return nil
	}
	orig := svc.DeepCopy()
	meta.RemoveStatusCondition(&svc.Status.Conditions, ConditionAnnounced)
	if err := r.client.Status().Patch(ctx, svc, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("service %s/%s: removing the %s condition: %w", svc.Namespace, svc.Name, ConditionAnnounced, err)
	}
	return nil
}

// set records svc's missing addresses for the gauge and schedules telling
// it: Grace after it was first seen missing one, or at once when it was
// already told (what changed may change the reason).
func (r *announced) set(svc types.NamespacedName, missing []netip.Addr, pool string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.ledger.set(svc, missing, pool) {
		unannouncedAddresses.WithLabelValues(k.pool, familyLabel(k.family)).Set(float64(r.ledger.count[k]))
	}
	if len(missing) == 0 {
		delete(r.since, svc)
		delete(r.due, svc)
		delete(r.told, svc)
		return
	}
	now := time.Now()
	first, ok := r.since[svc]
	if !ok {
		first = now
		r.since[svc] = now
	}
	r.due[svc] = first.Add(r.grace)
	if r.due[svc].Before(now) {
		r.due[svc] = now
	}
}

// Unannounced returns svc's assigned addresses that none of anns (the
// ServiceAnnouncements labelled with its name) announces. Announcements
// owned by another object, such as an earlier Service of the same name
// that the garbage collector has not yet reached, do not count.
func Unannounced(svc *corev1.Service, anns []v1alpha1.ServiceAnnouncement) []netip.Addr {
	on := map[netip.Addr]bool{}
	for i := range anns {
		a := &anns[i]
		if !ownedBy(a, svc.UID) || a.DeletionTimestamp != nil {
			continue
		}
		for _, s := range a.Status.IPs {
			if ip, err := netip.ParseAddr(s); err == nil {
				on[ip.Unmap()] = true
			}
		}
	}
	var out []netip.Addr
	for _, ip := range StatusIPs(svc) {
		if !on[ip] {
			out = append(out, ip)
		}
	}
	return out
}

func ownedBy(o client.Object, uid types.UID) bool {
	for _, r := range o.GetOwnerReferences() {
		if r.UID == uid {
			return true
		}
	}
	return false
}

// poolFamily is one series of the gauge.
type poolFamily struct {
	pool   string
	family pools.Family
}

// unannounced is the ledger behind the gauge. An address shared by several
// Services (allow-shared-ip) counts once, while any of them misses it.
type unannounced struct {
	// missing is, per Service, its addresses no node announces.
	missing map[types.NamespacedName][]netip.Addr
	// pool is the pool each Service's addresses came from.
	pool map[types.NamespacedName]string
	// holders counts the Services missing each address; where counts
	// the addresses with at least one, per series.
	holders map[poolFamily]map[netip.Addr]int
	count   map[poolFamily]int
}

func newUnannounced() unannounced {
	return unannounced{
		missing: map[types.NamespacedName][]netip.Addr{},
		pool:    map[types.NamespacedName]string{},
		holders: map[poolFamily]map[netip.Addr]int{},
		count:   map[poolFamily]int{},
	}
}

// set records svc's missing addresses, from pool, and returns the series
// whose count may have changed.
func (u *unannounced) set(svc types.NamespacedName, missing []netip.Addr, pool string) []poolFamily {
	var touched []poolFamily
	for _, ip := range u.missing[svc] {
		k := poolFamily{u.pool[svc], pools.FamilyOf(ip)}
		u.holders[k][ip]--
		if u.holders[k][ip] == 0 {
			delete(u.holders[k], ip)
			u.count[k]--
		}
		touched = append(touched, k)
	}
	delete(u.missing, svc)
	delete(u.pool, svc)
	if len(missing) > 0 {
		u.missing[svc], u.pool[svc] = missing, pool
	}
	for _, ip := range missing {
		k := poolFamily{pool, pools.FamilyOf(ip)}
		if u.holders[k] == nil {
			u.holders[k] = map[netip.Addr]int{}
		}
		u.holders[k][ip]++
		if u.holders[k][ip] == 1 {
			u.count[k]++
		}
		touched = append(touched, k)
	}
	return touched
}
