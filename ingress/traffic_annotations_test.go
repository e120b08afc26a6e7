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
