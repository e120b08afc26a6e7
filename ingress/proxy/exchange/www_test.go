package exchange

import (
	"time"

	"testing"

	"github.com/portico-lb/portico/ingress/route"
)

var start0 = time.Unix(1700000000, 0)

func TestFromToWWW(t *testing.T) {
	tab, rej := route.Build([]route.Ingress{{Namespace: "ns", Name: "bare", FromToWWW: true,
		Rules: []route.Rule{{Host: "example.com", Paths: []route.Path{{Path: "/", Type: route.Prefix, Backend: svc("web")}}}},
		TLS:   []route.TLS{{Hosts: []string{"example.com"}, SecretName: "tls"}}}})
	if len(rej) > 0 {
		t.Fatal(rej)
	}
	cfg := &Config{Routes: tab, Upstreams: map[Target]*Upstream{target("web"): NewUpstream("10.0.0.1:80")}}
	p := NewPolicy(Settings{})
	for _, c := range []struct {
		name     string
		req      *Request
		status   int
		location string
	}{
		{"plain HTTP keeps its scheme", get("www.example.com", "/a?b=1"), 308, "http://example.com/a?b=1"},
		{"HTTPS", func() *Request { r := get("www.example.com", "/"); r.TLS = true; return r }(), 308, "https://example.com/"},
		{"the port is kept", get("WWW.example.com:8080", "/x"), 308, "http://example.com:8080/x"},
		{"any path, routed or not", get("www.example.com", "/%7Euser"), 308, "http://example.com/%7Euser"},
		{"an ACME challenge is served", get("www.example.com", "/.well-known/acme-challenge/tok"), 0, ""},
		{"the rule host itself over HTTP goes to HTTPS", get("example.com", "/"), 308, "https://example.com/"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var x Exchange
			p.Decide(cfg, c.req, start0, &x)
			if c.status == 0 {
				if x.Outcome != Forward {
					t.Fatalf("outcome %v status %d, want it forwarded", x.Outcome, x.Status)
				}
				return
			}
			if x.Outcome != Answer || x.Status != c.status || value(x.AnswerFields(start0), "Location") != c.location {
				t.Errorf("got %v %d Location %q, want %d %q", x.Outcome, x.Status, value(x.AnswerFields(start0), "Location"), c.status, c.location)
			}
			if x.Record.Route != "ns/bare" {
				t.Errorf("Record.Route = %q, want ns/bare", x.Record.Route)
			}
		})
	}
}
