package exchange

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/route"
)

// An Ingress's Rules: access by client address before anything else
// (fail closed), then its limits, tries and retried failures over the
// proxy-wide ones, for its routes only.
func TestRules(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	decide := func(req *Request) *Exchange {
		var x Exchange
		p.Decide(cfg, req, time.Now(), &x)
		return &x
	}
	from := func(addr string, req *Request) *Request {
		req.Client = netip.MustParseAddrPort(addr)
		return req
	}
	prefixes := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, v := range s {
			out = append(out, netip.MustParsePrefix(v))
		}
		return out
	}
	for _, c := range []struct {
		name   string
		rules  Rules
		req    *Request
		status int    // 0: forwarded
		reason string // in the body
	}{
		{"allowed", Rules{Allow: prefixes("192.0.2.0/24")}, from("192.0.2.7:1", get("plain.example", "/")), 0, ""},
		{"not allowed", Rules{Allow: prefixes("198.51.100.0/24")}, from("192.0.2.7:1", get("plain.example", "/")), 403, "not allowed"},
		{"mapped IPv4 allowed", Rules{Allow: prefixes("192.0.2.0/24")}, from("[::ffff:192.0.2.7]:1", get("plain.example", "/")), 0, ""},
		{"IPv6 not in an IPv4 list", Rules{Allow: prefixes("192.0.2.0/24")}, from("[2001:db8::1]:1", get("plain.example", "/")), 403, "not allowed"},
		{"denied inside the allowed", Rules{Allow: prefixes("192.0.2.0/24"), Deny: prefixes("192.0.2.7/32")}, from("192.0.2.7:1", get("plain.example", "/")), 403, "denied"},
		{"denied only", Rules{Deny: prefixes("192.0.2.0/24")}, from("192.0.2.7:1", get("plain.example", "/")), 403, "denied"},
		{"not denied", Rules{Deny: prefixes("198.51.100.0/24")}, from("192.0.2.7:1", get("plain.example", "/")), 0, ""},
		{"refused", Rules{Refuse: "auth-url is not supported"}, get("plain.example", "/"), 403, "auth-url"},
		{"refused before the redirect", Rules{Refuse: "no"}, get("shop.example", "/"), 403, "no"},
		{"a larger body allowed", Rules{Limits: Limits{MaxBodySize: 4 << 20}}, post("plain.example", 2<<20), 0, ""},
		{"a smaller body limit", Rules{Limits: Limits{MaxBodySize: 10}}, post("plain.example", 11), 413, "larger than the limit"},
		{"no body limit", Rules{Limits: Limits{MaxBodySize: -1}}, post("plain.example", 1<<40), 0, ""},
		{"permanent redirect", Rules{RedirectCode: 301, RedirectURL: "https://new.example/"}, get("plain.example", "/x"), 301, ""},
		{"access before the redirect", Rules{RedirectCode: 301, RedirectURL: "https://new.example/", Deny: prefixes("192.0.2.0/24")}, from("192.0.2.7:1", get("plain.example", "/x")), 403, "denied"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg.Rules = map[string]*Rules{"ns/plain": &c.rules, "ns/shop": &c.rules}
			x := decide(c.req)
			if c.status == 0 {
				if x.Outcome != Forward {
					t.Fatalf("outcome %d status %d %q, want it forwarded", x.Outcome, x.Status, x.Body)
				}
				return
			}
			if x.Outcome != Answer || x.Status != c.status || !strings.Contains(x.Body, c.reason) {
				t.Errorf("answer %d %q, want %d with %q", x.Status, x.Body, c.status, c.reason)
			}
		})
	}

	// Limits, tries and retried failures: the Ingress's over the proxy's,
	// field by field, on its routes only.
	cfg.Rules = map[string]*Rules{"ns/plain": {Limits: Limits{ReadTimeout: 3 * time.Second}, Tries: 1, NextUpstream: NextOnError | NextOnTimeout | NextOnInvalidHeader}}
	x := decide(get("plain.example", "/"))
	def := p.Settings().Limits
	if x.Limits.ReadTimeout != 3*time.Second || x.Limits.ConnectTimeout != def.ConnectTimeout || x.Limits.MaxBodySize != def.MaxBodySize {
		t.Errorf("limits %+v, want the read timeout of the Ingress and the rest the proxy's", x.Limits)
	}
	if x.Retry(FailConnect) {
		t.Error("retried with one try allowed")
	}
	if x = decide(get("shop.example", "/")); x.Outcome != Answer || x.Status != 308 {
		t.Fatalf("shop: %d, want its redirect", x.Status)
	}
	x = decide(from("192.0.2.7:1", &Request{Method: "GET", Target: "/", Host: "shop.example", Proto: HTTP11, TLS: true}))
	if x.Limits != def || !x.Retry(FailConnect) {
		t.Errorf("another Ingress's route got the rules: %+v", x.Limits)
	}
	cfg.Rules = map[string]*Rules{"ns/plain": {NextUpstream: NextOnInvalidHeader}}
	if x = decide(get("plain.example", "/")); x.Retry(FailTimeout) || !x.Retry(FailInvalid) {
		t.Error("the Ingress's proxy-next-upstream is not the one followed")
	}
}

func post(host string, n int64) *Request {
	return &Request{Method: "POST", Target: "/", Host: host, Proto: HTTP11, BodyLength: n, HasLength: true, Client: client}
}

// Redirects an Ingress asks for: where and with which code, the HTTPS one
// forced without TLS in the routes, a trusted proxy's X-Forwarded-Proto
// believed and an untrusted one not, and the ACME challenge path never
// sent to HTTPS.
func TestRedirects(t *testing.T) {
	cfg := testConfig(t)
	trustedPeer := netip.MustParseAddrPort("10.1.0.1:5000")
	p := NewPolicy(Settings{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}})
	tls := func(r *Request) *Request { r.TLS = true; return r }
	viaProxy := func(r *Request) *Request { r.Client = trustedPeer; return r }
	for _, c := range []struct {
		name     string
		rules    *Rules
		req      *Request
		status   int // 0: forwarded
		location string
	}{
		{"permanent", &Rules{RedirectCode: 301, RedirectURL: "https://new.example/"}, get("plain.example", "/x?y"), 301, "https://new.example/"},
		{"temporal over TLS too", &Rules{RedirectCode: 302, RedirectURL: "https://new.example/a"}, tls(get("plain.example", "/")), 302, "https://new.example/a"},
		{"force-ssl-redirect without TLS in the routes", &Rules{ForceSSLRedirect: true}, get("plain.example:8080", "/p?q=1"), 308, "https://plain.example/p?q=1"},
		{"force-ssl-redirect, already HTTPS", &Rules{ForceSSLRedirect: true}, tls(get("plain.example", "/")), 0, ""},
		{"force-ssl-redirect, HTTPS ended at a trusted proxy", &Rules{ForceSSLRedirect: true},
			viaProxy(get("plain.example", "/", f("X-Forwarded-Proto", "https"))), 0, ""},
		{"force-ssl-redirect, an untrusted client's X-Forwarded-Proto", &Rules{ForceSSLRedirect: true},
			get("plain.example", "/", f("X-Forwarded-Proto", "https")), 308, "https://plain.example/"},
		{"TLS host, HTTPS ended at a trusted proxy", nil, viaProxy(get("shop.example", "/", f("X-Forwarded-Proto", "HTTPS"))), 0, ""},
		{"TLS host, ACME challenge", nil, get("shop.example", "/.well-known/acme-challenge/token"), 0, ""},
		{"forced, ACME challenge", &Rules{ForceSSLRedirect: true}, get("plain.example", "/.well-known/acme-challenge/token"), 0, ""},
		{"TLS host, not quite the ACME path", nil, get("shop.example", "/.well-known/acme-challenge"), 308, "https://shop.example/.well-known/acme-challenge"},
		{"app-root", &Rules{AppRoot: "/app1"}, get("plain.example", "/"), 302, "http://plain.example/app1"},
		{"app-root over TLS", &Rules{AppRoot: "/app1"}, tls(get("plain.example", "/")), 302, "https://plain.example/app1"},
		{"app-root, another path", &Rules{AppRoot: "/app1"}, get("plain.example", "/other"), 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg.Rules = nil
			if c.rules != nil {
				cfg.Rules = map[string]*Rules{"ns/plain": c.rules, "ns/shop": c.rules}
			}
			var x Exchange
			p.Decide(cfg, c.req, time.Now(), &x)
			if c.status == 0 {
				if x.Outcome != Forward {
					t.Fatalf("answered %d %q, want it forwarded", x.Status, x.Body)
				}
				return
			}
			var loc string
			for _, fl := range x.AnswerFields(time.Now()) {
				if fl.Name == "Location" {
					loc = fl.Value
				}
			}
			if x.Outcome != Answer || x.Status != c.status || loc != c.location {
				t.Errorf("%d Location %q, want %d %q", x.Status, loc, c.status, c.location)
			}
		})
	}
}

// rewrite-target on regex paths, as ingress-nginx's documented examples
// use it: groups into the new path, the query kept, a group escaped again,
// and a rewrite that would make a dot segment refused.
func TestRewrite(t *testing.T) {
	tab, rej := route.Build([]route.Ingress{
		{Namespace: "ns", Name: "rw", RewriteTarget: "/$2", Rules: []route.Rule{{Host: "rw.example", Paths: []route.Path{
			{Path: "/something(/|$)(.*)", Backend: svc("web")},
		}}}},
		{Namespace: "ns", Name: "static", RewriteTarget: "/static/$1", Rules: []route.Rule{{Host: "static.example", Paths: []route.Path{
			{Path: "/assets(.*)", Backend: svc("web")},
		}}}},
		{Namespace: "ns", Name: "root", RewriteTarget: "/", Rules: []route.Rule{{Host: "root.example", Paths: []route.Path{
			{Path: "/a", Backend: svc("web")},
		}}}},
		{Namespace: "ns", Name: "query", RewriteTarget: "/search?from=ingress", Rules: []route.Rule{{Host: "query.example", Paths: []route.Path{
			{Path: "/find", Backend: svc("web")},
		}}}},
	})
	if len(rej) > 0 {
		t.Fatal(rej)
	}
	cfg := &Config{Routes: tab, Upstreams: map[Target]*Upstream{target("web"): NewUpstream("10.0.0.1:80")}}
	p := NewPolicy(Settings{})
	for _, c := range []struct {
		host, target string
		status       int // 0: forwarded
		out          string
	}{
		{"rw.example", "/something", 0, "/"},
		{"rw.example", "/something/", 0, "/"},
		{"rw.example", "/something/new?a=1", 0, "/new?a=1"},
		{"rw.example", "/SOMETHING/new", 0, "/new"}, // ~*: case-insensitive
		{"rw.example", "/something/a%20b", 0, "/a%20b"},
		{"rw.example", "/something/%3F", 0, "/%3F"},
		{"rw.example", "/somethingelse", 404, ""},
		{"static.example", "/assets/app.js", 0, "/static//app.js"},
		{"static.example", "/assets../secret", 400, ""},
		{"root.example", "/a/b/c", 0, "/"},
		{"query.example", "/find?q=x", 0, "/search?from=ingress&q=x"},
		{"query.example", "/find", 0, "/search?from=ingress"},
	} {
		var x Exchange
		p.Decide(cfg, get(c.host, c.target), time.Now(), &x)
		if c.status != 0 {
			if x.Outcome != Answer || x.Status != c.status {
				t.Errorf("%s%s: %d %q, want %d", c.host, c.target, x.Status, x.Body, c.status)
			}
			continue
		}
		if x.Outcome != Forward || x.Out.Target != c.out {
			t.Errorf("%s%s: outcome %d (%d %q), target upstream %q, want %q", c.host, c.target, x.Outcome, x.Status, x.Body, x.Out.Target, c.out)
		}
	}
}

// Behind trusted proxies, the allowlist judges the address their
// X-Forwarded-For names (the nearest untrusted hop), never a client's own
// claim.
func TestRulesBehindTrustedProxies(t *testing.T) {
	cfg := testConfig(t)
	cfg.Rules = map[string]*Rules{"ns/plain": {Allow: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}}
	p := NewPolicy(Settings{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	for _, c := range []struct {
		name, peer string
		xff        []string
		allowed    bool
	}{
		{"through the proxy", "10.0.0.5:1", []string{"203.0.113.7"}, true},
		{"through two proxies", "10.0.0.5:1", []string{"203.0.113.7, 10.1.1.1"}, true},
		{"a client's own claim in front", "10.0.0.5:1", []string{"203.0.113.7, 198.51.100.1"}, false},
		{"a claim in an earlier field", "10.0.0.5:1", []string{"203.0.113.7", "198.51.100.1"}, false},
		{"not through the proxy", "198.51.100.1:1", []string{"203.0.113.7"}, false},
		{"garbage", "10.0.0.5:1", []string{"203.0.113.7, not-an-ip"}, false},
		{"only proxies", "10.0.0.5:1", []string{"10.2.2.2"}, false},
	} {
		req := get("plain.example", "/")
		req.Client = netip.MustParseAddrPort(c.peer)
		for _, v := range c.xff {
			req.Fields = append(req.Fields, f("X-Forwarded-For", v))
		}
		var x Exchange
		p.Decide(cfg, req, time.Now(), &x)
		if got := x.Outcome == Forward; got != c.allowed {
			t.Errorf("%s: forwarded %v (%d), want %v", c.name, got, x.Status, c.allowed)
		}
	}
}

// upstream-vhost changes the Host sent upstream and not X-Forwarded-Host;
// x-forwarded-prefix replaces a client's own.
func TestRulesHead(t *testing.T) {
	cfg := testConfig(t)
	cfg.Rules = map[string]*Rules{"ns/plain": {UpstreamHost: "internal.svc", ForwardedPrefix: "/app"}}
	var x Exchange
	NewPolicy(Settings{}).Decide(cfg, get("plain.example", "/", f("X-Forwarded-Prefix", "/evil")), time.Now(), &x)
	if x.Outcome != Forward || x.Out.Host != "internal.svc" {
		t.Fatalf("Host upstream %q, want internal.svc", x.Out.Host)
	}
	var prefixes, fwdHost []string
	for _, fl := range x.Out.Fields {
		switch fl.Name {
		case "X-Forwarded-Prefix":
			prefixes = append(prefixes, fl.Value)
		case "X-Forwarded-Host":
			fwdHost = append(fwdHost, fl.Value)
		}
	}
	if len(prefixes) != 1 || prefixes[0] != "/app" || len(fwdHost) != 1 || fwdHost[0] != "plain.example" {
		t.Errorf("X-Forwarded-Prefix %q, X-Forwarded-Host %q; want [/app] and [plain.example]", prefixes, fwdHost)
	}
}
