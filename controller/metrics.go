package controller

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/portico-lb/portico/pools"
)

// Pool metrics, on controller-runtime's registry, which the manager serves
// on its metrics address. The gauges are set by the pool reconciler from the
// allocator's counts; package pools knows nothing of Prometheus.
var (
	poolAddresses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portico_pool_addresses_total",
		Help: "Addresses in the pool, by family (ipv4, ipv6); avoided .0/.255 addresses are not counted (metallb_allocator_addresses_total).",
	}, []string{"pool", "family"})
	poolInUse = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portico_pool_addresses_in_use",
		Help: "Addresses of the pool held by at least one Service, by family (metallb_allocator_addresses_in_use_total).",
	}, []string{"pool", "family"})
	allocationFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_allocation_failures_total",
		Help: "AllocationFailed Warnings: a Service could not get the addresses it asks for, by the pool it asked for (empty when none, or when that pool does not exist) and reason. A Service retried with the same outcome is counted once.",
	}, []string{"pool", "reason"})
	unannouncedAddresses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portico_pool_addresses_unannounced",
		Help: "Addresses of the pool assigned to a LoadBalancer Service that no node announces (no ServiceAnnouncement names them), by family. An address shared by several Services counts once.",
	}, []string{"pool", "family"})
)

func init() {
	metrics.Registry.MustRegister(poolAddresses, poolInUse, allocationFailures, unannouncedAddresses)
}

// familyLabel is the family label value of the pool gauges.
func familyLabel(f pools.Family) string {
	if f == pools.IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// reasonInvalidAnnotation is the failure reason of a Service whose
// annotations (or spec.loadBalancerIP) cannot be read as a request: an
// address that does not parse, a misspelt portico.dev/ key.
const reasonInvalidAnnotation = "invalid_annotation"

// failureLabels are the reason and pool labels of an allocation failure of
// a Service that asked for pool ("" for any): the allocator's reason in
// snake case.
func failureLabels(pool string, err error) (reason, poolLabel string) {
	var pe *pools.Error
	if !errors.As(err, &pe) {
		return "other", pool
	}
	switch pe.Reason {
	case pools.BadRequest:
		reason = "bad_request"
	case pools.UnknownPool:
		// The name of a pool that does not exist is whatever a user
		// wrote: not a series.
		return "unknown_pool", ""
	case pools.PoolUnusable:
		reason = "pool_unusable"
	case pools.NotInPool:
		reason = "not_in_pool"
	case pools.InUse:
		reason = "in_use"
	case pools.Exhausted:
		reason = "exhausted"
	case pools.NotAllowed:
		reason = "not_allowed"
	case pools.Reserved:
		reason = "reserved"
	default:
		reason = "other"
	}
	return reason, pool
}

// setPoolMetrics sets one pool's gauges from the allocator. A family the
// pool no longer has, or a pool that is not usable, has no series.
func (c *Controller) setPoolMetrics(pool string) {
	sizes := c.alloc.Size(pool)
	counts := c.alloc.Counters(pool)
	for _, f := range []pools.Family{pools.IPv4, pools.IPv6} {
		fam := familyLabel(f)
		size, ok := sizes[f]
		if !ok {
			poolAddresses.DeleteLabelValues(pool, fam)
			poolInUse.DeleteLabelValues(pool, fam)
			unannouncedAddresses.DeleteLabelValues(pool, fam)
			continue
		}
		// Every pool has the series, at 0 until the announcement
		// reconciler counts an address, so an alert on it is never
		// silent for want of a series.
		unannouncedAddresses.WithLabelValues(pool, fam)
		poolAddresses.WithLabelValues(pool, fam).Set(float64(size))
		poolInUse.WithLabelValues(pool, fam).Set(float64(counts[f].Assigned))
	}
}

// forgetPoolMetrics deletes every series of a pool that no longer exists.
func forgetPoolMetrics(pool string) {
	l := prometheus.Labels{"pool": pool}
	poolAddresses.DeletePartialMatch(l)
	poolInUse.DeletePartialMatch(l)
	allocationFailures.DeletePartialMatch(l)
	unannouncedAddresses.DeletePartialMatch(l)
}
