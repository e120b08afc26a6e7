package exchange

import (
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/route"
)

// A route's canary takes a request by header, then cookie, then weight,
// as ingress-nginx's canary annotations say; the main route's own rules
// (here: its allowlist) apply to the canary's requests too.
func TestCanary(t *testing.T) {
	build := func(c route.Canary) *Config {
		canary := route.Ingress{Namespace: "ns", Name: "canary", Canary: &c, Rules: []route.Rule{{Host: "c.example", Paths: []route.Path{
			{Path: "/", Type: route.Prefix, Backend: svc("new")}}}}}
		main := route.Ingress{Namespace: "ns", Name: "main", Rules: []route.Rule{{Host: "c.example", Paths: []route.Path{
			{Path: "/", Type: route.Prefix, Backend: svc("web")}}}}}
		tab, rej := route.Build([]route.Ingress{canary, main})
		if len(rej) > 0 {
			t.Fatal(rej)
		}
		return &Config{Routes: tab, Upstreams: map[Target]*Upstream{target("web"): NewUpstream("10.0.0.1:80"), target("new"): NewUpstream("10.0.0.9:80")}}
	}
	p := NewPolicy(Settings{})
	to := func(cfg *Config, req *Request) string {
		var x Exchange
		p.Decide(cfg, req, time.Now(), &x)
		if x.Outcome != Forward {
			return "answer"
		}
		return x.Target.Service + " " + x.Record.Route
	}
	const main, canary = "web ns/main", "new ns/canary"
	byHeader := build(route.Canary{Header: "X-Canary", Cookie: "canary", Weight: 100, WeightTotal: 100})
	for _, c := range []struct {
		name string
		req  *Request
		want string
	}{
		{"header always", get("c.example", "/", f("x-canary", "always")), canary},
		{"header never beats the cookie and the weight", get("c.example", "/", f("X-Canary", "never"), f("Cookie", "canary=always")), main},
		{"cookie never beats the weight", get("c.example", "/", f("Cookie", "a=1; canary=never")), main},
		{"another header value falls through to the cookie", get("c.example", "/", f("X-Canary", "maybe"), f("Cookie", "canary=never")), main},
		{"the weight decides the rest", get("c.example", "/"), canary},
	} {
		if got := to(byHeader, c.req); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	byValue := build(route.Canary{Header: "X-Canary", HeaderValue: "v2", WeightTotal: 100})
	if got := to(byValue, get("c.example", "/", f("X-Canary", "v2"))); got != canary {
		t.Errorf("header value v2: %s", got)
	}
	if got := to(byValue, get("c.example", "/", f("X-Canary", "always"))); got != main {
		t.Errorf("header value set, \"always\" is just another value: %s", got)
	}

	// Weight 30 of 100: about 30% of 20,000 requests.
	weighted := build(route.Canary{Weight: 30, WeightTotal: 100})
	n := 0
	for range 20000 {
		if to(weighted, get("c.example", "/")) == canary {
			n++
		}
	}
	if n < 5400 || n > 6600 {
		t.Errorf("weight 30%%: %d of 20000 to the canary", n)
	}

	// The main route's rules hold for the canary's requests.
	byHeader.Rules = map[string]*Rules{"ns/main": {Refuse: "closed"}}
	if got := to(byHeader, get("c.example", "/", f("X-Canary", "always"))); got != "answer" {
		t.Errorf("the main route refuses, the canary served: %s", got)
	}
}
