package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/pools"
)

// Condition reasons of an AddressPool.
const (
	reasonAllocating = "Allocating"
	reasonInvalid    = "InvalidAddresses"
	reasonOverlap    = "Overlap"
	reasonNoOverlap  = "NoOverlap"
)

// ReconcilePool applies pool edits to the allocator and writes one pool's
// status: its counters and its Ready and Conflict conditions.
func (c *Controller) ReconcilePool(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if err := c.load(ctx); err != nil {
		return reconcile.Result{}, err
	}
	c.mu.Lock()
	changed, err := c.applyPoolsLocked(ctx)
	state := c.poolsSet
	c.mu.Unlock()
	if err != nil {
		return reconcile.Result{}, err
	}
	if changed {
		c.retryPending()
	}

	var pool v1alpha1.AddressPool
	if err := c.client.Get(ctx, req.NamespacedName, &pool); err != nil {
		if apierrors.IsNotFound(err) {
			forgetPoolMetrics(req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	// Cheap, so at every reconcile; only the status write is throttled.
	c.setPoolMetrics(pool.Name)
	// While Services pour in, counters change on every allocation; one
	// write a second per pool is plenty. Spec changes are written at once.
	if wait := c.statusDelay(pool.Name, changed); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	return reconcile.Result{}, c.writePoolStatus(ctx, &pool, state)
}

const poolStatusInterval = time.Second

// statusDelay says how long to wait before writing a pool's status again.
func (c *Controller) statusDelay(pool string, urgent bool) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if last, ok := c.statusWritten[pool]; ok && !urgent {
		if wait := last.Add(poolStatusInterval).Sub(now); wait > 0 {
			return wait
		}
	}
	c.statusWritten[pool] = now
	return 0
}

// applyPoolsLocked gives the allocator the current pools when their specs
// changed since the last call. Services whose addresses left every pool are
// released and re-queued; the Service reconciler replaces their addresses
// and warns. c.mu must be held.
func (c *Controller) applyPoolsLocked(ctx context.Context) (bool, error) {
	var list v1alpha1.AddressPoolList
	if err := c.client.List(ctx, &list); err != nil {
		return false, fmt.Errorf("listing address pools: %w", err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	var fp strings.Builder
	for i := range list.Items {
		p := &list.Items[i]
		fmt.Fprintf(&fp, "%s/%s/%d;", p.Name, p.UID, p.Generation)
	}
	if c.loaded && fp.String() == c.poolsSet.fingerprint {
		return false, nil
	}

	configs := make([]pools.Pool, 0, len(list.Items))
	invalid := map[string]string{}
	for i := range list.Items {
		cfg, err := PoolConfig(&list.Items[i])
		if err != nil {
			invalid[list.Items[i].Name] = err.Error()
			continue
		}
		configs = append(configs, cfg)
	}
	// Listed before anything changes: if this fails, nothing has, and the
	// next reconcile tries again.
	var services corev1.ServiceList
	if err := c.client.List(ctx, &services); err != nil {
		return false, fmt.Errorf("listing services: %w", err)
	}
	report := c.alloc.SetPools(configs)
	for name, why := range report.Invalid {
		invalid[name] = why
	}
	c.poolsSet = poolState{fingerprint: fp.String(), report: report, invalid: invalid}

	log := logr.FromContextOrDiscard(ctx)
	var kicks []types.NamespacedName
	for _, key := range report.Orphaned {
		a, _ := c.alloc.Lookup(key)
		c.alloc.Release(key)
		nn := splitKey(key)
		c.orphaned[nn] = a.IPs
		kicks = append(kicks, nn)
		log.Info("address left every pool", "service", key, "ip", joinIPs(a.IPs))
	}
	// Every Service is looked at again: a pool's namespace or selector
	// restrictions may have changed, and waiting Services may now fit.
	// Allocate is idempotent, so Services that are fine stay as they are.
	for i := range services.Items {
		if c.opts.Classes.Ours(&services.Items[i]) {
			kicks = append(kicks, client.ObjectKeyFromObject(&services.Items[i]))
		}
	}
	c.serviceKicks.Kick(kicks...)
	for i := range list.Items {
		c.poolKicks.Kick(types.NamespacedName{Name: list.Items[i].Name})
	}
	log.Info("address pools applied", "pools", len(configs), "invalid", len(invalid), "conflicts", len(report.Conflicts), "orphaned", len(report.Orphaned))
	return true, nil
}

func (c *Controller) writePoolStatus(ctx context.Context, pool *v1alpha1.AddressPool, state poolState) error {
	orig := pool.DeepCopy()
	st := &pool.Status
	counts := c.alloc.Counters(pool.Name)
	v4, v6 := counts[pools.IPv4], counts[pools.IPv6]
	st.ObservedGeneration = pool.Generation
	st.AssignedIPv4, st.AvailableIPv4 = clampCount(v4.Assigned), clampCount(v4.Available)
	st.AssignedIPv6, st.AvailableIPv6 = clampCount(v6.Assigned), clampCount(v6.Available)
	st.Used = clampCount(v4.Assigned + v6.Assigned)
	st.Free = humanCount(v4.Available, v6.Available)

	ready := metav1.Condition{Type: v1alpha1.PoolReady, Status: metav1.ConditionTrue, Reason: reasonAllocating,
		Message: "addresses are handed out from this pool", ObservedGeneration: pool.Generation}
	conflict := metav1.Condition{Type: v1alpha1.PoolConflict, Status: metav1.ConditionFalse, Reason: reasonNoOverlap,
		Message: "no other pool holds these addresses", ObservedGeneration: pool.Generation}
	var warn, warnReason string
	if why, bad := state.invalid[pool.Name]; bad {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, reasonInvalid, why+"; the pool is not used until this is fixed"
		warn, warnReason = ready.Message, reasonInvalid
	} else if why, bad := state.report.Conflicts[pool.Name]; bad {
		conflict.Status, conflict.Reason, conflict.Message = metav1.ConditionTrue, reasonOverlap, why
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, reasonOverlap, why+"; the pool is not used until the overlap is removed"
		warn, warnReason = ready.Message, v1alpha1.PoolConflict
	}
	prevReady := meta.FindStatusCondition(st.Conditions, v1alpha1.PoolReady)
	if warn != "" && (prevReady == nil || prevReady.Message != ready.Message) {
		c.events.Eventf(pool, corev1.EventTypeWarning, warnReason, "%s", warn)
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	meta.SetStatusCondition(&st.Conditions, conflict)

	if equalPoolStatus(&orig.Status, st) {
		return nil
	}
	// The whole status as a merge patch: no conflict with the cache's
	// resourceVersion, and the required counters are always sent.
	patch, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	if err := c.client.Status().Patch(ctx, pool, client.RawPatch(types.MergePatchType, patch)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("writing status of pool %q: %w", pool.Name, err)
	}
	return nil
}

func equalPoolStatus(a, b *v1alpha1.AddressPoolStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.AssignedIPv4 != b.AssignedIPv4 || a.AvailableIPv4 != b.AvailableIPv4 ||
		a.AssignedIPv6 != b.AssignedIPv6 || a.AvailableIPv6 != b.AvailableIPv6 || a.Used != b.Used || a.Free != b.Free ||
		len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || x.ObservedGeneration != y.ObservedGeneration {
			return false
		}
	}
	return true
}

func splitKey(key string) types.NamespacedName {
	ns, name, _ := strings.Cut(key, "/")
	return types.NamespacedName{Namespace: ns, Name: name}
}
