package ingress

import (
	"crypto/x509"
	"encoding/pem"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/portico-lb/portico/ingress/proxy"
	"github.com/portico-lb/portico/ingress/route"
)

func TestClassServes(t *testing.T) {
	classes := func(controller string, def bool) []networkingv1.IngressClass {
		ic := networkingv1.IngressClass{Spec: networkingv1.IngressClassSpec{Controller: controller}}
		ic.Name = "portico"
		if def {
			ic.Annotations = map[string]string{DefaultClassAnnotation: "true"}
		}
		return []networkingv1.IngressClass{ic}
	}
	named := func(n string) *networkingv1.Ingress {
		return &networkingv1.Ingress{Spec: networkingv1.IngressSpec{IngressClassName: &n}}
	}
	legacy := func(n string) *networkingv1.Ingress {
		return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{LegacyClassAnnotation: n}}}
	}
	none := &networkingv1.Ingress{}
	deleting := named("portico")
	deleting.DeletionTimestamp = &metav1.Time{}

	for _, c := range []struct {
		name         string
		classes      []networkingv1.IngressClass
		withoutClass bool
		ing          *networkingv1.Ingress
		want         bool
	}{
		{"our class", classes(ControllerName, false), false, named("portico"), true},
		{"another class", classes(ControllerName, false), false, named("nginx"), false},
		{"our class name, another controller", classes("k8s.io/ingress-nginx", false), false, named("portico"), false},
		{"no IngressClass object", nil, false, named("portico"), false},
		{"legacy annotation", classes(ControllerName, false), false, legacy("portico"), true},
		{"legacy annotation, another class", classes(ControllerName, false), false, legacy("nginx"), false},
		{"class-less, not default", classes(ControllerName, false), false, none, false},
		{"class-less, default", classes(ControllerName, true), false, none, true},
		{"class-less, flag", classes(ControllerName, false), true, none, true},
		{"class-less, flag, no class object", nil, true, none, true},
		{"flag does not take other classes", classes(ControllerName, true), true, named("nginx"), false},
		{"being deleted", classes(ControllerName, false), false, deleting, false},
	} {
		if got := ClassOf("portico", c.withoutClass, c.classes).Serves(c.ing); got != c.want {
			t.Errorf("%s: Serves = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestEndpoints(t *testing.T) {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		{Name: "admin", Port: 9000},
	}}}
	ep := func(ip string, ready, serving, terminating *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}}
	}
	port := func(name string, n int32) discoveryv1.EndpointPort {
		return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(n)}
	}
	yes, no := ptr.To(true), ptr.To(false)
	s1 := &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4,
		Ports:     []discoveryv1.EndpointPort{port("http", 8080), port("admin", 9090)},
		Endpoints: []discoveryv1.Endpoint{ep("10.0.0.2", yes, yes, no), ep("10.0.0.1", nil, nil, nil), ep("10.0.0.3", no, no, no)}}
	s2 := &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv6,
		Ports:     []discoveryv1.EndpointPort{port("http", 8080)},
		Endpoints: []discoveryv1.Endpoint{ep("fd00::1", yes, yes, no)}}
	dup := &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4,
		Ports:     []discoveryv1.EndpointPort{port("http", 8080)},
		Endpoints: []discoveryv1.Endpoint{ep("10.0.0.1", yes, yes, no)}}
	fqdn := &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeFQDN,
		Ports:     []discoveryv1.EndpointPort{port("http", 8080)},
		Endpoints: []discoveryv1.Endpoint{ep("example.com", yes, yes, no)}}
	draining := &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4,
		Ports:     []discoveryv1.EndpointPort{port("http", 8080)},
		Endpoints: []discoveryv1.Endpoint{ep("10.0.1.1", no, yes, yes), ep("10.0.1.2", no, no, yes)}}

	for _, c := range []struct {
		name   string
		svc    *corev1.Service
		slices []*discoveryv1.EndpointSlice
		port   route.Port
		want   []string
	}{
		{"by number, through the port's name", svc, []*discoveryv1.EndpointSlice{s1, s2, dup, fqdn}, route.Port{Number: 80},
			[]string{"10.0.0.1:8080", "10.0.0.2:8080", "[fd00::1]:8080"}},
		{"by name", svc, []*discoveryv1.EndpointSlice{s1, s2}, route.Port{Name: "admin"}, []string{"10.0.0.1:9090", "10.0.0.2:9090"}},
		{"no such port", svc, []*discoveryv1.EndpointSlice{s1}, route.Port{Number: 8080}, nil},
		{"UDP port", svc, []*discoveryv1.EndpointSlice{s1}, route.Port{Name: "dns"}, nil},
		{"no Service", nil, []*discoveryv1.EndpointSlice{s1}, route.Port{Number: 80}, nil},
		{"only terminating: serving ones are used", svc, []*discoveryv1.EndpointSlice{draining}, route.Port{Number: 80}, []string{"10.0.1.1:8080"}},
		{"ready beat terminating", svc, []*discoveryv1.EndpointSlice{draining, dup}, route.Port{Number: 80}, []string{"10.0.0.1:8080"}},
	} {
		if got := endpoints(c.svc, c.slices, c.port); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestAnnotations(t *testing.T) {
	ing := func(ann map[string]string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", Annotations: ann}}
		i.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
		return i
	}
	for _, c := range []struct {
		ann        map[string]string
		noRedirect bool
		problems   int
	}{
		{nil, false, 0},
		{map[string]string{SSLRedirectAnnotation: "false"}, true, 0},
		{map[string]string{SSLRedirectAnnotation: "true"}, false, 0},
		{map[string]string{SSLRedirectAnnotation: "False"}, false, 1},
		{map[string]string{"portico.dev/rewrite-target": "/"}, false, 1},
		{map[string]string{"nginx.ingress.kubernetes.io/rewrite-target": "/"}, false, 0}, // not ours to judge
	} {
		ri, probs := toRoute(ing(c.ann))
		if ri.NoSSLRedirect != c.noRedirect || len(probs) != c.problems {
			t.Errorf("%v: NoSSLRedirect %v, problems %v; want %v and %d problems", c.ann, ri.NoSSLRedirect, probs, c.noRedirect, c.problems)
		}
		for _, p := range probs {
			if p.Reason != ReasonInvalidAnnotation {
				t.Errorf("%v: reason %s", c.ann, p.Reason)
			}
		}
	}
}

func TestCompileCertificates(t *testing.T) {
	c, err := proxy.SelfSigned("good", "good.example")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	good := &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{
		"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	}}
	good.Namespace, good.Name, good.UID, good.ResourceVersion = "ns", "good", "uid-good", "1"
	bad := &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")}}
	bad.Namespace, bad.Name, bad.UID, bad.ResourceVersion = "ns", "bad", "uid-bad", "1"
	tlsIng := func(name, host, secret string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		i.Spec.IngressClassName = ptr.To("portico")
		i.Spec.Rules = []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}}
		i.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: secret}}
		return i
	}
	cl := cluster{
		class:     Class{Name: "portico", Found: true},
		ingresses: []*networkingv1.Ingress{tlsIng("a", "good.example", "good"), tlsIng("b", "bad.example", "bad"), tlsIng("c", "none.example", "missing")},
		secrets:   []*corev1.Secret{good, bad},
	}
	var cp compiler
	cfg, probs := cp.compile(cl)
	if cfg.Certs[route.SecretRef{Namespace: "ns", Name: "good"}] == nil || len(cfg.Certs) != 1 {
		t.Errorf("certificates %v, want the good one only", cfg.Certs)
	}
	var reasons []string
	for _, p := range probs {
		reasons = append(reasons, p.Ingress.Name+" "+p.Reason)
	}
	if want := []string{"b InvalidTLSSecret", "c InvalidTLSSecret"}; !slices.Equal(reasons, want) {
		t.Errorf("problems %v, want %v", reasons, want)
	}
	first := cfg.Certs[route.SecretRef{Namespace: "ns", Name: "good"}]
	cfg, _ = cp.compile(cl)
	if cfg.Certs[route.SecretRef{Namespace: "ns", Name: "good"}] != first {
		t.Error("an unchanged Secret was parsed again")
	}
	cl.ingresses = cl.ingresses[1:]
	cp.compile(cl)
	if _, kept := cp.certs["uid-good"]; kept {
		t.Error("the certificate of a Secret no Ingress uses is still cached")
	}
}
