package ingress

import (
	"net/netip"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// review13Ingress routes host a.example "/" (Prefix) to Service svc:80 in ns.
func review13Ingress(name, svc string, age time.Duration, ann map[string]string) *networkingv1.Ingress {
	i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: ann,
		CreationTimestamp: metav1.NewTime(time.Unix(1e9, 0).Add(-age))}}
	i.Spec.IngressClassName = ptr.To("portico")
	i.Spec.Rules = []networkingv1.IngressRule{{Host: "a.example", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}}
	return i
}

// review13Decide compiles ings, gives every Service an endpoint, and decides
// a GET http://a.example/ from client.
func review13Decide(t *testing.T, client string, ings ...*networkingv1.Ingress) (*exchange.Exchange, []problem) {
	t.Helper()
	var cp compiler
	cfg, probs := cp.compile(cluster{class: Class{Name: "portico", Found: true}, ingresses: ings})
	for _, ing := range ings {
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				tg := exchange.Target{Namespace: ing.Namespace, Service: p.Backend.Service.Name, Port: route.Port{Number: p.Backend.Service.Port.Number}}
				cfg.Upstreams[tg] = exchange.NewUpstream("10.0.0.1:80")
			}
		}
	}
	req := &exchange.Request{Method: "GET", Target: "/", Host: "a.example", Proto: exchange.HTTP11, Client: netip.MustParseAddrPort(client)}
	var x exchange.Exchange
	exchange.NewPolicy(exchange.Settings{}).Decide(cfg, req, time.Now(), &x)
	return &x, probs
}

// FINDING 1: a denylist CIDR written in IPv4-mapped IPv6 form
// ("::ffff:192.0.2.0/120") is accepted, but admit unmaps the client to a
// 4-byte address, which never matches a 16-byte prefix: the denied IPv4
// client is served. (The single-address form "::ffff:192.0.2.7" is unmapped
// by sourceRange and works, so the two spellings disagree.)
func TestReview13DenylistMappedCIDRIsBypassed(t *testing.T) {
	ing := review13Ingress("web", "web", time.Hour, map[string]string{NginxPrefix + "denylist-source-range": "::ffff:192.0.2.0/120"})
	x, _ := review13Decide(t, "192.0.2.7:40000", ing)
	if x.Status != 403 {
		t.Errorf("client 192.0.2.7 denied by ::ffff:192.0.2.0/120: outcome %d status %d, want 403", x.Outcome, x.Status)
	}
}

// Same parse hole, fail-closed side: an allowlist in mapped form refuses the
// very IPv4 clients it names.
func TestReview13AllowlistMappedCIDRRefusesItsClients(t *testing.T) {
	ing := review13Ingress("web", "web", time.Hour, map[string]string{NginxPrefix + "whitelist-source-range": "::ffff:192.0.2.0/120"})
	x, _ := review13Decide(t, "192.0.2.7:40000", ing)
	if x.Outcome != exchange.Forward {
		t.Errorf("client 192.0.2.7 allowed by ::ffff:192.0.2.0/120: outcome %d status %d %q, want it forwarded", x.Outcome, x.Status, x.Body)
	}
}

// FINDING 2: two Ingresses of one namespace claim the same host and path
// for the same Service: Build merges them silently (sameTarget, no
// Conflict) and keeps the older one's Backend, so cfg.Rules of the newer
// Ingress are never looked up. The newer Ingress's auth-url, which the
// change promises fails closed (403), is neither enforced nor refused, and
// its owner gets no Warning saying so.
func TestReview13SameTargetMergeSkipsNewerIngressRefusal(t *testing.T) {
	open := review13Ingress("open", "web", time.Hour, nil)
	guarded := review13Ingress("guarded", "web", time.Minute, map[string]string{NginxPrefix + "auth-url": "http://auth.example/check"})
	x, probs := review13Decide(t, "192.0.2.7:40000", open, guarded)
	warnedOfMerge := false
	for _, p := range probs {
		if p.Ingress.Name == "guarded" && p.Reason != ReasonAccessRefused {
			warnedOfMerge = true
		}
	}
	if x.Status != 403 && !warnedOfMerge {
		t.Errorf("a.example/ of Ingress ns/guarded (auth-url) is served by ns/open's route: outcome %d status %d, and ns/guarded got no Warning (problems %v); want 403 or a Warning that its annotations do not apply", x.Outcome, x.Status, probs)
	}
}

// Same with an allowlist: the newer Ingress's allowlist does not apply to
// its own path and nobody is told.
func TestReview13SameTargetMergeSkipsNewerIngressAllowlist(t *testing.T) {
	open := review13Ingress("open", "web", time.Hour, nil)
	guarded := review13Ingress("guarded", "web", time.Minute, map[string]string{NginxPrefix + "whitelist-source-range": "10.0.0.0/8"})
	x, probs := review13Decide(t, "192.0.2.7:40000", open, guarded)
	warned := false
	for _, p := range probs {
		if p.Ingress.Name == "guarded" {
			warned = true
		}
	}
	if x.Status != 403 && !warned {
		t.Errorf("client 192.0.2.7, outside ns/guarded's allowlist, is forwarded (outcome %d) and ns/guarded got no Warning", x.Outcome)
	}
}

// And for defaultBackend: two Ingresses with the same defaultBackend; the
// newer one carries auth-type; the older one's (rule-less) default wins
// silently.
func TestReview13SameDefaultBackendSkipsNewerIngressRefusal(t *testing.T) {
	def := func(name string, age time.Duration, ann map[string]string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: ann,
			CreationTimestamp: metav1.NewTime(time.Unix(1e9, 0).Add(-age))}}
		i.Spec.IngressClassName = ptr.To("portico")
		i.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
		return i
	}
	var cp compiler
	cfg, probs := cp.compile(cluster{class: Class{Name: "portico", Found: true}, ingresses: []*networkingv1.Ingress{
		def("open", time.Hour, nil), def("guarded", time.Minute, map[string]string{NginxPrefix + "auth-type": "basic"})}})
	cfg.Upstreams[exchange.Target{Namespace: "ns", Service: "web", Port: route.Port{Number: 80}}] = exchange.NewUpstream("10.0.0.1:80")
	req := &exchange.Request{Method: "GET", Target: "/", Host: "any.example", Proto: exchange.HTTP11, Client: netip.MustParseAddrPort("192.0.2.7:1")}
	var x exchange.Exchange
	exchange.NewPolicy(exchange.Settings{}).Decide(cfg, req, time.Now(), &x)
	warned := false
	for _, p := range probs {
		if p.Ingress.Name == "guarded" && p.Reason != ReasonAccessRefused {
			warned = true
		}
	}
	if x.Status != 403 && !warned {
		t.Errorf("defaultBackend of ns/guarded (auth-type) served without it: outcome %d, problems %v", x.Outcome, probs)
	}
}
