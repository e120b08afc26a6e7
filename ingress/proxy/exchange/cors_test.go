package exchange

import (
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

func TestCORSOrigins(t *testing.T) {
	c := &CORS{Origins: []string{"https://app.example", "https://*.example.org", "http://localhost:3000"}}
	for origin, want := range map[string]string{
		"https://app.example":           "https://app.example",
		"HTTPS://APP.example":           "HTTPS://APP.example",
		"https://app.example.evil":      "",
		"http://app.example":            "",
		"https://a.example.org":         "https://a.example.org",
		"https://a.b.example.org":       "",
		"https://.example.org":          "",
		"https://example.org":           "",
		"https://evil.com/.example.org": "",
		"http://localhost:3000":         "http://localhost:3000",
		"":                              "",
		"null":                          "",
	} {
		if got := c.allows(origin); got != want {
			t.Errorf("Origin %q: %q, want %q", origin, got, want)
		}
	}
	if got := (&CORS{Origins: []string{"*"}}).allows("https://x.example"); got != "*" {
		t.Errorf("any origin: %q", got)
	}
	if got := (&CORS{Origins: []string{}}).allows("https://x.example"); got != "" {
		t.Errorf("no origin allowed (a bad list): %q", got)
	}
}

// A preflight from an allowed origin is answered by the proxy; another
// request from it is forwarded and its answer carries the route's fields,
// which replace the endpoint's own; a request from another origin gets
// none.
func TestCORSAnswers(t *testing.T) {
	cfg := testConfig(t)
	cfg.Rules = map[string]*Rules{"ns/plain": {CORS: &CORS{Origins: []string{"https://app.example"}, Methods: "GET, POST", Headers: "X-A", Expose: "X-B", MaxAge: "60", Credentials: true}}}
	p := NewPolicy(Settings{})
	fieldsOf := func(fs []h1.Field) string {
		var b strings.Builder
		for _, f := range fs {
			if strings.HasPrefix(f.Name, "Access-Control-") || f.Name == "Vary" {
				b.WriteString(f.Name + ": " + f.Value + "\n")
			}
		}
		return b.String()
	}
	var x Exchange
	pre := &Request{Method: "OPTIONS", Target: "/", Host: "plain.example", Proto: HTTP11, Client: client,
		Fields: []h1.Field{f("Origin", "https://app.example"), f("Access-Control-Request-Method", "POST")}}
	p.Decide(cfg, pre, time.Now(), &x)
	want := "Access-Control-Allow-Origin: https://app.example\nVary: Origin\nAccess-Control-Allow-Credentials: true\nAccess-Control-Allow-Methods: GET, POST\nAccess-Control-Allow-Headers: X-A\nAccess-Control-Max-Age: 60\n"
	if x.Outcome != Answer || x.Status != 204 || fieldsOf(x.AnswerFields(time.Now())) != want {
		t.Errorf("preflight: %d\n%s, want 204\n%s", x.Status, fieldsOf(x.AnswerFields(time.Now())), want)
	}

	p.Decide(cfg, get("plain.example", "/", f("Origin", "https://app.example")), time.Now(), &x)
	if x.Outcome != Forward {
		t.Fatalf("a GET with an Origin: %d", x.Status)
	}
	res := &h1.Response{Status: 200, Fields: []h1.Field{f("Access-Control-Allow-Origin", "*"), f("Content-Type", "text/html")}}
	want = "Access-Control-Allow-Origin: https://app.example\nVary: Origin\nAccess-Control-Allow-Credentials: true\nAccess-Control-Allow-Methods: GET, POST\nAccess-Control-Allow-Headers: X-A\nAccess-Control-Expose-Headers: X-B\n"
	if got := fieldsOf(x.ResponseFields(res, time.Now())); got != want {
		t.Errorf("answer fields:\n%s, want\n%s", got, want)
	}

	for _, req := range []*Request{
		get("plain.example", "/", f("Origin", "https://evil.example")),
		{Method: "OPTIONS", Target: "/", Host: "plain.example", Proto: HTTP11, Client: client, Fields: []h1.Field{f("Origin", "https://evil.example")}},
		get("shop.example", "/", f("Origin", "https://app.example")),
	} {
		req.TLS = true
		p.Decide(cfg, req, time.Now(), &x)
		if x.Outcome != Forward {
			t.Fatalf("%s %s from %v: %d, want it forwarded untouched", req.Method, req.Host, req.Fields, x.Status)
		}
		if got := fieldsOf(x.ResponseFields(res, time.Now())); got != "Access-Control-Allow-Origin: *\n" {
			t.Errorf("%s %s from %v: %q, want the endpoint's own field only", req.Method, req.Host, req.Fields, got)
		}
	}
}
