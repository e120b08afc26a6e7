package ingress

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// custom-http-errors, default-backend and disable-proxy-intercept-errors
// are read, checked against each other, and in the Policy.
func TestErrorPageAnnotations(t *testing.T) {
	for _, c := range []struct {
		name  string
		ann   map[string]string
		want  errorSpec
		probs []string // a word of each problem's note
	}{
		{"codes sorted, once", map[string]string{"custom-http-errors": " 503,404 , 404", "default-backend": "errors"},
			errorSpec{codes: []int{404, 503}, backend: "errors"}, nil},
		{"default-backend alone", map[string]string{"default-backend": "errors"}, errorSpec{backend: "errors"}, nil},
		{"all three", map[string]string{"custom-http-errors": "502", "default-backend": "errors", "disable-proxy-intercept-errors": "true"},
			errorSpec{codes: []int{502}, backend: "errors", noIntercept: true}, nil},
		{"no backend", map[string]string{"custom-http-errors": "404"}, errorSpec{codes: []int{404}}, []string{"without default-backend"}},
		{"not a status", map[string]string{"custom-http-errors": "404,abc", "default-backend": "errors"}, errorSpec{backend: "errors"}, []string{"abc"}},
		{"a success", map[string]string{"custom-http-errors": "200", "default-backend": "errors"}, errorSpec{backend: "errors"}, []string{"300 to 599"}},
		{"empty list", map[string]string{"custom-http-errors": " , ", "default-backend": "errors"}, errorSpec{backend: "errors"}, []string{"no status"}},
		{"not a Service name", map[string]string{"custom-http-errors": "404", "default-backend": "ns/Errors"}, errorSpec{codes: []int{404}},
			[]string{"not a Service name", "without default-backend"}},
		{"disable alone", map[string]string{"disable-proxy-intercept-errors": "true"}, errorSpec{noIntercept: true}, []string{"without custom-http-errors"}},
	} {
		ann := map[string]string{}
		for k, v := range c.ann {
			ann[NginxPrefix+k] = v
		}
		_, a := toRoute(trafficIngress(ann))
		got := a.errors
		got.backendKey = ""
		if !slices.Equal(got.codes, c.want.codes) || got.backend != c.want.backend || got.noIntercept != c.want.noIntercept {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
		if len(a.probs) != len(c.probs) {
			t.Errorf("%s: problems %v, want %d", c.name, a.probs, len(c.probs))
			continue
		}
		for i, p := range a.probs {
			if p.Reason != ReasonInvalidAnnotation || !strings.Contains(p.Note, c.probs[i]) {
				t.Errorf("%s: problem %+v, want an InvalidAnnotation about %q", c.name, p, c.probs[i])
			}
		}
	}
	base, _ := toRoute(trafficIngress(map[string]string{NginxPrefix + "custom-http-errors": "404", NginxPrefix + "default-backend": "errors"}))
	for k, v := range map[string]string{"custom-http-errors": "404,503", "default-backend": "other", "disable-proxy-intercept-errors": "true"} {
		ann := map[string]string{NginxPrefix + "custom-http-errors": "404", NginxPrefix + "default-backend": "errors"}
		ann[PorticoPrefix+k] = v
		if ri, _ := toRoute(trafficIngress(ann)); ri.Policy == base.Policy {
			t.Errorf("%s is not in the Policy: two Ingresses differing in it would not conflict", k)
		}
	}
}

// The compiler makes the error backend's Upstream, from the Service's
// first TCP port, like a route's; a Service it cannot use is a Warning,
// and the route then has no error pages.
func TestCompileErrorPages(t *testing.T) {
	ing := func(name, backend string) *networkingv1.Ingress {
		i := trafficIngress(map[string]string{NginxPrefix + "custom-http-errors": "404,503", NginxPrefix + "default-backend": backend})
		i.Name = name
		i.Spec.Rules[0].Host = name + ".example"
		i.Spec.IngressClassName = ptr.To("portico")
		return i
	}
	errs := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "errors"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "admin", Port: 9000},
	}}}
	udp := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "udp"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
	}}}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "errors-1", Labels: map[string]string{serviceNameLabel: "errors"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8081))}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.9.1"}}}}
	var cp compiler
	cfg, probs := cp.compile(cluster{class: Class{Name: "portico", Found: true},
		ingresses: []*networkingv1.Ingress{ing("good", "errors"), ing("missing", "nowhere"), ing("udp", "udp")},
		services:  []*corev1.Service{errs, udp},
		slices:    []*discoveryv1.EndpointSlice{slice}})
	want := exchange.Target{Namespace: "ns", Service: "errors", Port: route.Port{Number: 8080}, Protocol: route.HTTP}
	r := cfg.Rules["ns/good"]
	if r == nil || r.Errors == nil || r.Errors.Backend != want || !slices.Equal(r.Errors.Codes, []int{404, 503}) || r.Errors.NoIntercept {
		t.Fatalf("rules %+v, want error pages at %v", r, want)
	}
	if u := cfg.Upstreams[want]; u == nil || !slices.Equal(u.Addrs, []string{"10.0.9.1:8081"}) {
		t.Errorf("error backend Upstream %+v, want its endpoint", u)
	}
	for _, name := range []string{"missing", "udp"} {
		if r := cfg.Rules["ns/"+name]; r != nil && r.Errors != nil {
			t.Errorf("%s: error pages %+v, want none", name, r.Errors)
		}
	}
	sortProblems(probs)
	if len(probs) != 2 || !strings.Contains(probs[0].Note, `"nowhere" is not found`) || !strings.Contains(probs[1].Note, "no TCP port") ||
		probs[0].Reason != ReasonInvalidAnnotation || !strings.Contains(probs[0].Note, NginxPrefix+"default-backend") {
		t.Errorf("problems %v, want one for the missing Service and one for the UDP one", probs)
	}
}
