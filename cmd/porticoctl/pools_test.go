package main

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/e2e/apitest"
)

// TestPools: usage per pool and family from the pools' status, Ready and
// the controller's reason when not, the advertisements selecting each.
func TestPools(t *testing.T) {
	apitest.Require(t)
	dual := pool("pools-dual", "203.0.113.0/28", "2001:db8:1::/120")
	dual.Status = v1alpha1.AddressPoolStatus{
		AssignedIPv4: 4, AvailableIPv4: 12, AssignedIPv6: 1, AvailableIPv6: 255, Used: 5, Free: "267",
		Conditions: []metav1.Condition{{Type: v1alpha1.PoolReady, Status: metav1.ConditionTrue, Reason: "Ready", Message: "ok", LastTransitionTime: metav1.Now(), ObservedGeneration: 1}},
	}
	broken := pool("pools-broken", "203.0.113.16/28")
	broken.Status = v1alpha1.AddressPoolStatus{
		AvailableIPv4: 0, Free: "0",
		Conditions: []metav1.Condition{
			{Type: v1alpha1.PoolReady, Status: metav1.ConditionFalse, Reason: "Conflict", Message: "overlaps pool older", LastTransitionTime: metav1.Now(), ObservedGeneration: 1},
			{Type: v1alpha1.PoolConflict, Status: metav1.ConditionTrue, Reason: "Overlap", Message: "overlaps pool older", LastTransitionTime: metav1.Now(), ObservedGeneration: 1},
		},
	}
	// The controller has not reported on this one yet.
	fresh := pool("pools-fresh", "203.0.113.32/28")
	create(t, dual, broken, fresh, l2("pools-l2", []string{"pools-dual", "pools-fresh"}, nil))

	out := mustRun(t, "pools")
	rows := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 6 && strings.HasPrefix(f[0], "pools-") {
			rows[f[0]+" "+f[1]] = strings.Join(f, " ")
		}
	}
	want := map[string]string{
		"pools-dual IPv4":   "pools-dual IPv4 4 12 25% True",
		"pools-dual IPv6":   "pools-dual IPv6 1 255 <1% True",
		"pools-broken IPv4": "pools-broken IPv4 0 0 0% False",
		"pools-fresh IPv4":  "pools-fresh IPv4 0 0 0% Unknown",
	}
	for k, w := range want {
		if rows[k] != w {
			t.Errorf("row %q: %q, want %q", k, rows[k], w)
		}
	}
	for _, note := range []string{
		"pool pools-broken: overlaps pool older",
		"pool pools-broken: no L2Advertisement or BGPAdvertisement selects it",
		"pool pools-fresh: the controller has not reported on this version of it yet",
	} {
		if !strings.Contains(out, note) {
			t.Errorf("no note %q", note)
		}
	}
	if strings.Contains(out, "pool pools-dual: no L2Advertisement") {
		t.Errorf("pools-dual has an L2Advertisement")
	}
	if out := mustRun(t, "pools", "-o", "wide"); !strings.Contains(out, "L2Advertisement/pools-l2") || !strings.Contains(out, "203.0.113.0/28,2001:db8:1::/120") {
		t.Errorf("wide lacks the advertisement or the addresses")
	}

	for _, format := range []string{"json", "yaml"} {
		var rep PoolsReport
		decode(t, format, mustRun(t, "pools", "-o", format), &rep)
		got := map[string]PoolUsage{}
		for _, p := range rep.Pools {
			got[p.Name] = p
		}
		d := got["pools-dual"]
		if len(d.Families) != 2 || d.Families[0] != (FamilyUsage{"IPv4", 4, 12}) || d.Families[1] != (FamilyUsage{"IPv6", 1, 255}) || d.Ready != "True" || !d.AutoAssign || len(d.Advertisements) != 1 {
			t.Errorf("-o %s pools-dual: %+v", format, d)
		}
		if b := got["pools-broken"]; b.Ready != "False" || b.Problem != "overlaps pool older" || len(b.Advertisements) != 0 {
			t.Errorf("-o %s pools-broken: %+v", format, b)
		}
	}
}
