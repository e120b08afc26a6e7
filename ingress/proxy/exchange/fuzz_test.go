package exchange

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// FuzzDecide: whatever a client sends, Decide never panics, and what it
// forwards is safe to forward: a target in origin form with no blank or
// control byte, whose path the route judged decoded, with no dot segment
// and no encoded '/'; a request head with no hop-by-hop field, no name with
// '_', one X-Forwarded-For ending with the client, and one X-Request-ID.
func FuzzDecide(f *testing.F) {
	for _, s := range []string{"/", "/a/b?c", "/a/../b", "/%2e%2e/", "/a%2Fb", "a", "", "/a/.", "//x", "/a%00", "/%zz", "*", "/a b", "/ä"} {
		f.Add("GET", s, "plain.example", "X-A", "1")
	}
	f.Add("POST", "/x", "shop.example", "Connection", "X-A")
	f.Add("GET", "/x", "plain.example:8080", "X_Forwarded_For", "6.6.6.6")
	f.Add("GET", "/x", "plain.example", "Upgrade", "websocket")
	cfg := testConfig(f)
	p := NewPolicy(Settings{})
	var x Exchange
	f.Fuzz(func(t *testing.T, method, target, host, name, value string) {
		req := &Request{Method: method, Target: target, Host: host, Proto: HTTP11, Client: client,
			Fields: []h1.Field{{Name: name, Value: value}, {Name: "Connection", Value: value}}, ConnNames: true, Upgrade: value}
		p.Decide(cfg, req, time.Now(), &x)
		if x.Outcome == Answer {
			if x.Status < 200 || x.Status > 599 {
				t.Fatalf("answered %d", x.Status)
			}
			return
		}
		path := x.Record.Path
		if !strings.HasPrefix(x.Out.Target, "/") || x.Out.Target != target || !strings.HasPrefix(path, "/") {
			t.Fatalf("forwarded target %q (path %q) of %q", x.Out.Target, path, target)
		}
		for _, c := range []byte(target) {
			if c <= ' ' || c == 0x7f || c == '#' {
				t.Fatalf("forwarded %q, which holds %q", target, c)
			}
		}
		escaped, _, _ := strings.Cut(target, "?")
		if decoded, err := url.PathUnescape(escaped); err != nil || decoded != path {
			t.Fatalf("path %q routed for %q, which decodes to %q (%v)", path, target, decoded, err)
		}
		if strings.Contains(strings.ToLower(escaped), "%2f") {
			t.Fatalf("forwarded %q, which holds an encoded slash", target)
		}
		for _, seg := range strings.Split(path, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("forwarded %q, whose path has a dot segment", target)
			}
		}
		xff, ids := 0, 0
		for _, fl := range x.Out.Fields {
			switch {
			case hopByHop(fl.Name) && !(x.Outcome == Tunnel && (h1.Is(fl.Name, "Connection") || h1.Is(fl.Name, "Upgrade"))) && !h1.Is(fl.Name, "Te"):
				t.Fatalf("forwarded the hop-by-hop %q", fl.Name)
			case strings.Contains(fl.Name, "_"):
				t.Fatalf("forwarded %q", fl.Name)
			case h1.Is(fl.Name, "X-Forwarded-For"):
				xff++
				if fl.Value != "192.0.2.7" {
					t.Fatalf("X-Forwarded-For %q from an untrusted client", fl.Value)
				}
			case h1.Is(fl.Name, "X-Request-Id"):
				ids++
			}
		}
		if xff != 1 || ids != 1 {
			t.Fatalf("%d X-Forwarded-For and %d X-Request-ID fields: %v", xff, ids, x.Out.Fields)
		}
	})
}
