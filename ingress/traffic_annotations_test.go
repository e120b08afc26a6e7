package ingress

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
