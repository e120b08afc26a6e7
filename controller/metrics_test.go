package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controller"
	"github.com/portico-lb/portico/lbservice"
)

// series reads one series from the registry the controller's /metrics
// serves; ok is false when it does not exist.
func series(t testing.TB, name string, labels map[string]string) (v float64, ok bool) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !labelsAre(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			}
		}
	}
	return 0, false
}

func labelsAre(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

// waitSeries waits until the series has the value, or, for want < 0, is gone.
func waitSeries(t testing.TB, name string, labels map[string]string, want float64) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%s%v = %v", name, labels, want), func() (bool, string) {
		v, ok := series(t, name, labels)
		if want < 0 {
			return !ok, fmt.Sprint(v)
		}
		return ok && v == want, fmt.Sprint(v, ok)
	})
}

func TestPoolMetrics(t *testing.T) {
	runController(t, false)
	cleanup(t)
	v4 := map[string]string{"pool": "metered", "family": "ipv4"}
	v6 := map[string]string{"pool": "metered", "family": "ipv6"}
	makePool(t, "metered", []string{"192.0.2.0/24", "2001:db8::/126"}, avoidBuggy)
	waitSeries(t, "portico_pool_addresses_total", v4, 254) // .0 and .255 avoided
	waitSeries(t, "portico_pool_addresses_total", v6, 4)
	waitSeries(t, "portico_pool_addresses_in_use", v4, 0)

	a := makeService(t, "metered-a")
	waitAnyIP(t, a)
	waitSeries(t, "portico_pool_addresses_in_use", v4, 1)
	waitSeries(t, "portico_pool_addresses_in_use", v6, 0)
	b := makeService(t, "metered-b", annotate(lbservice.AnnotationIPs, "2001:db8::2"),
		dualStack("SingleStack", "IPv6"))
	waitIPs(t, b, "2001:db8::2")
	waitSeries(t, "portico_pool_addresses_in_use", v6, 1)

	// Failures, by reason, once per Service and reason however often it
	// is retried.
	inUse := map[string]string{"pool": "metered", "reason": "in_use"}
	unknown := map[string]string{"pool": "", "reason": "unknown_pool"}
	invalid := map[string]string{"pool": "", "reason": "invalid_annotation"}
	before := map[string]float64{}
	for name, l := range map[string]map[string]string{"in_use": inUse, "unknown": unknown, "invalid": invalid} {
		before[name], _ = series(t, "portico_allocation_failures_total", l)
	}
	c := makeService(t, "metered-taken", annotate(lbservice.AnnotationPool, "metered"),
		annotate(lbservice.AnnotationIPs, "2001:db8::2"), dualStack("SingleStack", "IPv6"), ports(81))
	waitEvent(t, c, controller.ReasonAllocationFailed, "2001:db8::2")
	d := makeService(t, "metered-nowhere", annotate(lbservice.AnnotationPool, "no-such-pool"))
	waitEvent(t, d, controller.ReasonAllocationFailed, "no-such-pool")
	e := makeService(t, "metered-typo", annotate(lbservice.AnnotationIPs, "192.0.2.300"))
	waitEvent(t, e, controller.ReasonAllocationFailed, "not an IP address")
	// Retried: a new Service in the pool kicks every pending one.
	waitAnyIP(t, makeService(t, "metered-kick"))
	waitSeries(t, "portico_pool_addresses_in_use", v4, 2)
	waitSeries(t, "portico_allocation_failures_total", inUse, before["in_use"]+1)
	waitSeries(t, "portico_allocation_failures_total", unknown, before["unknown"]+1)
	waitSeries(t, "portico_allocation_failures_total", invalid, before["invalid"]+1)

	// Releasing lowers the gauge; a family the pool loses loses its series.
	deleteObject(t, a)
	waitSeries(t, "portico_pool_addresses_in_use", v4, 1)
	p := getPool(t, "metered")
	update(t, p, func(p *v1alpha1.AddressPool) { p.Spec.Addresses = p.Spec.Addresses[:1] })
	waitSeries(t, "portico_pool_addresses_total", v6, -1)
	waitSeries(t, "portico_pool_addresses_in_use", v6, -1)
	waitSeries(t, "portico_pool_addresses_total", v4, 254)

	// A pool that is gone has no series at all.
	deleteObject(t, p)
	waitSeries(t, "portico_pool_addresses_total", v4, -1)
	waitSeries(t, "portico_pool_addresses_in_use", v4, -1)
	waitSeries(t, "portico_allocation_failures_total", inUse, -1)
}

// TestUnannouncedMetric follows one Service's address from assigned and
// announced by no node, to announced by a speaker's ServiceAnnouncement,
// to unannounced again when the speaker withdraws it.
func TestUnannouncedMetric(t *testing.T) {
	runController(t, false)
	cleanup(t)
	v4 := map[string]string{"pool": "heard", "family": "ipv4"}
	makePool(t, "heard", []string{"198.51.100.0/30"})
	waitSeries(t, "portico_pool_addresses_unannounced", v4, 0)

	svc := makeService(t, "heard-a")
	ip := waitAnyIP(t, svc)[0]
	waitSeries(t, "portico_pool_addresses_unannounced", v4, 1)

	ann := announce(t, svc, "node-a", ip)
	waitSeries(t, "portico_pool_addresses_unannounced", v4, 0)

	// An announcement of another address, or owned by an older Service of
	// the same name, does not count.
	deleteObject(t, ann)
	waitSeries(t, "portico_pool_addresses_unannounced", v4, 1)
	announce(t, svc, "node-b", "203.0.113.9")
	stale := announce(t, svc, "node-c", ip, func(a *v1alpha1.ServiceAnnouncement) {
		a.OwnerReferences[0].UID = "an-older-service"
	})
	time.Sleep(time.Second) // give a wrong count time to show
	waitSeries(t, "portico_pool_addresses_unannounced", v4, 1)
	deleteObject(t, stale)

	deleteObject(t, svc)
	waitSeries(t, "portico_pool_addresses_unannounced", v4, 0)
	deleteObject(t, getPool(t, "heard"))
	waitSeries(t, "portico_pool_addresses_unannounced", v4, -1)
}

// announce writes the ServiceAnnouncement a speaker on node would.
func announce(t testing.TB, svc *corev1.Service, node, ip string, opts ...func(*v1alpha1.ServiceAnnouncement)) *v1alpha1.ServiceAnnouncement {
	t.Helper()
	a := &v1alpha1.ServiceAnnouncement{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace,
			Name:      v1alpha1.ServiceAnnouncementName(svc.Name, node, v1alpha1.ProtocolLayer2),
			Labels:    map[string]string{v1alpha1.ServiceNameLabel: svc.Name, v1alpha1.NodeNameLabel: node},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
			}},
		},
	}
	for _, o := range opts {
		o(a)
	}
	if err := apiClient.Create(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	a.Status = v1alpha1.ServiceAnnouncementStatus{
		Service: svc.Name, Node: node, Protocol: v1alpha1.ProtocolLayer2,
		IPs: []string{ip}, Interfaces: []string{"eth0"}, Since: metav1.Now(),
	}
	if err := apiClient.Status().Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = apiClient.Delete(context.Background(), a) })
	return a
}
