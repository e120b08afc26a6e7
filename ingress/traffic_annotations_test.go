package ingress

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// trafficIngress is an Ingress for example.com with the given annotations.
func trafficIngress(ann map[string]string) *networkingv1.Ingress {
	i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", Annotations: ann}}
	i.Spec.Rules = []networkingv1.IngressRule{{Host: "example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{{Path: "/", Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}},
	}}}}
	return i
}

func TestFromToWWWAnnotation(t *testing.T) {
	for _, c := range []struct {
		value string
		on    bool
		probs int
	}{{"true", true, 0}, {"false", false, 0}, {"yes", false, 1}} {
		ri, a := toRoute(trafficIngress(map[string]string{NginxPrefix + "from-to-www-redirect": c.value}))
		if ri.FromToWWW != c.on || len(a.probs) != c.probs {
			t.Errorf("%q: FromToWWW %v, problems %v; want %v and %d problems", c.value, ri.FromToWWW, a.probs, c.on, c.probs)
		}
		if c.probs > 0 && a.probs[0].Reason != ReasonInvalidAnnotation {
			t.Errorf("%q: reason %s, want %s", c.value, a.probs[0].Reason, ReasonInvalidAnnotation)
		}
	}
	off, _ := toRoute(trafficIngress(nil))
	on, _ := toRoute(trafficIngress(map[string]string{PorticoPrefix + "from-to-www-redirect": "true"}))
	if off.Policy == on.Policy {
		t.Error("from-to-www-redirect is not in the Policy: two Ingresses differing in it would not conflict")
	}
}

// limit-connections: a count, one ConnLimit kept from compile to compile
// while the Ingress asks for the same, so that requests in flight across a
// compile still count.
func TestLimitConnectionsAnnotation(t *testing.T) {
	var cp compiler
	compile := func(ann map[string]string) (*exchange.Rules, []problem) {
		i := trafficIngress(ann)
		i.Spec.IngressClassName = ptr.To("portico")
		cfg, probs := cp.compile(cluster{class: Class{Name: "portico", Found: true}, ingresses: []*networkingv1.Ingress{i}})
		return cfg.Rules["ns/x"], probs
	}
	first, probs := compile(map[string]string{NginxPrefix + "limit-connections": "10"})
	if first == nil || first.ConnLimit == nil || len(probs) != 0 {
		t.Fatalf("rules %+v, problems %v; want a ConnLimit", first, probs)
	}
	if again, _ := compile(map[string]string{NginxPrefix + "limit-connections": "10", NginxPrefix + "limit-rps": "5"}); again.ConnLimit != first.ConnLimit {
		t.Error("the same limit was made anew by a second compile")
	}
	if other, _ := compile(map[string]string{NginxPrefix + "limit-connections": "11"}); other.ConnLimit == first.ConnLimit {
		t.Error("a changed limit kept the old ConnLimit")
	}
	for _, bad := range []string{"0", "-1", "many", "1000001"} {
		r, probs := compile(map[string]string{NginxPrefix + "limit-connections": bad})
		if r != nil && r.ConnLimit != nil || len(probs) != 1 || probs[0].Reason != ReasonInvalidAnnotation {
			t.Errorf("%q: rules %+v, problems %v; want no limit and an InvalidAnnotation", bad, r, probs)
		}
	}
	if compile(nil); len(cp.conns) != 0 {
		t.Errorf("%d ConnLimits kept for an Ingress that has none", len(cp.conns))
	}
	off, _ := toRoute(trafficIngress(nil))
	on, _ := toRoute(trafficIngress(map[string]string{NginxPrefix + "limit-connections": "3"}))
	if off.Policy == on.Policy {
		t.Error("limit-connections is not in the Policy")
	}
}

func TestAffinityAnnotations(t *testing.T) {
	_, a := toRoute(trafficIngress(map[string]string{
		NginxPrefix + "affinity": "cookie", NginxPrefix + "affinity-mode": "persistent", NginxPrefix + "session-cookie-name": "route",
		NginxPrefix + "session-cookie-path": "/app", NginxPrefix + "session-cookie-max-age": "3600", NginxPrefix + "session-cookie-expires": "7200",
		NginxPrefix + "session-cookie-samesite": "lax", NginxPrefix + "session-cookie-secure": "true", NginxPrefix + "session-cookie-change-on-failure": "true",
	}))
	want := exchange.Affinity{Cookie: "route", Path: "/app", MaxAge: 3600, Expires: 7200, SameSite: "Lax", Secure: true, SecureSet: true, Persistent: true, ChangeOnFailure: true}
	if len(a.probs) != 0 || a.rules == nil || a.rules.Affinity == nil || *a.rules.Affinity != want {
		t.Fatalf("rules %+v, problems %v; want affinity %+v", a.rules, a.probs, want)
	}
	_, a = toRoute(trafficIngress(map[string]string{NginxPrefix + "affinity": "cookie"}))
	if got := a.rules.Affinity; got == nil || got.Cookie != "INGRESSCOOKIE" || got.Persistent || got.SecureSet {
		t.Errorf("defaults: %+v, want INGRESSCOOKIE, balanced, Secure by the request", got)
	}
	for _, bad := range []map[string]string{
		{NginxPrefix + "affinity": "ip"},
		{NginxPrefix + "session-cookie-name": "route"}, // without affinity
		{NginxPrefix + "affinity": "cookie", NginxPrefix + "affinity-mode": "sticky"},
		{NginxPrefix + "affinity": "cookie", NginxPrefix + "session-cookie-samesite": "Loose"},
		{NginxPrefix + "affinity": "cookie", NginxPrefix + "session-cookie-name": "a b"},
		{NginxPrefix + "affinity": "cookie", NginxPrefix + "session-cookie-path": "/a;b"},
		{NginxPrefix + "affinity": "cookie", NginxPrefix + "session-cookie-max-age": "-5"},
		{NginxPrefix + "affinity": "cookie", NginxPrefix + "upstream-hash-by": "$host"},
	} {
		if _, a := toRoute(trafficIngress(bad)); len(a.probs) != 1 || a.probs[0].Reason != ReasonInvalidAnnotation {
			t.Errorf("%v: problems %v, want one InvalidAnnotation", bad, a.probs)
		}
	}
	off, _ := toRoute(trafficIngress(nil))
	on, _ := toRoute(trafficIngress(map[string]string{NginxPrefix + "affinity": "cookie"}))
	hashed, _ := toRoute(trafficIngress(map[string]string{NginxPrefix + "upstream-hash-by": "$host"}))
	if off.Policy == on.Policy || off.Policy == hashed.Policy {
		t.Error("affinity or upstream-hash-by is not in the Policy")
	}
}

func TestUpstreamHashByAnnotation(t *testing.T) {
	_, a := toRoute(trafficIngress(map[string]string{PorticoPrefix + "upstream-hash-by": "${request_uri}-x"}))
	if len(a.probs) != 0 || a.rules == nil || a.rules.HashBy == nil || a.rules.HashBy.String() != "${request_uri}-x" {
		t.Errorf("rules %+v, problems %v", a.rules, a.probs)
	}
	_, a = toRoute(trafficIngress(map[string]string{NginxPrefix + "upstream-hash-by": "$request_id"}))
	if len(a.probs) != 1 || a.probs[0].Reason != ReasonInvalidAnnotation || a.rules != nil && a.rules.HashBy != nil {
		t.Errorf("an unknown variable: rules %+v, problems %v; want round robin and an InvalidAnnotation", a.rules, a.probs)
	}
}
