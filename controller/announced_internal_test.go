package controller

import (
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/pools"
)

func TestUnannouncedLedger(t *testing.T) {
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	b := types.NamespacedName{Namespace: "ns", Name: "b"}
	ip := netip.MustParseAddr
	v4 := poolFamily{"lan", pools.IPv4}
	v6 := poolFamily{"lan", pools.IPv6}
	other := poolFamily{"other", pools.IPv4}
	u := newUnannounced()
	steps := []struct {
		what    string
		svc     types.NamespacedName
		missing []netip.Addr
		pool    string
		want    map[poolFamily]int
	}{
		{"a misses both families", a, []netip.Addr{ip("192.0.2.1"), ip("2001:db8::1")}, "lan", map[poolFamily]int{v4: 1, v6: 1}},
		{"b shares a's IPv4 address: counted once", b, []netip.Addr{ip("192.0.2.1")}, "lan", map[poolFamily]int{v4: 1, v6: 1}},
		{"a is announced; b still misses the shared one", a, nil, "lan", map[poolFamily]int{v4: 1, v6: 0}},
		{"b moves to another pool", b, []netip.Addr{ip("198.51.100.7")}, "other", map[poolFamily]int{v4: 0, v6: 0, other: 1}},
		{"b is gone", b, nil, "", map[poolFamily]int{v4: 0, v6: 0, other: 0}},
	}
	for _, s := range steps {
		touched := u.set(s.svc, s.missing, s.pool)
		for k, want := range s.want {
			if got := u.count[k]; got != want {
				t.Errorf("%s: %v = %d, want %d", s.what, k, got, want)
			}
		}
		for k, n := range u.count {
			if _, ok := s.want[k]; !ok && n != 0 {
				t.Errorf("%s: unexpected %v = %d", s.what, k, n)
			}
		}
		for k := range s.want {
			if len(u.holders[k]) != u.count[k] {
				t.Errorf("%s: %v holders %v, count %d", s.what, k, u.holders[k], u.count[k])
			}
		}
		if len(s.missing) > 0 && len(touched) == 0 {
			t.Errorf("%s: nothing touched", s.what)
		}
	}
	if len(u.missing) != 0 || len(u.pool) != 0 {
		t.Errorf("ledger keeps gone Services: %v %v", u.missing, u.pool)
	}
}
