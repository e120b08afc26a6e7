package ingress

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/portico-lb/portico/ingress/proxy"
	"github.com/portico-lb/portico/ingress/proxy/exchange"
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

// Every annotation under either prefix is applied or named in a Warning;
// Portico's spelling wins over ingress-nginx's; an access restriction that
// cannot be enforced, or is invalid, refuses every request.
func TestAnnotations(t *testing.T) {
	ing := func(ann map[string]string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", Annotations: ann}}
		i.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
		return i
	}
	const nginx = NginxPrefix
	prefixes := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, v := range s {
			out = append(out, netip.MustParsePrefix(v))
		}
		return out
	}
	for _, c := range []struct {
		name       string
		ann        map[string]string
		noRedirect bool
		canary     bool
		rules      *exchange.Rules
		reasons    []string
	}{
		{"none", nil, false, false, nil, nil},
		{"others' annotations", map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"}, false, false, nil, nil},
		{"ssl-redirect off", map[string]string{SSLRedirectAnnotation: "false"}, true, false, nil, nil},
		{"ssl-redirect on", map[string]string{SSLRedirectAnnotation: "true"}, false, false, nil, nil},
		{"ssl-redirect nginx's", map[string]string{nginx + "ssl-redirect": "false"}, true, false, nil, nil},
		{"ours wins", map[string]string{nginx + "ssl-redirect": "false", SSLRedirectAnnotation: "true"}, false, false, nil, nil},
		{"ssl-redirect typo", map[string]string{SSLRedirectAnnotation: "False"}, false, false, nil, []string{ReasonInvalidAnnotation}},
		{"unknown of ours", map[string]string{"portico.dev/rewrite-targett": "/"}, false, false, nil, []string{ReasonUnsupportedAnnotation}},
		{"unsupported nginx", map[string]string{nginx + "mirror-target": "http://m/"}, false, false, nil, []string{ReasonUnsupportedAnnotation}},
		{"upstream-vhost and x-forwarded-prefix", map[string]string{nginx + "upstream-vhost": "internal.svc", nginx + "x-forwarded-prefix": "/app"}, false, false,
			&exchange.Rules{UpstreamHost: "internal.svc", ForwardedPrefix: "/app"}, nil},
		{"bad upstream-vhost and x-forwarded-prefix", map[string]string{nginx + "upstream-vhost": "a b", nginx + "x-forwarded-prefix": "app\r\n"}, false, false, nil,
			[]string{ReasonInvalidAnnotation, ReasonInvalidAnnotation}},
		{"snippet", map[string]string{nginx + "configuration-snippet": "return 200;"}, false, false, nil, []string{ReasonSnippetRefused}},
		{"snippet that restricts access", map[string]string{nginx + "server-snippet": "allow 10.0.0.0/8;\ndeny all;"}, false, false,
			&exchange.Rules{Refuse: refused}, []string{ReasonAccessRefused}},
		{"snippet with auth", map[string]string{nginx + "configuration-snippet": "auth_request /check;"}, false, false,
			&exchange.Rules{Refuse: refused}, []string{ReasonAccessRefused}},
		{"canary", map[string]string{nginx + "canary": "true", nginx + "canary-weight": "10"}, false, true, nil, nil},
		{"canary off", map[string]string{nginx + "canary": "false"}, false, false, nil, nil},
		{"canary options without canary", map[string]string{nginx + "canary-weight": "10", nginx + "canary-by-header": "X-Canary"}, false, false, nil,
			[]string{ReasonInvalidAnnotation, ReasonInvalidAnnotation}},
		{"bad canary options", map[string]string{nginx + "canary": "true", nginx + "canary-weight": "-1", nginx + "canary-by-header": "X Canary",
			nginx + "canary-by-cookie": "a;b", nginx + "canary-by-header-value": "a\nb"}, false, true, nil,
			[]string{ReasonInvalidAnnotation, ReasonInvalidAnnotation, ReasonInvalidAnnotation, ReasonInvalidAnnotation}},
		{"allowlist", map[string]string{nginx + "whitelist-source-range": "192.0.2.0/24, 2001:db8::1"}, false, false,
			&exchange.Rules{Allow: prefixes("192.0.2.0/24", "2001:db8::1/128")}, nil},
		{"allowlist masked", map[string]string{nginx + "allowlist-source-range": "192.0.2.9/24"}, false, false,
			&exchange.Rules{Allow: prefixes("192.0.2.0/24")}, nil},
		{"denylist", map[string]string{nginx + "denylist-source-range": "198.51.100.7"}, false, false,
			&exchange.Rules{Deny: prefixes("198.51.100.7/32")}, nil},
		{"IPv4-mapped ranges are IPv4", map[string]string{nginx + "denylist-source-range": "::ffff:198.51.100.0/120, ::ffff:192.0.2.1"}, false, false,
			&exchange.Rules{Deny: prefixes("198.51.100.0/24", "192.0.2.1/32")}, nil},
		{"::/0 is IPv6 only, as nginx reads it", map[string]string{nginx + "denylist-source-range": "::/0"}, false, false,
			&exchange.Rules{Deny: prefixes("::/0")}, nil},
		{"a mapped range wider than IPv4 fails closed", map[string]string{nginx + "denylist-source-range": "::ffff:0.0.0.0/90"}, false, false,
			&exchange.Rules{Refuse: refused},
			[]string{ReasonInvalidAnnotation}},
		{"bad allowlist fails closed", map[string]string{nginx + "whitelist-source-range": "192.0.2.0/33"}, false, false,
			&exchange.Rules{Refuse: refused},
			[]string{ReasonInvalidAnnotation}},
		{"empty denylist fails closed", map[string]string{nginx + "denylist-source-range": " , "}, false, false,
			&exchange.Rules{Refuse: refused},
			[]string{ReasonInvalidAnnotation}},
		{"two allowlists that differ", map[string]string{nginx + "whitelist-source-range": "192.0.2.0/24", nginx + "allowlist-source-range": "10.0.0.0/8"}, false, false,
			&exchange.Rules{Allow: prefixes("192.0.2.0/24"), Refuse: refused},
			[]string{ReasonInvalidAnnotation}},
		{"auth-url it cannot use (see TestExtAuthAnnotations)", map[string]string{nginx + "auth-url": "https://$host/oauth2/auth"}, false, false,
			&exchange.Rules{Refuse: refused},
			[]string{ReasonInvalidAnnotation}},
		{"basic auth: applied at compile (see TestAuthAnnotations)", map[string]string{nginx + "auth-type": "basic", nginx + "auth-secret": "users"}, false, false, nil, nil},
		{"limits", map[string]string{nginx + "proxy-body-size": "8m", nginx + "proxy-read-timeout": "120", "portico.dev/proxy-connect-timeout": "500ms",
			nginx + "proxy-send-timeout": "2m", nginx + "proxy-next-upstream": "error timeout invalid_header", nginx + "proxy-next-upstream-tries": "2"}, false, false,
			&exchange.Rules{Limits: exchange.Limits{MaxBodySize: 8 << 20, ReadTimeout: 120 * time.Second, ConnectTimeout: 500 * time.Millisecond, SendTimeout: 2 * time.Minute},
				NextUpstream: exchange.NextOnError | exchange.NextOnTimeout | exchange.NextOnInvalidHeader, Tries: 2}, nil},
		{"no body limit", map[string]string{nginx + "proxy-body-size": "0", nginx + "proxy-next-upstream-tries": "0"}, false, false,
			&exchange.Rules{Limits: exchange.Limits{MaxBodySize: -1}, Tries: math.MaxInt32}, nil},
		{"permanent redirect", map[string]string{nginx + "permanent-redirect": "https://new.example/"}, false, false,
			&exchange.Rules{RedirectCode: 301, RedirectURL: "https://new.example/"}, nil},
		{"permanent redirect, 308", map[string]string{nginx + "permanent-redirect": "https://new.example/", nginx + "permanent-redirect-code": "308"}, false, false,
			&exchange.Rules{RedirectCode: 308, RedirectURL: "https://new.example/"}, nil},
		{"temporal wins", map[string]string{nginx + "permanent-redirect": "https://a.example/", nginx + "temporal-redirect": "http://b.example/x", nginx + "temporal-redirect-code": "307"}, false, false,
			&exchange.Rules{RedirectCode: 307, RedirectURL: "http://b.example/x"}, []string{ReasonInvalidAnnotation}},
		{"bad redirects", map[string]string{nginx + "permanent-redirect": "https://new.example/\r\nSet-Cookie: x=y", nginx + "temporal-redirect": "/relative",
			nginx + "permanent-redirect-code": "200", nginx + "app-root": "//evil.example"}, false, false, nil,
			[]string{ReasonInvalidAnnotation, ReasonInvalidAnnotation, ReasonInvalidAnnotation, ReasonInvalidAnnotation}},
		{"a bad code keeps the default", map[string]string{nginx + "permanent-redirect": "https://new.example/", nginx + "permanent-redirect-code": "304"}, false, false,
			&exchange.Rules{RedirectCode: 301, RedirectURL: "https://new.example/"}, []string{ReasonInvalidAnnotation}},
		{"force-ssl-redirect and app-root", map[string]string{nginx + "force-ssl-redirect": "true", nginx + "app-root": "/app1"}, false, false,
			&exchange.Rules{ForceSSLRedirect: true, AppRoot: "/app1"}, nil},
		{"CORS with ingress-nginx's defaults", map[string]string{nginx + "enable-cors": "true"}, false, false,
			&exchange.Rules{CORS: &exchange.CORS{Origins: []string{"*"}, Methods: "GET, PUT, POST, DELETE, PATCH, OPTIONS",
				Headers: "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization", MaxAge: "1728000", Credentials: true}}, nil},
		{"CORS set", map[string]string{nginx + "enable-cors": "true", nginx + "cors-allow-origin": "https://App.example, https://*.example.org",
			nginx + "cors-allow-methods": "GET, POST", nginx + "cors-allow-headers": "X-A", nginx + "cors-expose-headers": "X-B",
			nginx + "cors-allow-credentials": "false", nginx + "cors-max-age": "60"}, false, false,
			&exchange.Rules{CORS: &exchange.CORS{Origins: []string{"https://app.example", "https://*.example.org"}, Methods: "GET, POST",
				Headers: "X-A", Expose: "X-B", MaxAge: "60"}}, nil},
		{"bad CORS values", map[string]string{nginx + "enable-cors": "true", nginx + "cors-allow-origin": "https://a.example/path",
			nginx + "cors-allow-methods": "GET\r\nX: y", nginx + "cors-max-age": "-1"}, false, false,
			&exchange.Rules{CORS: &exchange.CORS{Origins: []string{}, Methods: "GET, PUT, POST, DELETE, PATCH, OPTIONS",
				Headers: "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization", MaxAge: "1728000", Credentials: true}},
			[]string{ReasonInvalidAnnotation, ReasonInvalidAnnotation, ReasonInvalidAnnotation}},
		{"CORS options without enable-cors", map[string]string{nginx + "cors-allow-origin": "*"}, false, false, nil, []string{ReasonInvalidAnnotation}},
		{"bad limits keep the proxy's", map[string]string{nginx + "proxy-body-size": "8x", nginx + "proxy-read-timeout": "-1", nginx + "proxy-connect-timeout": "1.5s",
			nginx + "proxy-next-upstream": "http_501", nginx + "proxy-next-upstream-tries": "many"}, false, false, nil,
			[]string{ReasonInvalidAnnotation, ReasonInvalidAnnotation, ReasonInvalidAnnotation, ReasonInvalidAnnotation, ReasonInvalidAnnotation}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ri, a := toRoute(ing(c.ann))
			var reasons []string
			for _, p := range a.probs {
				reasons = append(reasons, p.Reason)
				if !strings.Contains(p.Note, "annotation") {
					t.Errorf("a Warning that names no annotation: %s", p.Note)
				}
			}
			slices.Sort(reasons)
			slices.Sort(c.reasons)
			if ri.NoSSLRedirect != c.noRedirect || (ri.Canary != nil) != c.canary || !slices.Equal(reasons, c.reasons) {
				t.Errorf("NoSSLRedirect %v, canary %v, problems %v; want %v, %v, %v", ri.NoSSLRedirect, ri.Canary, a.probs, c.noRedirect, c.canary, c.reasons)
			}
			if !reflect.DeepEqual(a.rules, c.rules) {
				t.Errorf("rules %+v, want %+v", a.rules, c.rules)
			}
		})
	}
}

// An Ingress's rules reach the Config under its key; a canary Ingress,
// even an older one, is its main route's canary and never a conflict.
func TestCompileRules(t *testing.T) {
	ing := func(name string, ann map[string]string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: ann}}
		i.Spec.IngressClassName = ptr.To("portico")
		i.Spec.Rules = []networkingv1.IngressRule{{Host: "a.example", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: name, Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}}
		return i
	}
	main := ing("main", map[string]string{NginxPrefix + "whitelist-source-range": "192.0.2.0/24"})
	canary := ing("canary", map[string]string{NginxPrefix + "canary": "true", NginxPrefix + "canary-by-header": "X-Canary"})
	canary.CreationTimestamp = metav1.NewTime(time.Unix(1, 0)) // older: it would win a conflict
	var cp compiler
	cfg, probs := cp.compile(cluster{class: Class{Name: "portico", Found: true}, ingresses: []*networkingv1.Ingress{canary, main}})
	if r := cfg.Rules["ns/main"]; r == nil || len(r.Allow) != 1 || len(cfg.Rules) != 1 {
		t.Errorf("rules %v, want main's allowlist only", cfg.Rules)
	}
	be, ok := cfg.Routes.Match("a.example", "/")
	if !ok || be.Service != "main" || be.Canary == nil || be.Canary.Backend.Service != "canary" || be.Canary.Header != "X-Canary" {
		t.Errorf("a.example goes to %+v, want the main Ingress's Service with the canary's beside it", be)
	}
	if cfg.Upstreams[exchange.Target{Namespace: "ns", Service: "canary", Port: route.Port{Number: 80}}] == nil {
		t.Error("no Upstream for the canary's Service")
	}
	if len(probs) != 0 {
		t.Errorf("problems %v, want none", probs)
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

// The Ingresses of a namespace being deleted are not served, and so do
// not win conflicts: a newer Ingress elsewhere takes the defaultBackend.
func TestCompileSkipsTerminatingNamespaces(t *testing.T) {
	ing := func(ns string, age time.Duration) *networkingv1.Ingress {
		i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", CreationTimestamp: metav1.NewTime(time.Unix(1e9, 0).Add(-age))}}
		i.Spec.IngressClassName = ptr.To("portico")
		i.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
		return i
	}
	cl := cluster{class: Class{Name: "portico", Found: true}, ingresses: []*networkingv1.Ingress{ing("old", time.Hour), ing("new", time.Minute)}}
	var cp compiler
	defaultOf := func() (string, []problem) {
		cfg, probs := cp.compile(cl)
		be, ok := cfg.Routes.Match("any.example", "/")
		if !ok {
			t.Fatal("no defaultBackend")
		}
		return be.Ingress, probs
	}
	if got, probs := defaultOf(); got != "old/web" || len(probs) != 1 || probs[0].Ingress.Namespace != "new" {
		t.Fatalf("before: defaultBackend of %s, problems %v; want old/web's, a conflict on new/web", got, probs)
	}
	cl.terminating = map[string]bool{"old": true}
	if got, probs := defaultOf(); got != "new/web" || len(probs) != 0 {
		t.Errorf("old terminating: defaultBackend of %s, problems %v; want new/web's and none", got, probs)
	}
}

// use-regex and rewrite-target reach the route; a rewrite that would break
// the request line is refused; Policy tells Ingresses apart by what they
// apply, not by what has no effect.
func TestRouteAnnotations(t *testing.T) {
	ing := func(ann map[string]string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", Annotations: ann}}
		i.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
		return i
	}
	ri, a := toRoute(ing(map[string]string{NginxPrefix + "use-regex": "true", NginxPrefix + "rewrite-target": "/$2"}))
	if !ri.Regex || ri.RewriteTarget != "/$2" || len(a.probs) != 0 {
		t.Errorf("Regex %v, RewriteTarget %q, problems %v", ri.Regex, ri.RewriteTarget, a.probs)
	}
	ri, a = toRoute(ing(map[string]string{NginxPrefix + "rewrite-target": "/a b\r\nX: y"}))
	if ri.RewriteTarget != "" || len(a.probs) != 1 || a.probs[0].Reason != ReasonInvalidAnnotation {
		t.Errorf("a rewrite with blanks: RewriteTarget %q, problems %v", ri.RewriteTarget, a.probs)
	}
	policy := func(ann map[string]string) string { ri, _ := toRoute(ing(ann)); return ri.Policy }
	if policy(nil) != policy(map[string]string{NginxPrefix + "mirror-target": "http://m/", "team": "x"}) {
		t.Error("an annotation with no effect changed the Policy")
	}
	if policy(nil) == policy(map[string]string{NginxPrefix + "whitelist-source-range": "10.0.0.0/8"}) ||
		policy(map[string]string{NginxPrefix + "proxy-body-size": "1m"}) == policy(map[string]string{PorticoPrefix + "proxy-body-size": "2m"}) {
		t.Error("Ingresses that apply different annotations have the same Policy")
	}
}

// Rate limits outlive compiles while the Ingress asks for the same: a
// change elsewhere must not refill every client's bucket.
func TestCompileRateLimits(t *testing.T) {
	ing := func(ann map[string]string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", Annotations: ann}}
		i.Spec.IngressClassName = ptr.To("portico")
		i.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
		return i
	}
	var cp compiler
	compile := func(ann map[string]string) *exchange.Rules {
		cfg, probs := cp.compile(cluster{class: Class{Name: "portico", Found: true}, ingresses: []*networkingv1.Ingress{ing(ann)}})
		if len(probs) != 0 {
			t.Fatalf("problems %v", probs)
		}
		return cfg.Rules["ns/x"]
	}
	both := map[string]string{NginxPrefix + "limit-rps": "5", NginxPrefix + "limit-rpm": "100", NginxPrefix + "limit-whitelist": "10.0.0.0/8"}
	first := compile(both)
	if first == nil || len(first.RateLimits) != 2 || len(first.LimitExempt) != 1 {
		t.Fatalf("rules %+v, want two limits and an exemption", first)
	}
	again := compile(both)
	if again.RateLimits[0] != first.RateLimits[0] || again.RateLimits[1] != first.RateLimits[1] {
		t.Error("the same limits were made anew by a second compile")
	}
	changed := compile(map[string]string{NginxPrefix + "limit-rps": "6", NginxPrefix + "limit-rpm": "100"})
	if changed.RateLimits[0] == first.RateLimits[0] || changed.RateLimits[1] != first.RateLimits[1] {
		t.Error("a changed limit-rps kept its old limit, or the unchanged limit-rpm lost its own")
	}
	compile(nil)
	if len(cp.limits) != 0 {
		t.Errorf("%d limits kept for an Ingress that has none", len(cp.limits))
	}
}

// service-upstream sends an Ingress's requests to the Service's cluster IP
// and port, on an Upstream of its own; a headless Service has none to
// give, and a Warning says so.
func TestCompileServiceUpstream(t *testing.T) {
	ing := func(name, svc string, viaService bool) *networkingv1.Ingress {
		i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		if viaService {
			i.Annotations = map[string]string{NginxPrefix + "service-upstream": "true"}
		}
		i.Spec.IngressClassName = ptr.To("portico")
		i.Spec.Rules = []networkingv1.IngressRule{{Host: name + ".example", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Name: "http"}}}}}}}}}
		return i
	}
	svc := func(name, ip string) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		s.Spec.ClusterIP = ip
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}}
		return s
	}
	var cp compiler
	cfg, probs := cp.compile(cluster{class: Class{Name: "portico", Found: true},
		ingresses: []*networkingv1.Ingress{ing("mesh", "web", true), ing("direct", "web", false), ing("headless", "db", true)},
		services:  []*corev1.Service{svc("web", "10.96.0.10"), svc("db", corev1.ClusterIPNone)}})
	web := exchange.Target{Namespace: "ns", Service: "web", Port: route.Port{Name: "http"}}
	viaService := web
	viaService.ViaService = true
	if u := cfg.Upstreams[viaService]; u == nil || len(u.Addrs) != 1 || u.Addrs[0] != "10.96.0.10:8080" {
		t.Errorf("service-upstream Upstream %+v, want the cluster IP and port", u)
	}
	if u := cfg.Upstreams[web]; u == nil || len(u.Addrs) != 0 {
		t.Errorf("the other Ingress's Upstream %+v, want the (absent) endpoints", u)
	}
	if be, _ := cfg.Routes.Match("mesh.example", "/"); !exchange.TargetOf(be).ViaService {
		t.Error("mesh.example's route does not go through the Service")
	}
	if len(probs) != 1 || probs[0].Ingress.Name != "headless" || !strings.Contains(probs[0].Note, "headless") {
		t.Errorf("problems %v, want one about the headless Service", probs)
	}
}

// backend-protocol gives an Ingress's targets their protocol, and
// proxy-ssl-* their TLS settings, read from a Secret of the Ingress's own
// namespace; what cannot be read is a Warning, and verification asked
// for never quietly goes.
func TestCompileBackendProtocol(t *testing.T) {
	ca, err := proxy.SelfSigned("backend ca", "web.ns.svc")
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Leaf.Raw})
	ing := func(name string, ann map[string]string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: ann}}
		i.Spec.IngressClassName = ptr.To("portico")
		i.Spec.Rules = []networkingv1.IngressRule{{Host: name + ".example", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 443}}}}}}}}}
		return i
	}
	secret := func(ns, name string, data map[string][]byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + name), ResourceVersion: "1"}, Type: corev1.SecretTypeTLS, Data: data}
	}
	const n = NginxPrefix
	for _, c := range []struct {
		name    string
		ann     map[string]string
		proto   route.Protocol
		tls     func(b *exchange.BackendTLS) bool
		reasons []string
	}{
		{"grpc", map[string]string{n + "backend-protocol": "GRPC"}, route.GRPC, nil, nil},
		{"lower case", map[string]string{n + "backend-protocol": "grpcs"}, route.GRPCS, nil, nil},
		{"h2c", map[string]string{n + "backend-protocol": "H2C"}, route.H2C, nil, nil},
		{"fcgi", map[string]string{n + "backend-protocol": "FCGI"}, route.HTTP, nil, []string{ReasonInvalidAnnotation}},
		{"https verified by the Secret's CA", map[string]string{n + "backend-protocol": "HTTPS", n + "proxy-ssl-secret": "ns/ca", n + "proxy-ssl-verify": "on",
			n + "proxy-ssl-name": "web.internal", n + "proxy-ssl-server-name": "on"}, route.HTTPS,
			func(b *exchange.BackendTLS) bool {
				return b.Verify && b.SNI && b.Name == "web.internal" && b.Roots != nil && b.Cert == nil && b.Key != ""
			}, nil},
		{"client certificate, no verification", map[string]string{n + "backend-protocol": "HTTPS", n + "proxy-ssl-secret": "client"}, route.HTTPS,
			func(b *exchange.BackendTLS) bool { return !b.Verify && b.Cert != nil }, nil},
		{"verification typo verifies", map[string]string{n + "backend-protocol": "HTTPS", n + "proxy-ssl-verify": "yes"}, route.HTTPS,
			func(b *exchange.BackendTLS) bool { return b.Verify }, []string{ReasonInvalidAnnotation}},
		{"missing Secret trusts nothing", map[string]string{n + "backend-protocol": "GRPCS", n + "proxy-ssl-secret": "gone", n + "proxy-ssl-verify": "on"}, route.GRPCS,
			func(b *exchange.BackendTLS) bool {
				return b.Verify && b.Roots != nil && b.Roots.Equal(x509.NewCertPool())
			},
			[]string{ReasonInvalidAnnotation}},
		{"another namespace's Secret", map[string]string{n + "backend-protocol": "HTTPS", n + "proxy-ssl-secret": "other/ca", n + "proxy-ssl-verify": "on"}, route.HTTPS,
			func(b *exchange.BackendTLS) bool {
				return b.Verify && b.Roots != nil && b.Roots.Equal(x509.NewCertPool())
			},
			[]string{ReasonInvalidAnnotation}},
		{"proxy-ssl without TLS", map[string]string{n + "proxy-ssl-verify": "on"}, route.HTTP, nil, []string{ReasonInvalidAnnotation}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var cp compiler
			cfg, probs := cp.compile(cluster{class: Class{Name: "portico", Found: true},
				ingresses: []*networkingv1.Ingress{ing("x", c.ann)},
				secrets: []*corev1.Secret{
					secret("ns", "ca", map[string][]byte{"ca.crt": caPEM}),
					secret("other", "ca", map[string][]byte{"ca.crt": caPEM}),
					secret("ns", "client", map[string][]byte{"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Leaf.Raw}), "tls.key": keyPEM(t, ca)}),
				}})
			be, _ := cfg.Routes.Match("x.example", "/")
			if be.Protocol != c.proto {
				t.Errorf("protocol %v, want %v", be.Protocol, c.proto)
			}
			if _, ok := cfg.Upstreams[exchange.TargetOf(be)]; !ok {
				t.Errorf("no Upstream for %+v", exchange.TargetOf(be))
			}
			var b *exchange.BackendTLS
			if r := cfg.Rules["ns/x"]; r != nil {
				b = r.BackendTLS
			}
			if (c.tls == nil) != (b == nil) || c.tls != nil && !c.tls(b) {
				t.Errorf("backend TLS %+v", b)
			}
			var reasons []string
			for _, p := range probs {
				reasons = append(reasons, p.Reason)
			}
			if !slices.Equal(reasons, c.reasons) {
				t.Errorf("problems %v, want reasons %v", probs, c.reasons)
			}
		})
	}
}

func keyPEM(t *testing.T, c *tls.Certificate) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// ssl-passthrough makes the Ingress's rule hosts passed through, and a
// typo in it a Warning, not a passthrough.
func TestSSLPassthroughAnnotation(t *testing.T) {
	for _, c := range []struct {
		value   string
		pass    bool
		reasons int
	}{{"true", true, 0}, {"false", false, 0}, {"yes", false, 1}} {
		ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", Annotations: map[string]string{NginxPrefix + "ssl-passthrough": c.value}}}
		ri, a := toRoute(ing)
		if ri.Passthrough != c.pass || len(a.probs) != c.reasons {
			t.Errorf("ssl-passthrough %q: Passthrough %v, problems %v", c.value, ri.Passthrough, a.probs)
		}
	}
}
