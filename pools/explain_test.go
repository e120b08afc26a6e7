package pools

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestAutoAssignOrder(t *testing.T) {
	a := New()
	a.SetPools([]Pool{
		pool("zeta", "192.0.2.0/28"),
		priority(2, pool("beta", "192.0.2.16/28")),
		priority(1, pool("gamma", "192.0.2.32/28")),
		manual(pool("manual", "192.0.2.48/28")),
		pool("alpha", "192.0.2.64/28"),
		pool("clash", "192.0.2.0/30"), // overlaps zeta, which is older
	})
	want := []string{"gamma", "beta", "alpha", "zeta"}
	if got := a.AutoAssignOrder(); !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if got := a.AutoAssignOrder()[0]; got != defaultPool(a) {
		t.Fatalf("first %q is not the default pool %q", got, defaultPool(a))
	}
}

func TestAdmits(t *testing.T) {
	a := New()
	onlyProd := pool("prod", "192.0.2.0/28")
	onlyProd.Namespaces = []string{"prod"}
	labelled := pool("labelled", "192.0.2.16/28")
	labelled.ServiceSelectors = []Selector{func(l map[string]string) bool { return l["tier"] == "web" }}
	a.SetPools([]Pool{onlyProd, labelled, pool("longer-clash", "192.0.2.0/30")})
	tests := []struct {
		pool, key string
		labels    map[string]string
		reason    Reason // 0: admitted
		says      string
	}{
		{"prod", "prod/web", nil, 0, ""},
		{"prod", "dev/web", nil, NotAllowed, `only serves the namespaces "prod"`},
		{"labelled", "dev/web", map[string]string{"tier": "web"}, 0, ""},
		{"labelled", "dev/db", map[string]string{"tier": "db"}, NotAllowed, "serviceSelectors"},
		{"missing", "dev/web", nil, UnknownPool, "does not exist"},
		{"longer-clash", "dev/web", nil, PoolUnusable, "not usable"},
	}
	for _, tt := range tests {
		err := a.Admits(tt.pool, Service{Key: tt.key, Labels: tt.labels})
		if tt.reason == 0 {
			if err != nil {
				t.Errorf("%s for %s: %v, want admitted", tt.pool, tt.key, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Reason != tt.reason || !strings.Contains(e.Msg, tt.says) {
			t.Errorf("%s for %s: %v, want %v saying %q", tt.pool, tt.key, err, tt.reason, tt.says)
		}
	}
}
