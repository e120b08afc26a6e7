package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// proxy is a running Server on 127.0.0.1 with a plain and a TLS listener.
type proxy struct {
	*Server
	plain, secure string // host:port
}

// goroutineLoop runs the package's tests with the event loops off, so
// that the goroutine loop is tested on plain HTTP too (make test does).
var goroutineLoop = flag.Bool("goroutine-loop", false, "serve plain HTTP with the goroutine loop alone (Options.GoroutineLoop)")

// newServer is New for tests, with -goroutine-loop applied.
func newServer(t testing.TB, opts Options) *Server {
	t.Helper()
	opts.GoroutineLoop = opts.GoroutineLoop || *goroutineLoop
	s, err := New(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func start(t *testing.T, opts Options) *proxy {
	t.Helper()
	return serve(t, newServer(t, opts))
}

// serve runs s on a plain and a TLS listener until the test ends.
func serve(t *testing.T, s *Server) *proxy {
	t.Helper()
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pl, sl, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &proxy{Server: s, plain: pl.Addr().String(), secure: sl.Addr().String()}
}

// svc is a service backend of port 80.
func svc(name string) route.Backend {
	return route.Backend{Service: name, Port: route.Port{Number: 80}}
}

func target(name string) exchange.Target {
	return exchange.Target{Namespace: "ns", Service: name, Port: route.Port{Number: 80}}
}

func ingress(name, host string, paths ...route.Path) route.Ingress {
	return route.Ingress{Namespace: "ns", Name: name, Rules: []route.Rule{{Host: host, Paths: paths}}}
}

func prefix(p, service string) route.Path {
	return route.Path{Path: p, Type: route.Prefix, Backend: svc(service)}
}

func table(t *testing.T, ings ...route.Ingress) *route.Table {
	t.Helper()
	tab, rej := route.Build(ings)
	if len(rej) > 0 {
		t.Fatalf("Build rejected %v", rej)
	}
	return tab
}

// seen is what the echo backend reports about the request it got.
type seen struct {
	Method, URI, Host, Proto string
	Header                   http.Header
	Body                     string
}

// echo is a backend that answers with what it saw, as JSON.
func echo(t *testing.T, name string) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		w.Header().Set("Server", "echo") // the proxy must replace it
		_ = json.NewEncoder(w).Encode(seen{r.Method, r.RequestURI, r.Host, r.Proto, r.Header, string(body)})
	}))
	t.Cleanup(b.Close)
	return b
}

func addr(b *httptest.Server) string { return b.Listener.Addr().String() }

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// rawEndpoint is an endpoint that speaks HTTP by hand, for the misbehaving
// ones: serve runs on each connection it accepts, which is closed after.
// It returns the endpoint's address.
func rawEndpoint(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return l.Addr().String()
}

// raw sends a request as bytes and returns the response.
func raw(t *testing.T, hostport, req string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", req, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body = io.NopCloser(strings.NewReader(string(body)))
	return res
}

func decode(t *testing.T, res *http.Response) seen {
	t.Helper()
	var s seen
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		t.Fatalf("status %d, body not from the echo backend: %v", res.StatusCode, err)
	}
	return s
}

// A request with a body and one without.
func TestForwardsWhatTheClientSent(t *testing.T) {
	for _, c := range []struct{ method, body string }{{"PATCH", "body"}, {"GET", ""}} {
		t.Run(c.method, func(t *testing.T) { testForwards(t, c.method, c.body) })
	}
}

func testForwards(t *testing.T, method, body string) {
	b := echo(t, "web")
	var mu sync.Mutex
	var recs []exchange.Record
	p := start(t, Options{Observe: func(r exchange.Record) { mu.Lock(); recs = append(recs, r); mu.Unlock() }})
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("web", "shop.example", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(b))},
	})

	length := ""
	if body != "" {
		length = "Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	res := raw(t, p.plain, method+" /a%41b/c%20d/%C3%A4?x=1%2By&z HTTP/1.1\r\n"+
		"Host: Shop.Example:8080\r\n"+
		"X-Forwarded-For: 6.6.6.6\r\n"+
		"X-Forwarded-Proto: https\r\n"+
		"X-Forwarded-Host: evil.example\r\n"+
		"Connection: keep-alive, X-Private\r\n"+
		"X-Private: hop\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"X-Custom: kept\r\n"+
		"X-Multi: 1\r\nX-Multi: 2\r\n"+
		length+"\r\n"+body)
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if got := res.Header.Get("Server"); got != "portico" {
		t.Errorf("Server = %q, want portico", got)
	}
	if _, err := http.ParseTime(res.Header.Get("Date")); err != nil {
		t.Errorf("Date %q: %v", res.Header.Get("Date"), err)
	}
	if res.Header.Get("X-Backend") != "web" || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("backend's headers lost: %v", res.Header)
	}
	s := decode(t, res)
	want := seen{Method: method, URI: "/a%41b/c%20d/%C3%A4?x=1%2By&z", Host: "Shop.Example:8080", Proto: "HTTP/1.1", Body: body}
	if s.Method != want.Method || s.URI != want.URI || s.Host != want.Host || s.Proto != want.Proto || s.Body != want.Body {
		t.Errorf("backend saw %+v, want %+v", s, want)
	}
	for k, v := range map[string]string{
		"X-Forwarded-For":   "127.0.0.1", // the client's list is not trusted
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "Shop.Example:8080",
		"X-Custom":          "kept",
		"X-Multi":           "1,2",
		"X-Private":         "", // named in Connection: hop-by-hop
		"Keep-Alive":        "",
		"User-Agent":        "", // none sent, none invented
	} {
		if got := strings.Join(s.Header[k], ","); got != v {
			t.Errorf("backend saw %s %q, want %q", k, got, v)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(recs) != 1 || recs[0].Status != 200 || recs[0].Route != "ns/web" || recs[0].Target != target("web") || recs[0].Endpoint != addr(b) {
		t.Errorf("Observe got %+v", recs)
	}
}

// An endpoint that closed an idle keep-alive connection does not cost the
// next request: it goes again on a new connection.
func TestStaleKeepAliveConnection(t *testing.T) {
	var mu sync.Mutex
	var conns []net.Conn
	b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	b.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateIdle {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	p := webProxy(t, Options{}, b)
	for i := range 3 {
		if res := raw(t, p.plain, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); res.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, res.StatusCode)
		}
		mu.Lock()
		for _, c := range conns { // the endpoint drops its idle connections
			c.Close()
		}
		conns = nil
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHalfClosedKeepAliveConnection: an endpoint that ends an idle
// keep-alive connection with a lingering close (it stops writing but keeps
// reading, as Apache's event MPM does) must not cost the next request a
// timeout: the proxy sees the close on the pooled connection and uses
// another. A read that waits for readiness before looking would miss it.
func TestHalfClosedKeepAliveConnection(t *testing.T) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	endpoint := rawEndpoint(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(50 * time.Millisecond)
		_ = c.(*net.TCPConn).CloseWrite()
		go func() { _, _ = io.Copy(io.Discard, c) }()
		<-done
	})
	p := webProxyAt(t, Options{Policy: readTimeout(3 * time.Second)}, endpoint)
	for i := range 3 {
		if res := raw(t, p.plain, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); res.StatusCode != 200 {
			t.Fatalf("request %d after the endpoint half-closed its idle connection: %d", i, res.StatusCode)
		}
		time.Sleep(200 * time.Millisecond) // the endpoint half-closes meanwhile
	}
}

func TestTrustedProxyForwardedFor(t *testing.T) {
	b := echo(t, "web")
	p := webProxy(t, Options{Policy: exchange.Settings{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}, b)
	s := decode(t, raw(t, p.plain, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n\r\n"))
	if got := s.Header.Get("X-Forwarded-For"); got != "6.6.6.6, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the trusted list appended to", got)
	}
	if got := s.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want the trusted proxy's", got)
	}
}

// TestForwardedHeadersBothPaths: a GET and a POST (once two paths
// upstream) carry the same forwarding headers: a
// trusted proxy's X-Forwarded-Proto and -Host each kept when it sent them
// and set when it did not; an untrusted client's dropped, its RFC 7239
// Forwarded too.
func TestForwardedHeadersBothPaths(t *testing.T) {
	b := echo(t, "web")
	cfg := &exchange.Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(b))},
	}
	trusted := start(t, Options{Policy: exchange.Settings{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}})
	trusted.Store(cfg)
	untrusted := start(t, Options{})
	untrusted.Store(cfg)
	for _, method := range []string{"GET", "POST"} {
		req := method + " / HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\nContent-Length: 2\r\n\r\nok"
		if method == "GET" {
			req = strings.Replace(req, "Content-Length: 2\r\n\r\nok", "\r\n", 1)
		}
		s := decode(t, raw(t, trusted.plain, req))
		if got := s.Header.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("%s, trusted: X-Forwarded-Proto = %q, want the proxy's https", method, got)
		}
		if got := s.Header.Get("X-Forwarded-Host"); got != "shop.example" {
			t.Errorf("%s, trusted: X-Forwarded-Host = %q, want shop.example set", method, got)
		}
		if got := s.Header.Get("Forwarded"); got != "for=6.6.6.6" {
			t.Errorf("%s, trusted: Forwarded = %q, want it kept", method, got)
		}
		s = decode(t, raw(t, untrusted.plain, req))
		if got := s.Header.Get("X-Forwarded-Proto"); got != "http" {
			t.Errorf("%s, untrusted: X-Forwarded-Proto = %q, want http", method, got)
		}
		if got := s.Header.Get("Forwarded"); got != "" {
			t.Errorf("%s, untrusted: Forwarded = %q passed through", method, got)
		}
	}
}

func TestRoutesAndSpreadsLoad(t *testing.T) {
	a1, a2, b := echo(t, "a1"), echo(t, "a2"), echo(t, "b")
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes: table(t, ingress("web", "shop.example", prefix("/", "a"), prefix("/b", "b"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{
			target("a"): exchange.NewUpstream(addr(a1), addr(a2)),
			target("b"): exchange.NewUpstream(addr(b)),
		},
	})
	count := map[string]int{}
	for range 10 {
		res := raw(t, p.plain, "GET /x HTTP/1.1\r\nHost: shop.example\r\n\r\n")
		count[res.Header.Get("X-Backend")]++
	}
	if count["a1"] != 5 || count["a2"] != 5 {
		t.Errorf("10 requests went %v, want 5 to each endpoint", count)
	}
	req, _ := http.NewRequest("GET", "http://"+p.plain+"/b/c", nil)
	req.Host = "shop.example"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("X-Backend") != "b" {
		t.Errorf("/b/c went to %q, want b", res.Header.Get("X-Backend"))
	}
}

func TestProxyAnswers(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	resource := route.Backend{Resource: "storage.k8s.io/Bucket/assets"}
	p := start(t, Options{Policy: readTimeout(200 * time.Millisecond)})
	p.Store(&exchange.Config{
		Routes: table(t,
			ingress("web", "shop.example", prefix("/none", "none"), prefix("/missing", "missing"), prefix("/dead", "dead"), prefix("/slow", "slow"),
				route.Path{Path: "/bucket", Type: route.Prefix, Backend: resource}),
		),
		Upstreams: map[exchange.Target]*exchange.Upstream{
			target("none"): exchange.NewUpstream(),
			target("dead"): exchange.NewUpstream(deadAddr(t), deadAddr(t)),
			target("slow"): exchange.NewUpstream(addr(slow)),
		},
	})
	for _, c := range []struct {
		host, path string
		want       int
		reason     string
	}{
		{"other.example", "/", 404, "no route"},
		{"shop.example", "/", 404, "no route"},
		{"shop.example", "/none", 503, "no ready endpoint"},
		{"shop.example", "/missing", 503, "no ready endpoint"},
		{"shop.example", "/bucket/x", 503, "resource backend"},
		{"shop.example", "/dead", 502, "accepted a connection"},
		{"shop.example", "/slow", 504, "in time"},
	} {
		res := raw(t, p.plain, "GET "+c.path+" HTTP/1.1\r\nHost: "+c.host+"\r\n\r\n")
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != c.want || !strings.Contains(string(body), c.reason) || res.Header.Get("Server") != "portico" {
			t.Errorf("%s%s: %d %q (Server %q), want %d saying %q", c.host, c.path, res.StatusCode, body, res.Header.Get("Server"), c.want, c.reason)
		}
	}
}

func TestRetriesConnectionFailures(t *testing.T) {
	b := echo(t, "alive")
	p := webProxyAt(t, Options{}, deadAddr(t), addr(b), deadAddr(t))
	for i := range 6 {
		res := raw(t, p.plain, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if res.StatusCode != 200 {
			t.Fatalf("GET %d: status %d, want 200 from the live endpoint", i, res.StatusCode)
		}
	}
	// A POST is not idempotent, but an endpoint that refused the
	// connection got nothing of it: it goes to the next, as nginx sends
	// it. (That a POST is never sent twice is TestF7PostSentOnce's.)
	for i := range 3 {
		if res := raw(t, p.plain, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"); res.StatusCode != 200 {
			t.Errorf("POST %d over 1 live and 2 dead endpoints: %d, want 200", i, res.StatusCode)
		}
	}
}

// proxy-next-upstream http_502: a GET answered 502 goes to the next
// endpoint, on the same connection to the client, on every front-end
// (the HTTPS endpoint through Go's client too); a POST's 502 is the
// client's.
func TestNextUpstreamOnStatus(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "failing")
	}))
	t.Cleanup(failing.Close)
	ok := echo(t, "ok")
	p := start(t, Options{Policy: exchange.Settings{NextUpstream: exchange.NextOnError | exchange.NextOn502, Tries: 2}})
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(failing), addr(ok))},
	})
	c := dial(t, p.plain)
	for i := range 4 {
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if res, body := c.read("GET"); res.StatusCode != 200 || res.Header.Get("X-Backend") != "ok" {
			t.Fatalf("GET %d: %d %q, want the working endpoint's 200", i, res.StatusCode, body)
		}
	}
	posts := map[int]int{}
	for range 4 {
		posts[raw(t, p.plain, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi").StatusCode]++
	}
	if posts[502] == 0 || posts[200] == 0 {
		t.Errorf("POSTs over both endpoints got %v, want the failing one's 502 relayed as it came", posts)
	}
}

// wsBackend switches to an echo protocol, as a WebSocket server would, on
// a WebSocket upgrade, and answers 400 to anything else.
func wsBackend(t *testing.T) *httptest.Server {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("Connection") != "Upgrade" || r.Header.Get("Sec-WebSocket-Key") == "" {
			http.Error(w, "not an upgrade: "+fmt.Sprint(r.Header), 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(c, brw)
	}))
	t.Cleanup(b.Close)
	return b
}

func TestUpgrade(t *testing.T) {
	b := wsBackend(t)
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("ws", "", prefix("/", "ws"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("ws"): exchange.NewUpstream(addr(b))},
	})

	c, err := net.Dial("tcp", p.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// The first frame travels in the same packet as the request.
	_, _ = io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly;")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 101 || res.Header.Get("Upgrade") != "websocket" || res.Header.Get("Sec-Websocket-Accept") == "" {
		t.Fatalf("got %d %v, want 101 to websocket", res.StatusCode, res.Header)
	}
	_, _ = io.WriteString(c, "late")
	got := make([]byte, len("early;late"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "early;late" {
		t.Fatalf("echo through the proxy: %q, %v", got, err)
	}
}

// certs returns certificates for a.example and b.example and a TLS
// client that reports which one the server chose.
func twoCerts(t *testing.T) (a, b *tls.Certificate) {
	t.Helper()
	a, err := SelfSigned("a", "a.example")
	if err != nil {
		t.Fatal(err)
	}
	b, err = SelfSigned("b", "b.example")
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func tlsIngress(name, host, secret string, paths ...route.Path) route.Ingress {
	ing := ingress(name, host, paths...)
	ing.TLS = []route.TLS{{Hosts: []string{host}, SecretName: secret}}
	return ing
}

func TestTLS(t *testing.T) {
	web := echo(t, "web")
	certA, certB := twoCerts(t)
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes: table(t,
			tlsIngress("a", "a.example", "a-tls", prefix("/", "web")),
			tlsIngress("b", "b.example", "b-tls", prefix("/", "web")),
			tlsIngress("c", "c.example", "broken-tls", prefix("/", "web")),
		),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(web))},
		Certs: map[route.SecretRef]*tls.Certificate{
			{Namespace: "ns", Name: "a-tls"}: certA,
			{Namespace: "ns", Name: "b-tls"}: certB,
			// broken-tls did not load: c.example gets the default.
		},
	})
	for _, c := range []struct{ sni, wantCN string }{
		{"a.example", "a"},
		{"B.EXAMPLE", "b"},
		{"c.example", "portico default certificate"},
		{"", "portico default certificate"},
		{"unknown.example", "portico default certificate"},
	} {
		conn, err := tls.Dial("tcp", p.secure, &tls.Config{ServerName: c.sni, InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
		if err != nil {
			t.Errorf("SNI %q: %v", c.sni, err)
			continue
		}
		if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != c.wantCN {
			t.Errorf("SNI %q: certificate %q, want %q", c.sni, cn, c.wantCN)
		}
		conn.Close()
	}
	if got := p.Stats().TLSHandshakeErrors; got != 0 {
		t.Errorf("%d TLS handshake errors counted after good handshakes", got)
	}
	if _, err := tls.Dial("tcp", p.secure, &tls.Config{ServerName: "a.example", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 handshake succeeded, want TLS 1.2 or newer only")
	}
	// The server learns of the failure as it sends its alert.
	for end := time.Now().Add(2 * time.Second); p.Stats().TLSHandshakeErrors == 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := p.Stats().TLSHandshakeErrors; got != 1 {
		t.Errorf("%d TLS handshake errors counted, want 1 (the TLS 1.1 client)", got)
	}

	// HTTP/2 by ALPN, with a verified certificate; the backend still gets
	// HTTP/1.1 and the original Host.
	roots := certPool(certA)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, p.secure)
		},
	}}
	res, err := client.Get("https://a.example/h2?q=1")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.ProtoMajor != 2 || res.Header.Get("Server") != "portico" {
		t.Errorf("got %s with Server %q, want HTTP/2 from portico", res.Proto, res.Header.Get("Server"))
	}
	s := decode(t, res)
	if s.Proto != "HTTP/1.1" || s.Host != "a.example" || s.URI != "/h2?q=1" || s.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("backend saw %s %s %s, X-Forwarded-Proto %q", s.Proto, s.Host, s.URI, s.Header.Get("X-Forwarded-Proto"))
	}
}

func TestRedirectToHTTPS(t *testing.T) {
	web := echo(t, "web")
	optOut := tlsIngress("plain-ok", "b.example", "b-tls", prefix("/", "web"))
	optOut.NoSSLRedirect = true
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes: table(t,
			tlsIngress("a", "a.example", "a-tls", prefix("/", "web")),
			optOut,
			ingress("plain", "c.example", prefix("/", "web")),
		),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(web))},
	})
	res := raw(t, p.plain, "GET /p%41th?q=1 HTTP/1.1\r\nHost: a.example:8080\r\n\r\n")
	if res.StatusCode != 308 || res.Header.Get("Location") != "https://a.example/p%41th?q=1" {
		t.Errorf("TLS host over HTTP: %d Location %q, want 308 to https://a.example/p%%41th?q=1", res.StatusCode, res.Header.Get("Location"))
	}
	for _, host := range []string{"b.example", "c.example"} {
		if res := raw(t, p.plain, "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); res.StatusCode != 200 {
			t.Errorf("%s over HTTP: %d, want 200 (no redirect)", host, res.StatusCode)
		}
	}
}

func TestHostileClients(t *testing.T) {
	web := echo(t, "web")
	p := webProxy(t, Options{ReadHeaderTimeout: 300 * time.Millisecond, MaxHeaderBytes: 8 << 10}, web)
	for _, c := range []struct {
		name, req string
		want      int
	}{
		{"huge header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431},
		{"dot-dot", "GET /a/../b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"encoded dot-dot", "GET /a/%2e%2E/b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"dot", "GET /a/./b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"encoded slash", "GET /a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"encoded NUL", "GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 405},
		{"dots in a name are fine", "GET /a/..b/.c HTTP/1.1\r\nHost: x\r\n\r\n", 200},
	} {
		if res := raw(t, p.plain, c.req); res.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, res.StatusCode, c.want)
		}
	}

	// net/http answers "OPTIONS *" itself; it must not reach a backend.
	if res := raw(t, p.plain, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"); res.Header.Get("X-Backend") != "" {
		t.Errorf("OPTIONS * was forwarded")
	}

	// Slowloris: a client that never finishes its headers is cut off.
	conn, err := net.Dial("tcp", p.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // a guard, not a measure
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	var ne net.Error
	if err == nil && n > 0 && strings.HasPrefix(string(buf[:n]), "HTTP/1.1 2") || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a client that never ended its headers was not cut off: %q, %v", buf[:n], err)
	}
}

func TestConfigSwapDoesNotDisturbRequests(t *testing.T) {
	a, b := echo(t, "a"), echo(t, "b")
	p := start(t, Options{})
	cfgA := &exchange.Config{Routes: table(t, ingress("web", "", prefix("/", "web"))), Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(a))}}
	cfgB := &exchange.Config{Routes: cfgA.Routes, Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(b))}}
	p.Store(cfgA)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			if i%2 == 0 {
				p.Store(cfgB)
			} else {
				p.Store(cfgA)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	seenBackends := map[string]int{}
	for range 200 {
		res, err := http.Get("http://" + p.plain + "/")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("status %d during config swaps", res.StatusCode)
		}
		seenBackends[res.Header.Get("X-Backend")]++
	}
	cancel()
	wg.Wait()
	if seenBackends["a"] == 0 || seenBackends["b"] == 0 {
		t.Errorf("traffic did not follow the swaps: %v", seenBackends)
	}
}

// A slow answer on a kept-alive connection is a timeout, not a stale
// connection: the request is not sent again.
func TestTimeoutOnReusedConnectionIsNotRetried(t *testing.T) {
	var mu sync.Mutex
	count := 0
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		count++
		n := count
		mu.Unlock()
		if n > 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
	}))
	t.Cleanup(b.Close)
	p := webProxy(t, Options{Policy: readTimeout(200 * time.Millisecond)}, b)
	if res := raw(t, p.plain, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); res.StatusCode != 200 {
		t.Fatalf("first request: %d", res.StatusCode)
	}
	if res := raw(t, p.plain, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); res.StatusCode != 504 {
		t.Fatalf("slow request: %d, want 504", res.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if count != 2 {
		t.Errorf("the endpoint got %d requests, want 2: a timed-out request was sent again", count)
	}
}

// An endpoint that sends headers without end gets its request a 502, and
// the proxy does not buffer them all.
func TestEndlessResponseHeaders(t *testing.T) {
	endpoint := rawEndpoint(t, func(c net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(c))
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
		for { // until the proxy hangs up
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	})
	// Without a bound the proxy would read until this timeout: 504.
	p := webProxyAt(t, Options{Policy: readTimeout(5 * time.Second)}, endpoint)
	if res := raw(t, p.plain, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); res.StatusCode != 502 {
		t.Errorf("status %d, want 502", res.StatusCode)
	}
}
