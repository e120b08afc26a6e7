package ingress_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/ingress"
	"github.com/portico-lb/portico/ingress/proxy"
)

func serviceBackend(svc string, port int32, portName string) networkingv1.IngressBackend {
	return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
		Name: svc, Port: networkingv1.ServiceBackendPort{Number: port, Name: portName}}}
}

func prefixPath(p string, be networkingv1.IngressBackend) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{Path: p, PathType: ptr.To(networkingv1.PathTypePrefix), Backend: be}
}

func hostRule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{
		HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
}

func newIngress(ns, name string, class *string, spec networkingv1.IngressSpec) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{Spec: spec}
	ing.Namespace, ing.Name = ns, name
	ing.Spec.IngressClassName = class
	return ing
}

// create creates objs and deletes them when the test ends, so that the
// next test's controllers do not serve them.
func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := api.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
		t.Cleanup(func() { _ = api.Client.Delete(context.Background(), o) })
	}
}

// update re-reads obj, applies change and writes it, retrying conflicts.
func update[T client.Object](t *testing.T, obj T, change func(T)) {
	t.Helper()
	ctx := context.Background()
	for range 10 {
		if err := api.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		change(obj)
		err := api.Client.Update(ctx, obj)
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "modified") {
			t.Fatal(err)
		}
	}
	t.Fatalf("updating %s: too many conflicts", obj.GetName())
}

func TestStatusAddress(t *testing.T) {
	needAPI(t)
	const ns = "status"
	makeNamespace(t, ns)
	pub := publishService(t, "pub-status", "192.0.2.10")
	web := serviceBackend("web", 80, "")
	withRules := newIngress(ns, "with-rules", ptr.To(className), networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{hostRule("a.example", prefixPath("/", web))}})
	ruleLess := newIngress(ns, "rule-less", ptr.To(className), networkingv1.IngressSpec{DefaultBackend: &web})
	other := newIngress(ns, "other-class", ptr.To("other"), networkingv1.IngressSpec{DefaultBackend: &web})
	classLess := newIngress(ns, "class-less", nil, networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{hostRule("c.example", prefixPath("/", web))}})
	create(t, withRules, ruleLess, other, classLess)

	startInstance(t, "status-test", "pub-status")
	eventually(t, 10*time.Second, "address of an Ingress with rules", wantAddresses(t, ns, "with-rules", "192.0.2.10"))
	eventually(t, 5*time.Second, "address of a rule-less Ingress", wantAddresses(t, ns, "rule-less", "192.0.2.10"))

	setServiceIP(t, pub, "192.0.2.11")
	eventually(t, 5*time.Second, "address follows the Service", wantAddresses(t, ns, "with-rules", "192.0.2.11"))
	eventually(t, 5*time.Second, "address follows the Service", wantAddresses(t, ns, "rule-less", "192.0.2.11"))

	update(t, withRules, func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To("other") })
	eventually(t, 5*time.Second, "address cleared when the Ingress leaves the class", wantAddresses(t, ns, "with-rules"))

	// A class-less Ingress is served once the class is the default.
	if err := wantAddresses(t, ns, "class-less")(); err != nil {
		t.Errorf("before the class is the default: %v", err)
	}
	class := &networkingv1.IngressClass{}
	class.Name = className
	update(t, class, func(c *networkingv1.IngressClass) {
		c.Annotations = map[string]string{ingress.DefaultClassAnnotation: "true"}
	})
	t.Cleanup(func() { update(t, class, func(c *networkingv1.IngressClass) { c.Annotations = nil }) })
	eventually(t, 5*time.Second, "class-less Ingress served when the class is the default", wantAddresses(t, ns, "class-less", "192.0.2.11"))

	// Another class's Ingress never got an address: checked last, after
	// every write above has happened.
	if err := wantAddresses(t, ns, "other-class")(); err != nil {
		t.Error(err)
	}
}

func TestOnlyTheLeaderWritesStatus(t *testing.T) {
	needAPI(t)
	const ns = "leader"
	makeNamespace(t, ns)
	// Each instance publishes a different Service, so the address in the
	// status tells which instance wrote it.
	publishService(t, "pub-a", "192.0.2.20")
	publishService(t, "pub-b", "192.0.2.21")
	web := serviceBackend("web", 80, "")
	create(t, newIngress(ns, "web", ptr.To(className), networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{hostRule("leader.example", prefixPath("/", web))}}))

	a := startInstance(t, "leader-test", "pub-a")
	eventually(t, 10*time.Second, "the first instance leads and writes", wantAddresses(t, ns, "web", "192.0.2.20"))

	b := startInstance(t, "leader-test", "pub-b")
	eventually(t, 10*time.Second, "the second instance serves the Ingress", func() error {
		if _, ok := b.srv.Config().Routes.Match("leader.example", "/"); !ok {
			return fmt.Errorf("no route yet")
		}
		return nil
	})
	// The follower is up and sees the Ingress; for a while, nothing it
	// could write may show.
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := wantAddresses(t, ns, "web", "192.0.2.20")(); err != nil {
			t.Fatalf("while the first instance leads: %v", err)
		}
	}

	a.stop()
	eventually(t, 10*time.Second, "the second instance takes over", wantAddresses(t, ns, "web", "192.0.2.21"))
}

// hostIP is an address of this machine that an EndpointSlice may hold: the
// API refuses loopback ones.
func hostIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	t.Fatal("this machine has no non-loopback IPv4 address for test endpoints")
	return ""
}

// backend is an HTTP server on hostIP that names itself in every answer.
func backend(t *testing.T, name string) (*httptest.Server, int32) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(hostIP(t), "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name)
	})}}
	s.Start()
	t.Cleanup(s.Close)
	return s, int32(l.Addr().(*net.TCPAddr).Port)
}

func endpointSlice(t *testing.T, ns, name, svc string, port int32, ready bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{hostIP(t)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}},
	}
	s.Namespace, s.Name = ns, name
	s.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
	return s
}

func service(ns, name string) *corev1.Service {
	svc := &corev1.Service{}
	svc.Namespace, svc.Name = ns, name
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
	return svc
}

// get sends GET path with Host host through the proxy at addr and returns
// status and body.
func get(addr, host, path string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Host = host
	res, err := noRedirects.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, string(body), err
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func wantAnswer(addr, host, path string, code int, body string) func() error {
	return func() error {
		c, b, err := get(addr, host, path)
		if err != nil {
			return err
		}
		if c != code || (body != "" && b != body) {
			return fmt.Errorf("GET %s%s: %d %q, want %d %q", host, path, c, b, code, body)
		}
		return nil
	}
}

func TestEndpointsReachRouting(t *testing.T) {
	needAPI(t)
	const ns = "routing"
	makeNamespace(t, ns)
	_, portA := backend(t, "a")
	_, portB := backend(t, "b")
	slice := endpointSlice(t, ns, "web-1", "web", portA, true)
	create(t, service(ns, "web"), slice,
		newIngress(ns, "web", ptr.To(className), networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
			hostRule("web.example", prefixPath("/", serviceBackend("web", 80, "")), prefixPath("/named", serviceBackend("web", 0, "http"))),
		}}))
	in := startInstance(t, "routing-test", "pub-routing")

	eventually(t, 10*time.Second, "by port number", wantAnswer(in.plain, "web.example", "/", 200, "a"))
	eventually(t, time.Second, "by port name", wantAnswer(in.plain, "web.example", "/named/x", 200, "a"))
	eventually(t, time.Second, "no route", wantAnswer(in.plain, "other.example", "/", 404, ""))

	update(t, slice, func(s *discoveryv1.EndpointSlice) { s.Ports[0].Port = ptr.To(portB) })
	eventually(t, 5*time.Second, "traffic follows the EndpointSlice", wantAnswer(in.plain, "web.example", "/", 200, "b"))

	update(t, slice, func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Ready = ptr.To(false) })
	eventually(t, 5*time.Second, "no ready endpoint", wantAnswer(in.plain, "web.example", "/", 503, ""))
}

func TestTLSSecretsAndEvents(t *testing.T) {
	needAPI(t)
	const ns = "tls"
	makeNamespace(t, ns)
	_, port := backend(t, "web")
	cert, key := pemCert(t, "good.example")
	good := &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": cert, "tls.key": key}}
	good.Namespace, good.Name = ns, "good-tls"
	broken := &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("not a certificate"), "tls.key": []byte("nor a key")}}
	broken.Namespace, broken.Name = ns, "broken-tls"
	web := serviceBackend("web", 80, "")
	tlsIngress := func(name, host, secret string) *networkingv1.Ingress {
		return newIngress(ns, name, ptr.To(className), networkingv1.IngressSpec{
			Rules: []networkingv1.IngressRule{hostRule(host, prefixPath("/", web))},
			TLS:   []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: secret}},
		})
	}
	create(t, service(ns, "web"), endpointSlice(t, ns, "web-1", "web", port, true), good, broken,
		tlsIngress("good", "good.example", "good-tls"),
		tlsIngress("broken", "broken.example", "broken-tls"))
	time.Sleep(1100 * time.Millisecond) // creation timestamps have one-second resolution
	loser := newIngress(ns, "loser", ptr.To(className), networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{hostRule("good.example", prefixPath("/", serviceBackend("elsewhere", 80, "")))}})
	badAnnotation := newIngress(ns, "bad-annotation", ptr.To(className), networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{hostRule("annotated.example", prefixPath("/", web))}})
	badAnnotation.Annotations = map[string]string{ingress.SSLRedirectAnnotation: "nope"}
	create(t, loser, badAnnotation)

	in := startInstance(t, "tls-test", "pub-tls")
	eventually(t, 10*time.Second, "the good Secret's certificate is served by SNI", func() error {
		return wantCert(in.secure, "good.example", "good.example")
	})
	if err := wantCert(in.secure, "broken.example", "portico default certificate"); err != nil {
		t.Error(err)
	}
	eventually(t, 5*time.Second, "HTTP to a TLS host is redirected", wantAnswer(in.plain, "good.example", "/", 308, ""))
	eventually(t, 5*time.Second, "a host whose Secret is broken still works", wantAnswer(in.plain, "broken.example", "/", 308, ""))

	for _, w := range []struct{ ingress, reason string }{
		{"broken", ingress.ReasonInvalidTLSSecret},
		{"loser", ingress.ReasonRouteConflict},
		{"bad-annotation", ingress.ReasonInvalidAnnotation},
	} {
		eventually(t, 10*time.Second, "Event "+w.reason+" on "+w.ingress, wantWarning(ns, w.ingress, w.reason))
	}
}

func wantCert(addr, sni, cn string) error {
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != cn {
		return fmt.Errorf("SNI %s: certificate %q, want %q", sni, got, cn)
	}
	return nil
}

func pemCert(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	c, err := proxy.SelfSigned(host, host)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// An Ingress whose namespace is being deleted stops winning conflicts at
// once: the namespace takes seconds to go (here it never goes, as no
// namespace controller runs), and its backends are going with it.
func TestTerminatingNamespaceLosesConflicts(t *testing.T) {
	needAPI(t)
	const dying, living = "dying", "living"
	makeNamespace(t, dying)
	makeNamespace(t, living)
	_, portOld := backend(t, "old")
	_, portNew := backend(t, "new")
	old := serviceBackend("web", 80, "")
	create(t, service(dying, "web"), endpointSlice(t, dying, "web-1", "web", portOld, true),
		newIngress(dying, "first", ptr.To(className), networkingv1.IngressSpec{DefaultBackend: &old}))
	time.Sleep(1100 * time.Millisecond) // creation timestamps have one-second resolution
	create(t, service(living, "web"), endpointSlice(t, living, "web-1", "web", portNew, true),
		newIngress(living, "second", ptr.To(className), networkingv1.IngressSpec{DefaultBackend: &old}))

	in := startInstance(t, "terminating-test", "pub-terminating")
	eventually(t, 10*time.Second, "the older Ingress keeps the defaultBackend", wantAnswer(in.plain, "any.example", "/", 200, "old"))

	ns := &corev1.Namespace{}
	ns.Name = dying
	if err := api.Client.Delete(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the newer one takes it while the namespace terminates", wantAnswer(in.plain, "any.example", "/", 200, "new"))
}

// Annotations over real sockets: an allowlist admits the client it names
// and refuses one it does not, a snippet is refused with a Warning, and
// an auth annotation Portico cannot enforce refuses every request (403)
// and says so, rather than serving the route open.
func TestAnnotationsServed(t *testing.T) {
	needAPI(t)
	const ns = "annotated"
	makeNamespace(t, ns)
	_, port := backend(t, "web")
	web := serviceBackend("web", 80, "")
	annotated := func(name, host string, ann map[string]string) *networkingv1.Ingress {
		i := newIngress(ns, name, ptr.To(className), networkingv1.IngressSpec{
			Rules: []networkingv1.IngressRule{hostRule(host, prefixPath("/", web))}})
		i.Annotations = ann
		return i
	}
	create(t, service(ns, "web"), endpointSlice(t, ns, "web-1", "web", port, true),
		annotated("allowed", "allowed.example", map[string]string{ingress.NginxPrefix + "whitelist-source-range": "127.0.0.0/8, ::1"}),
		annotated("elsewhere", "elsewhere.example", map[string]string{ingress.NginxPrefix + "whitelist-source-range": "192.0.2.0/24"}),
		annotated("denied", "denied.example", map[string]string{ingress.PorticoPrefix + "denylist-source-range": "127.0.0.1"}),
		annotated("bad-list", "bad-list.example", map[string]string{ingress.NginxPrefix + "whitelist-source-range": "127.0.0.1/40"}),
		annotated("auth", "auth.example", map[string]string{ingress.NginxPrefix + "auth-url": "https://$host/oauth2/auth"}), // invalid: refused
		annotated("snippet", "snippet.example", map[string]string{ingress.NginxPrefix + "server-snippet": "location / { return 200; }"}),
		annotated("typo", "typo.example", map[string]string{ingress.NginxPrefix + "proxy-body-sise": "8m"}),
		annotated("moved", "moved.example", map[string]string{ingress.NginxPrefix + "permanent-redirect": "https://new.example/"}),
		annotated("forced", "forced.example", map[string]string{ingress.NginxPrefix + "force-ssl-redirect": "true"}),
		annotated("cors", "cors.example", map[string]string{ingress.NginxPrefix + "enable-cors": "true", ingress.NginxPrefix + "cors-allow-origin": "https://app.example"}),
		annotated("limited", "limited.example", map[string]string{ingress.NginxPrefix + "limit-rpm": "1", ingress.NginxPrefix + "limit-burst-multiplier": "1"}))

	in := startInstance(t, "annotations-test", "pub-annotations")
	eventually(t, 10*time.Second, "allowlisted client", wantAnswer(in.plain, "allowed.example", "/", 200, "web"))
	for _, host := range []string{"elsewhere", "denied", "bad-list", "auth"} {
		eventually(t, 5*time.Second, host+": refused", wantAnswer(in.plain, host+".example", "/", 403, ""))
	}
	eventually(t, 5*time.Second, "a snippet is not executed", wantAnswer(in.plain, "snippet.example", "/", 200, "web"))
	eventually(t, 5*time.Second, "permanent-redirect", wantRedirect(in.plain, "moved.example", "/x", 301, "https://new.example/"))
	eventually(t, 5*time.Second, "force-ssl-redirect", wantRedirect(in.plain, "forced.example", "/x?y=1", 308, "https://forced.example/x?y=1"))
	for _, method := range []string{"OPTIONS", "GET"} {
		eventually(t, 5*time.Second, "CORS "+method, func() error {
			req, _ := http.NewRequest(method, "http://"+in.plain+"/", nil)
			req.Host = "cors.example"
			req.Header.Set("Origin", "https://app.example")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			res.Body.Close()
			if want := map[string]int{"OPTIONS": 204, "GET": 200}[method]; res.StatusCode != want || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
				return fmt.Errorf("%s: %d %v, want %d with the origin allowed", method, res.StatusCode, res.Header, want)
			}
			return nil
		})
	}
	eventually(t, 5*time.Second, "limit-rpm: the first request", wantAnswer(in.plain, "limited.example", "/", 200, "web"))
	if err := wantAnswer(in.plain, "limited.example", "/", 503, "")(); err != nil {
		t.Errorf("limit-rpm 1: the second request within the minute: %v", err)
	}
	eventually(t, 5*time.Second, "force-ssl-redirect spares ACME", wantAnswer(in.plain, "forced.example", "/.well-known/acme-challenge/t", 200, "web"))

	for _, w := range []struct{ ingress, reason string }{
		{"bad-list", ingress.ReasonInvalidAnnotation},
		{"auth", ingress.ReasonInvalidAnnotation},
		{"snippet", ingress.ReasonSnippetRefused},
		{"typo", ingress.ReasonUnsupportedAnnotation},
	} {
		eventually(t, 10*time.Second, "Event "+w.reason+" on "+w.ingress, wantWarning(ns, w.ingress, w.reason))
	}
}

// wantWarning checks that the Ingress ns/name has a Warning Event of reason.
func wantWarning(ns, name, reason string) func() error {
	return func() error {
		var evs eventsv1.EventList
		if err := api.Client.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Regarding.Name == name && e.Reason == reason && e.Type == corev1.EventTypeWarning {
				return nil
			}
		}
		return fmt.Errorf("no Warning %s on Ingress %s among %d Events", reason, name, len(evs.Items))
	}
}

// wantRedirect checks that GET path with Host host gets code and Location.
func wantRedirect(addr, host, path string, code int, location string) func() error {
	return func() error {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Host = host
		res, err := noRedirects.Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != code || res.Header.Get("Location") != location {
			return fmt.Errorf("GET %s%s: %d Location %q, want %d %q", host, path, res.StatusCode, res.Header.Get("Location"), code, location)
		}
		return nil
	}
}
