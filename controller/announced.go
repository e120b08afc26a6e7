package controller

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
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
type announced struct {
	client  client.Client
	classes lbservice.Classes
	mu      sync.Mutex
	ledger  unannounced
}

// setupAnnounced registers the reconciler: a Service, or any
// ServiceAnnouncement naming it, queues the Service.
func setupAnnounced(mgr ctrl.Manager, classes lbservice.Classes) error {
	r := &announced{client: mgr.GetClient(), classes: classes, ledger: newUnannounced()}
	owner := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		name := o.GetLabels()[v1alpha1.ServiceNameLabel]
		if name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("announced").
		For(&corev1.Service{}).
		Watches(&v1alpha1.ServiceAnnouncement{}, owner).
		Complete(r)
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
	ips := statusIPs(&svc)
	if !r.classes.Ours(&svc) || len(ips) == 0 {
		r.set(req.NamespacedName, nil, "")
		return reconcile.Result{}, nil
	}
	var anns v1alpha1.ServiceAnnouncementList
	if err := r.client.List(ctx, &anns, client.InNamespace(svc.Namespace), client.MatchingLabels{v1alpha1.ServiceNameLabel: svc.Name}); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing ServiceAnnouncements of %s: %w", req.NamespacedName, err)
	}
	r.set(req.NamespacedName, Unannounced(&svc, anns.Items), svc.Annotations[lbservice.AnnotationAllocatedFrom])
	return reconcile.Result{}, nil
}

func (r *announced) set(svc types.NamespacedName, missing []netip.Addr, pool string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.ledger.set(svc, missing, pool) {
		unannouncedAddresses.WithLabelValues(k.pool, familyLabel(k.family)).Set(float64(r.ledger.count[k]))
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
	for _, ip := range statusIPs(svc) {
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
