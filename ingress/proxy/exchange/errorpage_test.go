package exchange

import (
	"strconv"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// errorConfig is testConfig with error pages on plain.example: 404 and 502
// go to the Service "errors", which has two endpoints.
func errorConfig(t testing.TB, pages ErrorPages) *Config {
	cfg := testConfig(t)
	cfg.Upstreams[target("errors")] = NewUpstream("10.0.9.1:8080", "10.0.9.2:8080")
	if pages.Backend == (Target{}) {
		pages.Backend = target("errors")
	}
	cfg.Rules = map[string]*Rules{"ns/plain": {Errors: &pages}}
	return cfg
}

func TestErrorPagesIntercept(t *testing.T) {
	cfg := errorConfig(t, ErrorPages{Codes: []int{404, 502, 503}})
	p := NewPolicy(Settings{})
	errUp := cfg.Upstreams[target("errors")]
	for _, c := range []struct {
		name      string
		method    string
		status    int  // what the endpoint answers
		intercept bool // want
		out       string
	}{
		{"listed code", "GET", 404, true, "GET"},
		{"a POST's error page is a GET", "POST", 404, true, "GET"},
		{"HEAD stays HEAD", "HEAD", 503, true, "HEAD"},
		{"success", "GET", 200, false, ""},
		{"code not listed", "GET", 500, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var x Exchange
			req := &Request{Method: c.method, Target: "/shop/item?id=7", Host: "plain.example", Proto: HTTP11, Client: client,
				Fields: []h1.Field{f("Accept", "application/json"), f("X-Code", "999"), f("X-Request-ID", "req-1")}}
			if c.method == "POST" {
				req.BodyLength, req.HasLength = 5, true
			}
			p.Decide(cfg, req, time.Now(), &x)
			if x.Outcome != Forward || x.Target != target("web") {
				t.Fatalf("outcome %d target %v", x.Outcome, x.Target)
			}
			if !(x.Judge(c.status, "") == 0) {
				t.Fatalf("status %d not accepted", c.status)
			}
			if got := x.Intercept(c.status); got != c.intercept {
				t.Fatalf("Intercept(%d) = %v, want %v", c.status, got, c.intercept)
			}
			if !c.intercept {
				if x.Target != target("web") || x.Out.Target != "/shop/item?id=7" {
					t.Errorf("a refused interception changed the plan: %v %+v", x.Target, x.Out)
				}
				return
			}
			if x.Outcome != Forward || x.Target != target("errors") || x.Upstream != errUp || x.Record.Target != target("errors") {
				t.Errorf("re-planned: outcome %d target %v", x.Outcome, x.Target)
			}
			if x.Out.Method != c.out || x.Out.Target != "/" || x.Out.Host != "plain.example" || x.Out.Body {
				t.Errorf("out %+v: want %s / to plain.example without a body", x.Out, c.out)
			}
			for name, want := range map[string]string{
				"X-Code": strconv.Itoa(c.status), "X-Format": "application/json", "X-Original-URI": "/shop/item?id=7",
				"X-Namespace": "ns", "X-Ingress-Name": "plain", "X-Service-Name": "web", "X-Service-Port": "80",
				"X-Request-ID": "req-1",
			} {
				if got := value(x.Out.Fields, name); got != want {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
			if addr, _ := x.Endpoint(); addr != "10.0.9.1:8080" && addr != "10.0.9.2:8080" {
				t.Errorf("endpoint %s is not the error backend's", addr)
			}
			if x.Record.Attempts != 2 {
				t.Errorf("attempts %d, want 2", x.Record.Attempts)
			}
			// Once: the error backend's own 404 is the client's.
			if !(x.Judge(c.status, "") == 0) || x.Intercept(c.status) {
				t.Errorf("intercepted twice")
			}
		})
	}
}

// The proxy's own failures go to the error backend too, also when the
// endpoints' answers are not intercepted.
func TestErrorPagesOwnFailures(t *testing.T) {
	for _, noIntercept := range []bool{false, true} {
		cfg := errorConfig(t, ErrorPages{Codes: []int{404, 502}, NoIntercept: noIntercept})
		var x Exchange
		NewPolicy(Settings{}).Decide(cfg, get("plain.example", "/a"), time.Now(), &x)
		if x.Judge(404, ""); x.Intercept(404) == noIntercept {
			t.Errorf("noIntercept %v: the endpoint's 404 intercepted %v", noIntercept, !noIntercept)
		}
		NewPolicy(Settings{}).Decide(cfg, get("plain.example", "/a"), time.Now(), &x)
		for x.Retry(FailConnect) {
		}
		if x.Status != 502 || !x.Intercept(502) {
			t.Fatalf("noIntercept %v: the proxy's 502 not intercepted (status %d)", noIntercept, x.Status)
		}
		if x.Outcome != Forward || x.Status != 0 || x.Body != "" || value(x.Out.Fields, "X-Code") != "502" {
			t.Errorf("after the 502: outcome %d status %d body %q X-Code %q", x.Outcome, x.Status, x.Body, value(x.Out.Fields, "X-Code"))
		}
		// The error backend failing too: the proxy's answer, no loop.
		for x.Retry(FailConnect) {
		}
		if x.Status != 502 || x.Intercept(502) {
			t.Errorf("the error backend's failure was intercepted")
		}
	}
	// A client that left is not answered at all.
	cfg := errorConfig(t, ErrorPages{Codes: []int{502}})
	var x Exchange
	NewPolicy(Settings{}).Decide(cfg, get("plain.example", "/a"), time.Now(), &x)
	for x.Retry(FailConnect) {
	}
	x.ClientGone()
	if x.Status != 502 || x.Intercept(x.Status) {
		t.Errorf("intercepted for a client that left")
	}
}

// A route's Service without endpoints: the request goes to the error
// backend as it is.
func TestErrorPagesFallback(t *testing.T) {
	cfg := errorConfig(t, ErrorPages{})
	var x Exchange
	req := &Request{Method: "POST", Target: "/empty/x?y", Host: "plain.example", Proto: HTTP11, Client: client, BodyLength: 3, HasLength: true}
	NewPolicy(Settings{}).Decide(cfg, req, time.Now(), &x)
	if x.Outcome != Forward || x.Target != target("errors") || x.Upstream != cfg.Upstreams[target("errors")] {
		t.Fatalf("outcome %d target %v, want the error backend", x.Outcome, x.Target)
	}
	if x.Out.Method != "POST" || x.Out.Target != "/empty/x?y" || !x.Out.Body {
		t.Errorf("out %+v: want the request as it is", x.Out)
	}
	if value(x.Out.Fields, "X-Code") != "503" || value(x.Out.Fields, "X-Service-Name") != "empty" || value(x.Out.Fields, "X-Ingress-Name") != "plain" {
		t.Errorf("fields %v", x.Out.Fields)
	}
	if x.Judge(404, ""); x.Intercept(404) {
		t.Errorf("the fallback's answer was intercepted")
	}
	// No endpoint for the error backend either: the proxy's 503.
	cfg.Upstreams[target("errors")] = NewUpstream()
	NewPolicy(Settings{}).Decide(cfg, req, time.Now(), &x)
	if x.Outcome != Answer || x.Status != 503 {
		t.Errorf("outcome %d status %d, want 503", x.Outcome, x.Status)
	}
	// Nor are answers intercepted then.
	cfg.Rules["ns/plain"].Errors.Codes = []int{404}
	NewPolicy(Settings{}).Decide(cfg, get("plain.example", "/"), time.Now(), &x)
	if x.Judge(404, ""); x.Intercept(404) {
		t.Errorf("intercepted toward an error backend without endpoints")
	}
}

// WebSocket handshakes and HTTP/2 endpoints (gRPC) are left alone.
func TestErrorPagesLeftAlone(t *testing.T) {
	cfg := errorConfig(t, ErrorPages{Codes: []int{404}})
	p := NewPolicy(Settings{})
	var x Exchange
	p.Decide(cfg, &Request{Method: "GET", Target: "/", Host: "plain.example", Proto: HTTP11, Client: client, Upgrade: "websocket",
		Fields: []h1.Field{f("Connection", "upgrade"), f("Upgrade", "websocket")}}, time.Now(), &x)
	if x.Outcome != Tunnel || (x.Judge(404, "") == 0) && x.Intercept(404) {
		t.Errorf("a WebSocket handshake's 404 was intercepted")
	}
	tab, _ := route.Build([]route.Ingress{{Namespace: "ns", Name: "plain", Protocol: route.GRPC,
		Rules: []route.Rule{{Host: "plain.example", Paths: []route.Path{{Path: "/", Type: route.Prefix, Backend: svc("web")}}}}}})
	cfg.Routes = tab
	cfg.Upstreams[Target{Namespace: "ns", Service: "web", Port: route.Port{Number: 80}, Protocol: route.GRPC}] = NewUpstream("10.0.0.1:80")
	p.Decide(cfg, &Request{Method: "POST", Target: "/", Host: "plain.example", Proto: HTTP2, Client: client, BodyLength: -1}, time.Now(), &x)
	if x.Outcome != Forward || x.Target.Protocol != route.GRPC {
		t.Fatalf("outcome %d target %v", x.Outcome, x.Target)
	}
	if (x.Judge(404, "") == 0) && x.Intercept(404) {
		t.Errorf("a gRPC answer was intercepted")
	}
	// A route without error pages.
	p.Decide(testConfig(t), get("plain.example", "/"), time.Now(), &x)
	if (x.Judge(404, "") == 0) && x.Intercept(404) {
		t.Errorf("intercepted without error pages")
	}
}
