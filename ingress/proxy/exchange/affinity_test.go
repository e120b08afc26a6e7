package exchange

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// decideSticky decides a GET to plain.example with cookie (if any) under
// affinity a, and returns the endpoint and the Set-Cookie of its answer.
func decideSticky(t *testing.T, cfg *Config, a *Affinity, cookieField string, tls bool) (endpoint, setCookie string) {
	t.Helper()
	cfg.Rules = map[string]*Rules{"ns/plain": {Affinity: a}}
	req := get("plain.example", "/x")
	req.TLS = tls
	if cookieField != "" {
		req.Fields = []h1.Field{{Name: "Cookie", Value: cookieField}}
	}
	var x Exchange
	NewPolicy(Settings{}).Decide(cfg, req, time.Now(), &x)
	if x.Outcome != Forward {
		t.Fatalf("outcome %v, status %d", x.Outcome, x.Status)
	}
	endpoint, _ = x.Endpoint()
	return endpoint, value(x.ResponseFields(&h1.Response{Status: 200}, time.Unix(1700000000, 0)), "Set-Cookie")
}

func cookieOf(t *testing.T, setCookie string) *http.Cookie {
	t.Helper()
	c, err := http.ParseSetCookie(setCookie)
	if err != nil {
		t.Fatalf("Set-Cookie %q: %v", setCookie, err)
	}
	return c
}

func TestAffinity(t *testing.T) {
	for _, persistent := range []bool{true, false} {
		t.Run(fmt.Sprint("persistent=", persistent), func(t *testing.T) {
			cfg := testConfig(t)
			a := &Affinity{Cookie: "INGRESSCOOKIE", Persistent: persistent}
			first, set := decideSticky(t, cfg, a, "", false)
			c := cookieOf(t, set)
			if c.Name != "INGRESSCOOKIE" || c.Value == "" || strings.Contains(c.Value, "10.0.0") || c.Path != "/" || !c.HttpOnly || c.Secure {
				t.Fatalf("first answer's cookie %q: want INGRESSCOOKIE, a hash, Path=/, HttpOnly, not Secure", set)
			}
			for range 10 {
				if ep, set := decideSticky(t, cfg, a, "a=b; INGRESSCOOKIE="+c.Value, false); ep != first || set != "" {
					t.Fatalf("with the cookie: endpoint %s (first %s), Set-Cookie %q; want the same endpoint and no cookie", ep, first, set)
				}
			}
			// The endpoint goes: another one; persistent, a new cookie naming
			// it; balanced, the session key maps to it.
			var rest []string
			for _, e := range cfg.Upstreams[target("web")].Addrs {
				if e != first {
					rest = append(rest, e)
				}
			}
			cfg.Upstreams[target("web")] = NewUpstream(rest...)
			ep, set := decideSticky(t, cfg, a, "INGRESSCOOKIE="+c.Value, false)
			if ep == first || persistent && set == "" {
				t.Fatalf("the endpoint gone: endpoint %s, Set-Cookie %q; want another endpoint and, persistent, a new cookie", ep, set)
			}
			if !persistent && set != "" {
				t.Errorf("balanced: the session key %q still holds, yet the answer sets %q", c.Value, set)
			}
			if set != "" {
				c = cookieOf(t, set)
			}
			if again, _ := decideSticky(t, cfg, a, "INGRESSCOOKIE="+c.Value, false); again != ep {
				t.Errorf("the cookie now leads to %s, want %s", again, ep)
			}
		})
	}
}

func TestAffinityCookieAttributes(t *testing.T) {
	cfg := testConfig(t)
	_, set := decideSticky(t, cfg, &Affinity{Cookie: "route", Path: "/app", MaxAge: 3600, Expires: 7200, SameSite: "Strict", Persistent: true}, "", true)
	want := "route=%s; Expires=Wed, 15 Nov 2023 00:13:20 GMT; Max-Age=3600; Path=/app; Secure; HttpOnly; SameSite=Strict"
	c := cookieOf(t, set)
	if set != fmt.Sprintf(want, c.Value) {
		t.Errorf("Set-Cookie %q,\nwant %q", set, fmt.Sprintf(want, c.Value))
	}
	_, set = decideSticky(t, cfg, &Affinity{Cookie: "route", Secure: false, SecureSet: true}, "", true)
	if cookieOf(t, set).Secure {
		t.Errorf("session-cookie-secure false over TLS: %q is Secure", set)
	}
	_, set = decideSticky(t, cfg, &Affinity{Cookie: "route", Secure: true, SecureSet: true}, "", false)
	if !cookieOf(t, set).Secure {
		t.Errorf("session-cookie-secure true over plain HTTP: %q is not Secure", set)
	}
}

// A failed attempt: the session's endpoint again by default, another one
// with ChangeOnFailure, and then the cookie names it.
func TestAffinityOnFailure(t *testing.T) {
	for _, c := range []struct {
		persistent, change bool
	}{{true, false}, {true, true}, {false, false}, {false, true}} {
		t.Run(fmt.Sprintf("persistent=%v,change=%v", c.persistent, c.change), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Rules = map[string]*Rules{"ns/plain": {Affinity: &Affinity{Cookie: "s", Persistent: c.persistent, ChangeOnFailure: c.change}}}
			var x Exchange
			NewPolicy(Settings{}).Decide(cfg, get("plain.example", "/"), time.Now(), &x)
			first, _ := x.Endpoint()
			if !x.Retry(FailConnect) {
				t.Fatal("not retried")
			}
			next, _ := x.Endpoint()
			set := value(x.ResponseFields(&h1.Response{Status: 200}, time.Now()), "Set-Cookie")
			if c.change == (next == first) {
				t.Errorf("retried on %s after %s", next, first)
			}
			if c.change {
				ep, _ := decideSticky(t, cfg, cfg.Rules["ns/plain"].Affinity, cookieOf(t, set).String(), false)
				if ep != next {
					t.Errorf("the cookie set after the failure leads to %s, want %s", ep, next)
				}
			}
		})
	}
}
