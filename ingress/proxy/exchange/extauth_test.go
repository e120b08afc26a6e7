package exchange

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

func extAuth(t *testing.T, raw string) *ExternalAuth {
	t.Helper()
	u, err := ParseAuthURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &ExternalAuth{URL: u}
}

func signin(t *testing.T, raw, param string) *Signin {
	t.Helper()
	s, err := ParseSignin(raw, param)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A request to a route with external authentication waits for the
// service: the subrequest carries the client's fields (less the body's and
// the connection's) and nginx's X-Original-* fields, with the same
// X-Request-ID as the request upstream.
func TestAuthorizeSubrequest(t *testing.T) {
	cfg := testConfig(t)
	ext := extAuth(t, "http://auth.ns.svc.cluster.local:4180/oauth2/auth?x=1")
	cfg.Rules = map[string]*Rules{"ns/plain": {ExternalAuth: ext}}
	p := NewPolicy(Settings{})
	req := get("plain.example:8080", "/app/page?q=a%20b",
		f("Cookie", "_oauth2_proxy=abc"), f("Authorization", "Bearer t"), f("Connection", "keep-alive"),
		f("X-Original-URL", "http://spoofed/"), f("X-Sent-From", "me"), f("Content-Type", "text/plain"))
	req.Method, req.BodyLength, req.HasLength = "POST", 5, true
	var x Exchange
	p.Decide(cfg, req, time.Now(), &x)
	if x.Outcome != Authorize {
		t.Fatalf("outcome %d (status %d %q), want Authorize", x.Outcome, x.Status, x.Body)
	}
	if x.Upstream != nil {
		t.Error("the plan's endpoints are given before the service said yes")
	}
	if x.AuthURL() != ext.URL {
		t.Errorf("AuthURL %v", x.AuthURL())
	}
	out := x.AuthOut
	if out.Method != "GET" || out.Target != "/oauth2/auth?x=1" || out.Host != "auth.ns.svc.cluster.local:4180" || out.Body {
		t.Errorf("subrequest %s %s Host %s body %v", out.Method, out.Target, out.Host, out.Body)
	}
	for name, want := range map[string]string{
		"Cookie":                  "_oauth2_proxy=abc",
		"Authorization":           "Bearer t",
		"Content-Type":            "text/plain",
		"X-Original-URL":          "http://plain.example:8080/app/page?q=a%20b",
		"X-Original-URI":          "/app/page?q=a%20b",
		"X-Original-Method":       "POST",
		"X-Sent-From":             "nginx-ingress-controller",
		"X-Auth-Request-Redirect": "/app/page?q=a%20b",
		"X-Real-IP":               "192.0.2.7",
		"X-Forwarded-For":         "192.0.2.7",
		"X-Forwarded-Proto":       "http",
		"X-Forwarded-Host":        "plain.example:8080",
		"Connection":              "",
		"X-Request-ID":            x.Record.RequestID,
	} {
		if got := value(out.Fields, name); got != want {
			t.Errorf("subrequest %s = %q, want %q", name, got, want)
		}
	}
	n := 0
	for _, fl := range out.Fields {
		if h1.Is(fl.Name, "X-Original-URL") || h1.Is(fl.Name, "X-Sent-From") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d X-Original-URL and X-Sent-From fields, want the proxy's only", n)
	}
	if value(x.Out.Fields, "X-Request-ID") != x.Record.RequestID || x.Record.RequestID == "" {
		t.Errorf("upstream X-Request-ID %q, record %q", value(x.Out.Fields, "X-Request-ID"), x.Record.RequestID)
	}
}

// The service's answer decides: 2xx lets the request through with the
// named fields copied (the client's of those names dropped), 401 and 403
// are passed on, anything else is 500.
func TestAuthorized(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	base := extAuth(t, "https://auth.example/check")
	withHeaders := *base
	withHeaders.ResponseHeaders = []string{"X-Auth-Request-User", "X-Auth-Request-Email"}
	withSignin := *base
	withSignin.Signin = signin(t, "https://login.example/oauth2/start", "")
	withParam := *base
	withParam.Signin = signin(t, "https://$host/oauth2/start?rd=$escaped_request_uri", "")
	otherParam := *base
	otherParam.Signin, otherParam.SigninParam = signin(t, "https://login.example/start?app=1", "next"), "next"
	customMethod := *base
	customMethod.Method, customMethod.RequestRedirect = "POST", "https://app.example/back"
	for _, c := range []struct {
		name     string
		ext      *ExternalAuth
		status   int
		fields   []h1.Field
		want     int // 0: forwarded
		location string
		upstream map[string]string // fields of the request upstream
	}{
		{name: "200", ext: base, status: 200},
		{name: "204", ext: base, status: 204},
		{name: "copied", ext: &withHeaders, status: 200,
			fields:   []h1.Field{f("x-auth-request-user", "alice"), f("X-Auth-Request-Email", "a@example"), f("X-Other", "no")},
			upstream: map[string]string{"X-Auth-Request-User": "alice", "X-Auth-Request-Email": "a@example", "X-Other": ""}},
		{name: "not sent by the service: the client's dropped", ext: &withHeaders, status: 200,
			upstream: map[string]string{"X-Auth-Request-User": "", "X-Auth-Request-Email": ""}},
		{name: "a value that cannot be sent is not", ext: &withHeaders, status: 200, fields: []h1.Field{f("X-Auth-Request-User", "a\r\nb")},
			upstream: map[string]string{"X-Auth-Request-User": ""}},
		{name: "401", ext: base, status: 401, fields: []h1.Field{f("WWW-Authenticate", `Bearer realm="x"`), f("X-Other", "no")}, want: 401},
		{name: "401 to sign in", ext: &withSignin, status: 401, want: 302,
			location: "https://login.example/oauth2/start?rd=http://plain.example%2Fapp%2Fpage%3Fq%3D1"},
		{name: "401 to sign in, variables", ext: &withParam, status: 401, want: 302,
			location: "https://plain.example/oauth2/start?rd=%2Fapp%2Fpage%3Fq%3D1"},
		{name: "401 to sign in, other parameter", ext: &otherParam, status: 401, want: 302,
			location: "https://login.example/start?app=1&next=http://plain.example%2Fapp%2Fpage%3Fq%3D1"},
		{name: "403 with sign-in", ext: &withSignin, status: 403, want: 403},
		{name: "403", ext: base, status: 403, want: 403},
		{name: "302 is not a yes", ext: base, status: 302, want: 500},
		{name: "404", ext: base, status: 404, want: 500},
		{name: "503", ext: base, status: 503, want: 500},
		{name: "no answer", ext: base, status: 0, want: 500},
		{name: "method and redirect", ext: &customMethod, status: 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg.Rules = map[string]*Rules{"ns/plain": {ExternalAuth: c.ext}}
			var x Exchange
			req := get("plain.example", "/app/page?q=1", f("X-Auth-Request-User", "mallory"), f("x-auth-request-email", "m@evil"))
			p.Decide(cfg, req, time.Now(), &x)
			if x.Outcome != Authorize {
				t.Fatalf("outcome %d, want Authorize", x.Outcome)
			}
			if c.ext.Method != "" && (x.AuthOut.Method != c.ext.Method || value(x.AuthOut.Fields, "X-Auth-Request-Redirect") != c.ext.RequestRedirect) {
				t.Errorf("subrequest %s, X-Auth-Request-Redirect %q", x.AuthOut.Method, value(x.AuthOut.Fields, "X-Auth-Request-Redirect"))
			}
			x.Authorized(c.status, c.fields)
			if c.want == 0 {
				if x.Outcome != Forward || x.Upstream == nil {
					t.Fatalf("answer %d %q, want it forwarded", x.Status, x.Body)
				}
				if addr, _ := x.Endpoint(); addr != x.Record.Endpoint {
					t.Errorf("endpoint %s, want the plan's %s", addr, x.Record.Endpoint)
				}
				for name, want := range c.upstream {
					if got := value(x.Out.Fields, name); got != want {
						t.Errorf("upstream %s = %q, want %q", name, got, want)
					}
				}
				if len(c.ext.ResponseHeaders) == 0 && value(x.Out.Fields, "X-Auth-Request-User") != "mallory" {
					t.Error("a field no annotation names was dropped")
				}
				return
			}
			if x.Outcome != Answer || x.Status != c.want {
				t.Fatalf("outcome %d status %d, want answer %d", x.Outcome, x.Status, c.want)
			}
			fields := x.AnswerFields(time.Now())
			if got := value(fields, "Location"); got != c.location {
				t.Errorf("Location %q, want %q", got, c.location)
			}
			if c.want == 401 {
				if got := value(fields, "WWW-Authenticate"); got != `Bearer realm="x"` {
					t.Errorf("WWW-Authenticate %q, want the service's", got)
				}
				if value(fields, "X-Other") != "" {
					t.Error("a field of the service's other than its challenge was passed on")
				}
			}
		})
	}
}

// What the route decided after the authentication point waits for the
// service too: an unauthenticated client does not learn that the backend
// has no endpoint, and an answer after 2xx ends the connection as it
// would have. What comes before (access lists, redirects) does not ask.
func TestAuthorizeHoldsBack(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	ext := extAuth(t, "http://auth.example/")
	cfg.Rules = map[string]*Rules{"ns/plain": {ExternalAuth: ext}, "ns/shop": {ExternalAuth: ext}}
	var x Exchange
	req := get("plain.example", "/empty")
	req.BodyLength, req.Continue = 10, true
	p.Decide(cfg, req, time.Now(), &x)
	if x.Outcome != Authorize {
		t.Fatalf("outcome %d status %d, want Authorize", x.Outcome, x.Status)
	}
	x.Authorized(200, nil)
	if x.Outcome != Answer || x.Status != 503 || !x.Close {
		t.Errorf("after 2xx: outcome %d status %d close %v, want the 503 held back, closing", x.Outcome, x.Status, x.Close)
	}
	p.Decide(cfg, get("plain.example", "/empty"), time.Now(), &x)
	x.Authorized(403, nil)
	if x.Status != 403 || x.Close {
		t.Errorf("after 403: %d close %v", x.Status, x.Close)
	}
	// Plain HTTP to a TLS host is redirected before anything is asked.
	p.Decide(cfg, get("shop.example", "/"), time.Now(), &x)
	if x.Outcome != Answer || x.Status != 308 {
		t.Errorf("plain HTTP to a TLS host: outcome %d status %d, want the redirect", x.Outcome, x.Status)
	}
	cfg.Rules["ns/plain"] = &Rules{ExternalAuth: ext, Deny: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	p.Decide(cfg, get("plain.example", "/"), time.Now(), &x)
	if x.Outcome != Answer || x.Status != 403 {
		t.Errorf("denied address: outcome %d status %d", x.Outcome, x.Status)
	}
	// A later request on the same Exchange of a route without it is not
	// held.
	cfg.Rules = nil
	p.Decide(cfg, get("plain.example", "/"), time.Now(), &x)
	if x.Outcome != Forward || len(x.AuthOut.Fields) != 0 {
		t.Errorf("route without external auth: outcome %d", x.Outcome)
	}
	x.Authorized(401, nil) // a stray call changes nothing
	if x.Outcome != Forward {
		t.Errorf("Authorized outside Authorize changed the outcome to %d", x.Outcome)
	}
}

// A WebSocket handshake is tunnelled once the service says yes.
func TestAuthorizeTunnel(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	cfg.Rules = map[string]*Rules{"ns/plain": {ExternalAuth: extAuth(t, "http://auth.example/")}}
	req := get("plain.example", "/ws", f("Connection", "Upgrade"), f("Upgrade", "websocket"))
	req.Upgrade = "websocket"
	var x Exchange
	p.Decide(cfg, req, time.Now(), &x)
	if value(x.AuthOut.Fields, "Upgrade") != "" || value(x.AuthOut.Fields, "Connection") != "" {
		t.Error("the subrequest asks for an upgrade")
	}
	x.Authorized(200, nil)
	if x.Outcome != Tunnel || value(x.Out.Fields, "Upgrade") != "websocket" {
		t.Errorf("outcome %d, want the tunnel", x.Outcome)
	}
}

func TestParseAuthURL(t *testing.T) {
	for s, ok := range map[string]bool{
		"http://oauth2-proxy.auth.svc.cluster.local/oauth2/auth": true,
		"https://auth.example:8443/check?a=b":                    true,
		"http://127.0.0.1:4180":                                  true,
		"https://$host/oauth2/auth":                              false,
		"ftp://auth.example/":                                    false,
		"/oauth2/auth":                                           false,
		"http://user:pw@auth.example/":                           false,
		"http://auth.example/#frag":                              false,
		"http://auth.example/a b":                                false,
		"":                                                       false,
	} {
		if _, err := ParseAuthURL(s); (err == nil) != ok {
			t.Errorf("ParseAuthURL(%q): %v", s, err)
		}
	}
}

func TestParseSignin(t *testing.T) {
	for s, ok := range map[string]bool{
		"https://login.example/start":                                true,
		"https://$host/oauth2/start?rd=$escaped_request_uri":         true,
		"$scheme://$http_host/oauth2/start":                          true,
		"https://login.example/start?rd=$scheme://$host$request_uri": true,
		"https://login.example/$request_id":                          false,
		"/oauth2/start":                                              false,
		"https://login.example/a b":                                  false,
		"mailto:x@example":                                           false,
	} {
		if _, err := ParseSignin(s, ""); (err == nil) != ok {
			t.Errorf("ParseSignin(%q): %v", s, err)
		}
	}
	if err := func() error { _, err := ParseSignin("https://x/$bogus", ""); return err }(); err == nil || !strings.Contains(err.Error(), "$bogus") {
		t.Errorf("unknown variable: %v", err)
	}
}
