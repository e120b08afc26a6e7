package exchange

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// The core is driven here with no socket: a request in, a decision out.

func svc(name string) route.Backend {
	return route.Backend{Service: name, Port: route.Port{Number: 80}}
}

func target(name string) Target {
	return Target{Namespace: "ns", Service: name, Port: route.Port{Number: 80}}
}

// testConfig routes shop.example (TLS, redirected), plain.example, a
// resource backend, a Service without endpoints and one with three.
func testConfig(t testing.TB) *Config {
	t.Helper()
	tab, rej := route.Build([]route.Ingress{
		{Namespace: "ns", Name: "shop", Rules: []route.Rule{{Host: "shop.example", Paths: []route.Path{{Path: "/", Type: route.Prefix, Backend: svc("web")}}}},
			TLS: []route.TLS{{Hosts: []string{"shop.example"}, SecretName: "shop-tls"}}},
		{Namespace: "ns", Name: "plain", Rules: []route.Rule{{Host: "plain.example", Paths: []route.Path{
			{Path: "/", Type: route.Prefix, Backend: svc("web")},
			{Path: "/empty", Type: route.Prefix, Backend: svc("empty")},
			{Path: "/bucket", Type: route.Prefix, Backend: route.Backend{Resource: "x/Bucket/b"}},
		}}}},
	})
	if len(rej) > 0 {
		t.Fatal(rej)
	}
	return &Config{Routes: tab, Upstreams: map[Target]*Upstream{
		target("web"):   NewUpstream("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"),
		target("empty"): NewUpstream(),
	}}
}

var client = netip.MustParseAddrPort("192.0.2.7:40000")

func get(host, target string, fields ...h1.Field) *Request {
	return &Request{Method: "GET", Target: target, Host: host, Fields: fields, Proto: HTTP11, Client: client}
}

func f(name, value string) h1.Field { return h1.Field{Name: name, Value: value} }

func TestDecideAnswers(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	for _, c := range []struct {
		name   string
		req    *Request
		status int
		reason string // in the body
		field  h1.Field
		close  bool
	}{
		{"CONNECT", &Request{Method: "CONNECT", Target: "x:443", Host: "x:443", Proto: HTTP11}, 405, "CONNECT", allowField, false},
		{"TRACE", &Request{Method: "TRACE", Target: "/", Host: "plain.example", Proto: HTTP11}, 405, "TRACE", allowField, false},
		{"OPTIONS *", &Request{Method: "OPTIONS", Target: "*", Host: "plain.example", Proto: HTTP11}, 200, "", allowField, false},
		{"GET *", &Request{Method: "GET", Target: "*", Host: "plain.example", Proto: HTTP11}, 400, "OPTIONS only", h1.Field{}, false},
		{"no route", get("other.example", "/"), 404, "no route", h1.Field{}, false},
		{"TLS host over HTTP", get("shop.example:8080", "/p%41th?q=1"), 308, "", f("Location", "https://shop.example/p%41th?q=1"), false},
		{"resource backend", get("plain.example", "/bucket/x"), 503, "resource backend", h1.Field{}, false},
		{"no endpoint", get("plain.example", "/empty"), 503, "no ready endpoint", h1.Field{}, false},
		{"body too large", &Request{Method: "POST", Target: "/", Host: "plain.example", Proto: HTTP11, BodyLength: 2 << 20, HasLength: true}, 413, "larger than the limit", h1.Field{}, true},
		// F7: targets no front-end may forward, whatever the protocol.
		{"space", get("plain.example", "/a b"), 400, "blank", h1.Field{}, false},
		{"control", get("plain.example", "/a\x01b"), 400, "control", h1.Field{}, false},
		{"tab", get("plain.example", "/a\tb"), 400, "control", h1.Field{}, false},
		{"fragment", get("plain.example", "/a#b"), 400, "'#'", h1.Field{}, false},
		{"absolute", get("plain.example", "http://x/abs"), 400, "must be a path", h1.Field{}, false},
		{"not a path", get("plain.example", "x"), 400, "must be a path", h1.Field{}, false},
		{"empty", get("plain.example", ""), 400, "must be a path", h1.Field{}, false},
		{"bad escape", get("plain.example", "/%zz"), 400, "invalid escape", h1.Field{}, false},
		{"cut escape", get("plain.example", "/a%4"), 400, "invalid escape", h1.Field{}, false},
		{"encoded slash", get("plain.example", "/a%2fb"), 400, "%2F", h1.Field{}, false},
		{"encoded NUL", get("plain.example", "/a%00b"), 400, "control", h1.Field{}, false},
		{"dot-dot", get("plain.example", "/a/../b"), 400, "'..'", h1.Field{}, false},
		{"encoded dot-dot", get("plain.example", "/a/%2e%2E/b"), 400, "'..'", h1.Field{}, false},
		{"dot", get("plain.example", "/a/./b"), 400, "'.'", h1.Field{}, false},
		{"dot-dot with parameters", get("plain.example", "/a/..;x=y/b"), 400, "'..'", h1.Field{}, false},
		{"encoded dot with parameters", get("plain.example", "/a/%2e;/b"), 400, "'.'", h1.Field{}, false},
		// R2, R8: what HTTP/2 carries and HTTP/1.x's codec would refuse.
		{"method with a blank", &Request{Method: "GET /internal?x=", Target: "/", Host: "plain.example", Proto: HTTP2}, 400, "method", h1.Field{}, false},
		{"host with a slash", get("x/.plain.example", "/"), 400, "Host", h1.Field{}, false},
		{"host with a blank", get("plain.example x", "/"), 400, "Host", h1.Field{}, false},
		{"bad target with a body closes", &Request{Method: "POST", Target: "/a b", Host: "plain.example", Proto: HTTP11, BodyLength: -1}, 400, "blank", h1.Field{}, true},
		{"redirect of a large body closes", &Request{Method: "POST", Target: "/", Host: "shop.example", Proto: HTTP11, BodyLength: MaxDiscard + 1}, 308, "", f("Location", "https://shop.example/"), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var x Exchange
			p.Decide(cfg, c.req, time.Now(), &x)
			if x.Outcome != Answer || x.Status != c.status || x.Record.Status != c.status {
				t.Fatalf("outcome %d status %d (record %d), want an answer %d", x.Outcome, x.Status, x.Record.Status, c.status)
			}
			if !strings.Contains(x.Body, c.reason) || c.reason == "" && x.Body != "" {
				t.Errorf("body %q, want it to say %q", x.Body, c.reason)
			}
			fields := x.AnswerFields(time.Now())
			if fields[0] != serverField || fields[1].Name != "Date" {
				t.Errorf("fields %v: want Server and Date first", fields)
			}
			if c.field.Name != "" && !slices.Contains(fields, c.field) {
				t.Errorf("fields %v, want %v", fields, c.field)
			}
			if c.reason != "" && !slices.Contains(fields, textPlain) {
				t.Errorf("fields %v, want %v", fields, textPlain)
			}
			if x.Close != c.close {
				t.Errorf("close %v, want %v", x.Close, c.close)
			}
		})
	}
}

func TestDecideForwards(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	var x Exchange
	p.Decide(cfg, get("Plain.Example:8080", "/a%41b/c%20d/%C3%A4?x=1%2By&z"), time.Now(), &x)
	if x.Outcome != Forward || x.Upstream != cfg.Upstreams[target("web")] || x.Target != target("web") {
		t.Fatalf("outcome %d, upstream %v, target %v", x.Outcome, x.Upstream, x.Target)
	}
	if x.Out.Method != "GET" || x.Out.Target != "/a%41b/c%20d/%C3%A4?x=1%2By&z" || x.Out.Host != "Plain.Example:8080" || x.Out.Body {
		t.Errorf("out %+v: want the method, target and Host as received, no body", x.Out)
	}
	if x.Record.Path != "/aAb/c d/ä" || x.Record.Route != "ns/plain" || x.Record.Attempts != 1 || x.Limits != p.Settings().Limits {
		t.Errorf("record %+v, limits %+v", x.Record, x.Limits)
	}
	// A request of the same Exchange leaves nothing of the first behind.
	p.Decide(cfg, &Request{Method: "PATCH", Target: "/b", Host: "plain.example", Proto: HTTP11, BodyLength: 2, HasLength: true, Continue: true, Client: client}, time.Now(), &x)
	if x.Outcome != Forward || x.Out.Target != "/b" || !x.Out.Body || !x.Continue || x.Record.Path != "/b" {
		t.Errorf("second request: %+v, continue %v, record %+v", x.Out, x.Continue, x.Record)
	}
	if got := value(x.Out.Fields, "X-Forwarded-For"); got != "192.0.2.7" {
		t.Errorf("second request's X-Forwarded-For %q", got)
	}
}

func value(fields []h1.Field, name string) string {
	var vs []string
	for _, f := range fields {
		if h1.Is(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return strings.Join(vs, "|")
}

func TestHeaderPolicy(t *testing.T) {
	cfg := testConfig(t)
	trustedClient := netip.MustParseAddrPort("[::ffff:10.1.2.3]:5000")
	for _, c := range []struct {
		name     string
		settings Settings
		req      *Request
		want     map[string]string // "" means absent
	}{
		{"untrusted client", Settings{}, &Request{Method: "GET", Target: "/", Host: "plain.example", Proto: HTTP11, Client: client, ConnNames: true,
			Fields: []h1.Field{
				f("X-Forwarded-For", "6.6.6.6"), f("X-Forwarded-Proto", "https"), f("X-Forwarded-Host", "evil.example"),
				f("X-Forwarded-Port", "1"), f("Forwarded", "for=6.6.6.6"), f("X-Real-Ip", "6.6.6.6"),
				f("Connection", "keep-alive, X-Private"), f("X-Private", "hop"), f("Keep-Alive", "timeout=5"),
				f("Te", "gzip, trailers"), f("Trailer", "X"), f("Proxy", "http://evil"), f("Proxy-Authorization", "x"),
				f("Expect", "100-continue"), f("X-Custom", "kept"), f("X-Multi", "1"), f("X-Multi", "2"),
				f("X_Forwarded_For", "6.6.6.6"), f("Foo_Bar", "x"),
			}}, map[string]string{
			"X-Forwarded-For": "192.0.2.7", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "plain.example",
			"X-Forwarded-Port": "80", "X-Real-Ip": "192.0.2.7", "Forwarded": "",
			"Connection": "", "X-Private": "", "Keep-Alive": "", "Te": "trailers", "Trailer": "", "Proxy": "",
			"Proxy-Authorization": "", "Expect": "", "X-Custom": "kept", "X-Multi": "1|2",
			"X_Forwarded_For": "", "Foo_Bar": "", "Upgrade": "",
		}},
		{"underscores kept when asked", Settings{UnderscoresInHeaders: true}, get("plain.example", "/", f("Foo_Bar", "x")),
			map[string]string{"Foo_Bar": "x"}},
		{"trusted proxy", Settings{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			&Request{Method: "GET", Target: "/", Host: "plain.example:8080", Proto: HTTP11, TLS: true, Client: trustedClient, Fields: []h1.Field{
				f("X-Forwarded-For", "6.6.6.6, 7.7.7.7"), f("X-Forwarded-For", "8.8.8.8"), f("X-Forwarded-Proto", "https"),
				f("Forwarded", "for=6.6.6.6"), f("X-Real-Ip", "6.6.6.6"),
			}}, map[string]string{
				"X-Forwarded-For": "6.6.6.6, 7.7.7.7, 8.8.8.8, 10.1.2.3", "X-Forwarded-Proto": "https",
				"X-Forwarded-Host": "plain.example:8080", "X-Forwarded-Port": "8080", "Forwarded": "for=6.6.6.6", "X-Real-Ip": "6.6.6.6",
			}},
		{"TLS sets https and 443", Settings{}, &Request{Method: "GET", Target: "/", Host: "plain.example", Proto: HTTP11, TLS: true, Client: client},
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}},
		{"a sane request ID is kept", Settings{}, get("plain.example", "/", f("X-Request-Id", "abc-123")),
			map[string]string{"X-Request-Id": "abc-123"}},
		// F2: only WebSocket is tunnelled; any other Upgrade (h2c) is dropped
		// with HTTP2-Settings, and the request forwarded as a plain one.
		{"h2c upgrade", Settings{}, &Request{Method: "GET", Target: "/", Host: "plain.example", Proto: HTTP11, Client: client, Upgrade: "h2c",
			Fields: []h1.Field{f("Connection", "Upgrade, HTTP2-Settings"), f("Upgrade", "h2c"), f("HTTP2-Settings", "AAMAAABkAAQAAP__")}},
			map[string]string{"Connection": "", "Upgrade": "", "Http2-Settings": ""}},
		{"websocket with a body is not tunnelled", Settings{}, &Request{Method: "GET", Target: "/", Host: "plain.example", Proto: HTTP11, Client: client, Upgrade: "websocket", BodyLength: 5,
			Fields: []h1.Field{f("Connection", "Upgrade"), f("Upgrade", "websocket")}},
			map[string]string{"Connection": "", "Upgrade": ""}},
		{"websocket", Settings{}, &Request{Method: "GET", Target: "/", Host: "plain.example", Proto: HTTP11, Client: client, Upgrade: "WebSocket",
			Fields: []h1.Field{f("Connection", "Upgrade"), f("Upgrade", "WebSocket"), f("Sec-Websocket-Key", "k")}},
			map[string]string{"Connection": "Upgrade", "Upgrade": "WebSocket", "Sec-Websocket-Key": "k"}},
		{"HTTP/2 cookies joined", Settings{}, &Request{Method: "GET", Target: "/", Host: "plain.example", Proto: HTTP2, Client: client,
			Fields: []h1.Field{f("Cookie", "a=1"), f("X", "y"), f("Cookie", "b=2")}},
			map[string]string{"Cookie": "a=1; b=2", "X": "y"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var x Exchange
			NewPolicy(c.settings).Decide(cfg, c.req, time.Now(), &x)
			if x.Outcome != Forward && x.Outcome != Tunnel {
				t.Fatalf("outcome %d, status %d %q", x.Outcome, x.Status, x.Body)
			}
			for k, want := range c.want {
				if got := value(x.Out.Fields, k); got != want {
					t.Errorf("%s = %q, want %q (fields %v)", k, got, want, x.Out.Fields)
				}
			}
			id := value(x.Out.Fields, "X-Request-Id")
			if strings.Contains(id, "|") || id == "" || id != x.Record.RequestID {
				t.Errorf("X-Request-ID %q, record %q: want exactly one", id, x.Record.RequestID)
			}
			if c.want["X-Request-Id"] == "" && len(id) != 32 {
				t.Errorf("generated X-Request-ID %q, want 32 hex digits", id)
			}
		})
	}
	var a, b Exchange
	p := NewPolicy(Settings{})
	p.Decide(cfg, get("plain.example", "/"), time.Now(), &a)
	p.Decide(cfg, get("plain.example", "/"), time.Now(), &b)
	if a.Record.RequestID == b.Record.RequestID {
		t.Error("two exchanges generated the same request ID")
	}
}

func TestResponseFields(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	var x Exchange
	p.Decide(cfg, get("plain.example", "/"), time.Now(), &x)
	res := &h1.Response{Status: 200, ConnNames: true, Fields: []h1.Field{
		f("Server", "echo"), f("Connection", "keep-alive, X-Hop"), f("X-Hop", "1"), f("Keep-Alive", "timeout=5"),
		f("Trailer", "X-Sum"), f("Upgrade", "h2c"), f("Content-Type", "text/plain"), f("Set-Cookie", "a=1"), f("Set-Cookie", "b=2"),
	}}
	got := x.ResponseFields(res, time.Unix(0, 0))
	want := []h1.Field{serverField, f("Content-Type", "text/plain"), f("Set-Cookie", "a=1"), f("Set-Cookie", "b=2"), f("Date", "Thu, 01 Jan 1970 00:00:00 GMT")}
	if !slices.Equal(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	res.Chunked, res.Date = true, true
	res.Fields = append(res.Fields, f("Date", "d"))
	if got := x.ResponseFields(res, time.Now()); value(got, "Trailer") != "X-Sum" || value(got, "Date") != "d" {
		t.Errorf("chunked answer with a Date: %v", got)
	}
}

func TestAttempts(t *testing.T) {
	cfg := testConfig(t)
	up := cfg.Upstreams[target("web")]
	for _, c := range []struct {
		name     string
		method   string
		settings Settings
		fails    []Failure
		want     []bool // what Retry says to each failure
		status   int    // the final answer, 0 when the last failure is retried
		endpoint []int  // endpoint offsets from the first, per attempt
	}{
		{"connect failures go round", "POST", Settings{}, []Failure{FailConnect, FailConnect, FailConnect}, []bool{true, true, false}, 502, []int{0, 1, 2}},
		{"a POST is sent once", "POST", Settings{}, []Failure{FailReset}, []bool{false}, 502, []int{0}},
		{"a GET goes on after a reset", "GET", Settings{}, []Failure{FailReset, FailTimeout}, []bool{true, true}, 0, []int{0, 1, 2}},
		{"timeout", "POST", Settings{}, []Failure{FailTimeout}, []bool{false}, 504, []int{0}},
		{"stale: same endpoint, new connection, once", "GET", Settings{}, []Failure{FailStale, FailStale, FailReset}, []bool{true, true, true}, 0, []int{0, 0, 1, 2}},
		{"stale POST", "POST", Settings{}, []Failure{FailStale}, []bool{false}, 502, []int{0}},
		{"invalid head is not retried by default", "GET", Settings{}, []Failure{FailInvalid}, []bool{false}, 502, []int{0}},
		{"invalid head retried when asked", "GET", Settings{NextUpstream: NextOnInvalidHeader}, []Failure{FailInvalid}, []bool{true}, 0, []int{0, 1}},
		{"off", "GET", Settings{NextUpstream: NextOff | NextOnError}, []Failure{FailConnect}, []bool{false}, 502, []int{0}},
		{"one try", "GET", Settings{Tries: 1}, []Failure{FailConnect}, []bool{false}, 502, []int{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var x Exchange
			NewPolicy(c.settings).Decide(cfg, &Request{Method: c.method, Target: "/", Host: "plain.example", Proto: HTTP11, Client: client}, time.Now(), &x)
			first, _ := x.Endpoint()
			base := slices.Index(up.Addrs, first)
			seen := []int{}
			for i, fail := range c.fails {
				addr, _ := x.Endpoint()
				seen = append(seen, (slices.Index(up.Addrs, addr)-base+3)%3)
				if got := x.Retry(fail); got != c.want[i] {
					t.Fatalf("failure %d (%d): retry %v, want %v", i, fail, got, c.want[i])
				}
				if fail == FailStale && i == 0 && c.want[i] && !x.FreshConnection() {
					t.Errorf("a stale connection's retry is not on a fresh connection")
				}
			}
			if c.status == 0 {
				addr, _ := x.Endpoint()
				seen = append(seen, (slices.Index(up.Addrs, addr)-base+3)%3)
			} else if x.Outcome != Answer || x.Status != c.status || x.Record.UpstreamError == "" {
				t.Errorf("final: outcome %d status %d error %q, want %d", x.Outcome, x.Status, x.Record.UpstreamError, c.status)
			}
			if !slices.Equal(seen, c.endpoint) {
				t.Errorf("endpoints tried %v, want %v", seen, c.endpoint)
			}
		})
	}
}

// proxy-next-upstream http_*: a listed status sends the request to the
// next endpoint while another attempt is allowed (idempotent requests,
// or any with non_idempotent); the last attempt's answer is the client's.
func TestNextUpstreamOnStatus(t *testing.T) {
	cfg := testConfig(t)
	for _, c := range []struct {
		name     string
		method   string
		next     NextUpstream
		statuses []int
		want     []Failure
	}{
		{"listed status goes on, the last is relayed", "GET", NextOnError | NextOn502 | NextOn503, []int{502, 503, 502}, []Failure{FailStatus, FailStatus, 0}},
		{"unlisted status is relayed", "GET", NextOn502, []int{500}, []Failure{0}},
		{"a POST is relayed", "POST", NextOn502, []int{502}, []Failure{0}},
		{"non_idempotent", "POST", NextOn502 | NextNonIdempotent, []int{502, 200}, []Failure{FailStatus, 0}},
		{"off wins", "GET", NextOn502 | NextOff, []int{502}, []Failure{0}},
		{"4xx", "GET", NextOn404 | NextOn429 | NextOn403, []int{404, 429, 403}, []Failure{FailStatus, FailStatus, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var x Exchange
			NewPolicy(Settings{NextUpstream: c.next}).Decide(cfg, &Request{Method: c.method, Target: "/", Host: "plain.example", Proto: HTTP11, Client: client}, time.Now(), &x)
			tried := map[string]bool{}
			for i, st := range c.statuses {
				addr, _ := x.Endpoint()
				if tried[addr] {
					t.Fatalf("attempt %d went to %s again", i, addr)
				}
				tried[addr] = true
				f := x.Judge(st, "")
				if f != c.want[i] {
					t.Fatalf("attempt %d, status %d: %d, want %d", i, st, f, c.want[i])
				}
				if f == 0 {
					if x.Record.Status != st || x.Outcome != Forward {
						t.Errorf("the relayed answer: record status %d, outcome %d", x.Record.Status, x.Outcome)
					}
					return
				}
				if !x.Retry(f) {
					t.Fatalf("attempt %d: Judge said go on, Retry refused", i)
				}
			}
		})
	}
}

func TestAccept(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	var x Exchange
	p.Decide(cfg, get("plain.example", "/"), time.Now(), &x)
	if x.Judge(101, "h2c") == 0 {
		t.Errorf("a 101 to a request that asked for none was accepted")
	}
	p.Decide(cfg, &Request{Method: "GET", Target: "/", Host: "plain.example", Proto: HTTP11, Client: client, Upgrade: "websocket",
		Fields: []h1.Field{f("Connection", "upgrade"), f("Upgrade", "websocket")}}, time.Now(), &x)
	if x.Outcome != Tunnel || (x.Judge(101, "h2c") == 0) {
		t.Errorf("a switch to another protocol than asked was accepted")
	}
	p.Decide(cfg, &Request{Method: "GET", Target: "/", Host: "plain.example", Proto: HTTP11, Client: client, Upgrade: "websocket",
		Fields: []h1.Field{f("Connection", "upgrade"), f("Upgrade", "websocket")}}, time.Now(), &x)
	if !(x.Judge(101, "WebSocket") == 0) || !(x.Judge(200, "") == 0) || x.Record.Status != 200 {
		t.Errorf("a switch to WebSocket, or a plain answer, was refused")
	}
}

func TestFailures(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	for _, c := range []struct {
		f      BodyFailure
		status int
	}{{BodyTimeout, 408}, {BodyMalformed, 400}, {BodyTooLarge, 413}} {
		var x Exchange
		p.Decide(cfg, &Request{Method: "POST", Target: "/", Host: "plain.example", Proto: HTTP11, Client: client, BodyLength: -1}, time.Now(), &x)
		x.BodyFailed(c.f)
		if x.Outcome != Answer || x.Status != c.status || !x.Close {
			t.Errorf("body failure %d: %d close %v, want %d and close", c.f, x.Status, x.Close, c.status)
		}
	}
	var x Exchange
	p.Refuse(&h1.Error{Status: 431, Reason: "too large"}, client, time.Now(), &x)
	if x.Status != 431 || !x.Close || !strings.Contains(x.Body, "too large") || x.Record.Client != "192.0.2.7" {
		t.Errorf("refused head: %d %q close %v record %+v", x.Status, x.Body, x.Close, x.Record)
	}
	p.Decide(cfg, get("plain.example", "/"), time.Now(), &x)
	x.ClientGone()
	if x.Record.Status != 499 || x.Record.UpstreamError != "canceled" {
		t.Errorf("client gone: %+v", x.Record)
	}
}

// Finish copies what points into a front-end's buffers.
func TestFinishCopies(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	buf := []byte("PROPFIND plain.example /a%41")
	req := &Request{Method: string(buf[:8]), Host: string(buf[9:22]), Target: "/a%41", Proto: HTTP11, Client: client}
	var x Exchange
	start := time.Now()
	p.Decide(cfg, req, start, &x)
	r := x.Finish(start.Add(time.Second))
	copy(buf, strings.Repeat("x", len(buf)))
	x.scratch = x.scratch[:0]
	x.scratch = append(x.scratch, strings.Repeat("y", 64)...)
	if r.Method != "PROPFIND" || r.Host != "plain.example" || r.Path != "/aA" || r.Duration != time.Second || len(r.RequestID) != 32 || strings.Contains(r.RequestID, "y") {
		t.Errorf("record %+v", r)
	}
}

// Decide allocates nothing on the common path.
func TestDecideAllocations(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	var x Exchange
	req := get("plain.example", "/a/b?c", f("User-Agent", "t"), f("Accept", "*/*"))
	now := time.Now()
	p.Decide(cfg, req, now, &x)
	n := testing.AllocsPerRun(100, func() {
		p.Decide(cfg, req, now, &x)
		_ = x.ResponseFields(&h1.Response{Status: 200}, now)
	})
	if n != 0 {
		t.Errorf("%v allocations per decision, want none", n)
	}
}

func TestForwardTrailer(t *testing.T) {
	for name, want := range map[string]bool{
		"grpc-status": true, "Grpc-Message": true, "X-Checksum": true, "Server-Timing": true,
		"Set-Cookie": false, "content-type": false, "Content-Length": false, "Location": false,
		"Connection": false, "Transfer-Encoding": false, "WWW-Authenticate": false, "Cache-Control": false,
	} {
		if got := ForwardTrailer(name); got != want {
			t.Errorf("ForwardTrailer(%q) = %v, want %v", name, got, want)
		}
	}
}

// A request to a gRPC backend carries "TE: trailers", which gRPC servers
// require, whether or not its client sent it; to other backends only a
// client's own goes on.
func TestTETrailersForGRPC(t *testing.T) {
	for _, proto := range []route.Protocol{route.GRPC, route.GRPCS, route.H2C, route.HTTP} {
		tab, rej := route.Build([]route.Ingress{{Namespace: "ns", Name: "g", Protocol: proto,
			Rules: []route.Rule{{Host: "g.example", Paths: []route.Path{{Path: "/", Type: route.Prefix, Backend: svc("g")}}}}}})
		if len(rej) > 0 {
			t.Fatal(rej)
		}
		tg := target("g")
		tg.Protocol = proto
		cfg := &Config{Routes: tab, Upstreams: map[Target]*Upstream{tg: NewUpstream("10.0.0.9:80")}}
		var x Exchange
		NewPolicy(Settings{}).Decide(cfg, &Request{Method: "POST", Target: "/svc/Call", Host: "g.example", Proto: HTTP2, Client: client}, time.Now(), &x)
		if x.Outcome != Forward {
			t.Fatalf("%v: outcome %d", proto, x.Outcome)
		}
		if got, want := fieldValue(x.Out.Fields, "Te"), map[bool]string{true: "trailers"}[proto.GRPC()]; got != want {
			t.Errorf("%v: Te %q, want %q", proto, got, want)
		}
	}
}
