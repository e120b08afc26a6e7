package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
	"golang.org/x/net/http2"
)

// Review of the endpoints spoken to by Go's client (transport.go): each
// test shows one way a client or an endpoint makes that path do what the
// core did not decide, over real sockets.

// tlsEcho is an HTTPS endpoint that answers with what it saw, as echo.
func tlsEcho(t *testing.T) string {
	t.Helper()
	b := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{r.Method, r.RequestURI, r.Host, r.Proto, r.Header, string(body)})
	}))
	t.Cleanup(b.Close)
	return addr(b)
}

// A path that begins with "//" is an origin-form target the core routes
// as a path ("/" matches it). Go's client, given it as URL.Opaque, writes
// it in absolute form, "https://evil.example/admin": the endpoint then
// takes its authority from the target, not from the Host the core
// approved, and its path is "/admin", which the core never routed (an
// Ingress guarding /admin with auth is passed by).
func TestReviewDoubleSlashTargetToHTTPSBackend(t *testing.T) {
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, protoIngress("web", "web.example", "web", route.HTTPS)),
		Upstreams: map[exchange.Target]*exchange.Upstream{protoTarget("web", route.HTTPS): exchange.NewUpstream(tlsEcho(t))},
	})
	for _, front := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(front, func(t *testing.T) {
			var res *http.Response
			if front == "HTTP/1.1" {
				res = raw(t, p.plain, "GET //evil.example/admin?x=1 HTTP/1.1\r\nHost: web.example\r\nConnection: close\r\n\r\n")
			} else {
				res = h2Get(t, p, "web.example", "//evil.example/admin?x=1")
			}
			s := decode(t, res)
			if s.Host != "web.example" || s.URI != "//evil.example/admin?x=1" {
				t.Errorf("the endpoint saw Host %q and target %q, want web.example and //evil.example/admin?x=1", s.Host, s.URI)
			}
		})
	}
	// To an HTTP/2 endpoint, Go's client refuses the absolute form as a
	// :path: the request the core approved is a 502.
	t.Run("h2c", func(t *testing.T) {
		p := h2cProxy(t, exchange.Settings{}, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, r.Host+" "+r.RequestURI)
		})
		res := raw(t, p.plain, "GET //evil.example/admin?x=1 HTTP/1.1\r\nHost: h2c.example\r\nConnection: close\r\n\r\n")
		if body, _ := io.ReadAll(res.Body); res.StatusCode != 200 || string(body) != "h2c.example //evil.example/admin?x=1" {
			t.Errorf("got %d %q, want 200 \"h2c.example //evil.example/admin?x=1\"", res.StatusCode, body)
		}
	})
}

// rvH2Client is an HTTP/2 client of the proxy's TLS listener.
func rvH2Client(p *proxy, conf *http.HTTP2Config) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
		HTTP2:             conf,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, p.secure)
		},
	}
	return &http.Client{Transport: tr}
}

// h2Get sends GET target to host over HTTP/2, target as it is.
func h2Get(t *testing.T, p *proxy, host, target string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+host+"/", nil)
	path, query, _ := strings.Cut(target, "?")
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = path, path, query // :path as it is
	res, err := rvH2Client(p, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	res.Body = io.NopCloser(strings.NewReader(string(body)))
	return res
}

// h2cServer serves h on an h2c endpoint (prior knowledge) and returns
// its address.
func h2cServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// An HTTP/2 endpoint's answer is taken by Go's client as fast as the
// endpoint sends it, up to the stream's receive window, whatever the
// client reads: 4 MiB per stream by default (1 GiB per connection). A
// client that opens its 128 streams to a streaming endpoint and reads
// none of them has the proxy hold 512 MiB per connection for as long as
// ClientSendTimeout, and, the connection's window being shared, stalls
// every other client's streams on that endpoint connection once the
// stalled ones hold its 1 GiB (TestReviewH2StalledStreamsIsolated). The
// pooled HTTP/1.1 path reads no more than the client takes (a 32 KiB
// buffer and the sockets'). Here one stream: the endpoint must not get
// far ahead of a client that reads nothing.
func TestReviewH2BackendBuffersAheadOfClient(t *testing.T) {
	var written atomic.Int64
	beAddr := h2cServer(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 16<<10)
		w.WriteHeader(200)
		for range 32 << 20 / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			written.Add(int64(len(chunk)))
		}
	})
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, protoIngress("h2c", "h2c.example", "h2c", route.H2C)),
		Upstreams: map[exchange.Target]*exchange.Upstream{protoTarget("h2c", route.H2C): exchange.NewUpstream(beAddr)},
	})
	// The client's own windows are small, so that what the proxy holds
	// is what counts.
	c := rvH2Client(p, &http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 10, MaxReceiveBufferPerStream: 64 << 10})
	req, _ := http.NewRequest("GET", "https://h2c.example/", nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	time.Sleep(1500 * time.Millisecond) // the client reads nothing
	if n := written.Load(); n > 1<<20 {
		t.Errorf("the endpoint wrote %d KiB to a client that read none of it: the proxy buffers them (want at most 1 MiB ahead)", n>>10)
	}
}

// h2cProxy runs a proxy with policy pol in front of an h2c endpoint
// serving h, at h2c.example.
func h2cProxy(t *testing.T, pol exchange.Settings, h http.HandlerFunc) *proxy {
	t.Helper()
	beAddr := h2cServer(t, h)
	p := start(t, Options{Policy: pol})
	p.Store(&exchange.Config{
		Routes:    table(t, protoIngress("h2c", "h2c.example", "h2c", route.H2C)),
		Upstreams: map[exchange.Target]*exchange.Upstream{protoTarget("h2c", route.H2C): exchange.NewUpstream(beAddr)},
	})
	return p
}

// The core's limits hold on a body streamed to an HTTP/2 endpoint as on
// one received whole: 408 past ClientBodyTimeout, 413 past MaxBodySize,
// 504 when the endpoint does not answer within ReadTimeout.
func TestReviewStreamedBodyLimits(t *testing.T) {
	p := h2cProxy(t, limits(exchange.Limits{ClientBodyTimeout: 300 * time.Millisecond, ReadTimeout: 5 * time.Second, MaxBodySize: 1000}),
		func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body) // answers once the body is whole
			if err != nil {
				return
			}
			_, _ = io.WriteString(w, strings.Repeat("x", len(b)))
		})
	send := func(t *testing.T, write func(w *io.PipeWriter)) (int, time.Duration) {
		t.Helper()
		pr, pw := io.Pipe()
		go write(pw)
		req, _ := http.NewRequest("POST", "https://h2c.example/", pr)
		start := time.Now()
		res, err := rvH2Client(p, nil).Do(req)
		if err != nil {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		_ = pw.Close()
		return res.StatusCode, time.Since(start)
	}
	t.Run("client body timeout", func(t *testing.T) {
		stop := make(chan struct{})
		defer close(stop)
		code, took := send(t, func(w *io.PipeWriter) {
			_, _ = w.Write([]byte("part"))
			<-stop // and nothing more
		})
		if code != 408 || took > 3*time.Second {
			t.Errorf("a body that stopped coming: %d after %v, want 408 after ClientBodyTimeout", code, took)
		}
	})
	t.Run("body too large", func(t *testing.T) {
		code, _ := send(t, func(w *io.PipeWriter) {
			_, _ = w.Write(make([]byte, 5000))
			_ = w.Close()
		})
		if code != 413 {
			t.Errorf("a body of 5000 bytes over a limit of 1000: %d, want 413", code)
		}
	})
}

// slowTLS is an HTTPS endpoint that reads the body, waits d, and answers
// how many bytes it got.
func slowTLS(t *testing.T, d time.Duration) string {
	t.Helper()
	b := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		time.Sleep(d)
		_, _ = io.WriteString(w, strings.Repeat("x", int(n)))
	}))
	t.Cleanup(b.Close)
	return addr(b)
}

// ReadTimeout bounds the wait for the endpoint's answer, SendTimeout the
// wait between two writes of the request: the watchdog is one timer, and
// each body read re-arms it with SendTimeout, so that once the body is
// sent the answer must come within SendTimeout, not ReadTimeout. With
// proxy-read-timeout raised for a slow endpoint (or a long gRPC stream)
// and proxy-send-timeout left short, requests with a body are cut (504,
// or a stream reset) long before the timeout the operator set.
func TestReviewSendTimeoutShortensReadTimeout(t *testing.T) {
	p := start(t, Options{Policy: limits(exchange.Limits{ReadTimeout: 5 * time.Second, SendTimeout: 300 * time.Millisecond})})
	p.Store(&exchange.Config{
		Routes:    table(t, protoIngress("web", "web.example", "web", route.HTTPS)),
		Upstreams: map[exchange.Target]*exchange.Upstream{protoTarget("web", route.HTTPS): exchange.NewUpstream(slowTLS(t, time.Second))},
	})
	res := raw(t, p.plain, "POST / HTTP/1.1\r\nHost: web.example\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
	if body, _ := io.ReadAll(res.Body); res.StatusCode != 200 || string(body) != "xxxxx" {
		t.Errorf("an endpoint answering after 1 s, ReadTimeout 5 s: %d %q, want 200 xxxxx", res.StatusCode, body)
	}
}

// Go's client adds a User-Agent of its own to a request that had none,
// a field the core did not put in the head (nginx sends none either).
func TestReviewNoUserAgentAdded(t *testing.T) {
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, protoIngress("web", "web.example", "web", route.HTTPS)),
		Upstreams: map[exchange.Target]*exchange.Upstream{protoTarget("web", route.HTTPS): exchange.NewUpstream(tlsEcho(t))},
	})
	s := decode(t, raw(t, p.plain, "GET / HTTP/1.1\r\nHost: web.example\r\nConnection: close\r\n\r\n"))
	if ua, ok := s.Header["User-Agent"]; ok {
		t.Errorf("the endpoint got User-Agent %q, which the client did not send", ua)
	}
}

// Connections are pooled by endpoint address within a Transport, and a
// Transport serves every target with the same TLS settings: a connection
// verified for one Service's name (<service>.<namespace>.svc, the
// default proxy-ssl-name) carries the requests of another Service at the
// same address, whose name its certificate does not have. Whether the
// second Service's endpoint is verified depends on which request came
// first.
func TestReviewVerifiedNameNotSharedAcrossTargets(t *testing.T) {
	beCert, err := SelfSigned("a", "a.ns.svc")
	if err != nil {
		t.Fatal(err)
	}
	beAddr := httpsBackend(t, beCert)
	p := start(t, Options{})
	ing := ingress("web", "", prefix("/a", "a"), prefix("/b", "b"))
	ing.Protocol = route.HTTPS
	b := &exchange.BackendTLS{Verify: true, Roots: certPool(beCert), Key: "v"}
	p.Store(&exchange.Config{
		Routes: table(t, ing),
		Upstreams: map[exchange.Target]*exchange.Upstream{
			protoTarget("a", route.HTTPS): exchange.NewUpstream(beAddr),
			protoTarget("b", route.HTTPS): exchange.NewUpstream(beAddr),
		},
		Rules: map[string]*exchange.Rules{"ns/web": {BackendTLS: b}},
	})
	get := func(path string) int {
		res := raw(t, p.plain, "GET "+path+" HTTP/1.1\r\nHost: web.example\r\n\r\n")
		return res.StatusCode
	}
	if code := get("/b"); code != 502 {
		t.Fatalf("b's endpoint has no certificate for b.ns.svc: %d, want 502", code)
	}
	if code := get("/a"); code != 200 {
		t.Fatalf("a's endpoint: %d, want 200", code)
	}
	if code := get("/b"); code != 502 {
		t.Errorf("b after a, on a's connection: %d, want 502 (b's name was never verified)", code)
	}
}

// An endpoint that sends its head and then nothing is cut after
// ReadTimeout, however long SendTimeout is (the watchdog keeps the longer
// of the two only while the body progresses).
func TestReviewHeadThenNothing(t *testing.T) {
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	p := h2cProxy(t, limits(exchange.Limits{ReadTimeout: 300 * time.Millisecond, SendTimeout: 10 * time.Second}),
		func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "begun")
			w.(http.Flusher).Flush()
			<-stall
		})
	for _, body := range []string{"", "hello"} {
		req, _ := http.NewRequest("POST", "https://h2c.example/", strings.NewReader(body))
		start := time.Now()
		res, err := rvH2Client(p, nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
		if err == nil || time.Since(start) > 3*time.Second {
			t.Errorf("body %q: the answer ended with %v after %v, want it broken after ReadTimeout", body, err, time.Since(start))
		}
	}
}

// An endpoint that takes none of the body is cut after SendTimeout, not
// ReadTimeout.
func TestReviewBodyNotTaken(t *testing.T) {
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	p := h2cProxy(t, limits(exchange.Limits{ReadTimeout: 20 * time.Second, SendTimeout: 300 * time.Millisecond, MaxBodySize: -1}),
		func(w http.ResponseWriter, r *http.Request) { <-stall })
	c, err := net.Dial("tcp", p.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 4 << 20 // beyond the endpoint's windows
	go func() {
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: h2c.example\r\nContent-Length: 4194304\r\n\r\n")
		_, _ = c.Write(make([]byte, n))
	}()
	start := time.Now()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("after %v: %v", time.Since(start), err)
	}
	if res.StatusCode != 504 || time.Since(start) > 5*time.Second {
		t.Errorf("an endpoint that reads no body: %d after %v, want 504 after SendTimeout", res.StatusCode, time.Since(start))
	}
}

// countedH2C is an h2c endpoint that counts its connections.
type countedH2C struct {
	addr     string
	accepted atomic.Int64 // connections accepted so far
	open     atomic.Int64 // connections open now
}

// h2cCounted serves h on an h2c endpoint that allows 1,000 streams on a
// connection, as gRPC servers allow any number, and closes connections
// idle for idle (0: never).
func h2cCounted(t *testing.T, idle time.Duration, h http.HandlerFunc) *countedH2C {
	t.Helper()
	be := &countedH2C{}
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols), IdleTimeout: idle,
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1000},
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				be.accepted.Add(1)
				be.open.Add(1)
			case http.StateClosed, http.StateHijacked:
				be.open.Add(-1)
			}
		}}
	srv.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	be.addr = ln.Addr().String()
	return be
}

// h2cRoute has p send h2c.example to be, in h2c.
func h2cRoute(t *testing.T, p *proxy, be *countedH2C) {
	t.Helper()
	p.Store(&exchange.Config{
		Routes:    table(t, protoIngress("h2c", "h2c.example", "h2c", route.H2C)),
		Upstreams: map[exchange.Target]*exchange.Upstream{protoTarget("h2c", route.H2C): exchange.NewUpstream(be.addr)},
	})
}

// h2PoolConns is how many endpoint connections the HTTP/2 pools hold.
func h2PoolConns(s *Server) int {
	s.std.mu.Lock()
	defer s.std.mu.Unlock()
	n := 0
	for _, c := range s.std.m {
		if t, ok := c.rt.(*http2.Transport); ok {
			p := t.ConnPool.(*h2Pool)
			p.mu.Lock()
			n += len(p.addr)
			p.mu.Unlock()
		}
	}
	return n
}

// eventually waits up to 5 s for ok.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !ok(); {
		if time.Now().After(end) {
			t.Fatalf("after 5 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An endpoint that allows any number of streams gets at most
// h2StreamsPerConn on one connection: the streams of clients that stopped
// reading hold no more than their connection's window can spare (see
// h2pool.go), and the next client's stream goes on another connection and
// completes. With every stream on one connection, 4,096 stalled streams
// would freeze all others to the endpoint; here h2StreamsPerConn of them
// show the mechanism.
func TestReviewH2StalledStreamsIsolated(t *testing.T) {
	be := h2cCounted(t, 0, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		chunk := make([]byte, 16<<10)
		w.WriteHeader(200)
		for { // until the stream is reset or the endpoint closed
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	p := start(t, Options{})
	h2cRoute(t, p, be)
	ok := func() {
		req, _ := http.NewRequest("GET", "https://h2c.example/ok", nil)
		res, err := rvH2Client(p, nil).Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 || string(body) != "ok" {
			t.Errorf("%d %q %v, want 200 ok", res.StatusCode, body, err)
		}
	}
	ok() // the endpoint connection is made, and idle
	// One client connection (the proxy allows it 128 streams) whose
	// streams take 64 KiB each and then read nothing.
	c := rvH2Client(p, &http.HTTP2Config{MaxReceiveBufferPerConnection: 16 << 20, MaxReceiveBufferPerStream: 64 << 10})
	defer c.CloseIdleConnections()
	stalled := make(chan *http.Response, h2StreamsPerConn)
	for range h2StreamsPerConn {
		go func() {
			req, _ := http.NewRequest("GET", "https://h2c.example/stall", nil)
			res, err := c.Do(req)
			if err != nil {
				t.Error(err)
			}
			stalled <- res
		}()
	}
	for range h2StreamsPerConn {
		if res := <-stalled; res != nil {
			defer res.Body.Close()
		}
	}
	if t.Failed() {
		return
	}
	if n := be.accepted.Load(); n != 1 {
		t.Errorf("%d stalled streams came on %d endpoint connections, want the one made before", h2StreamsPerConn, n)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ok()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("with %d streams stalled, another client's request had no answer in 10 s", h2StreamsPerConn)
	}
	if n := be.accepted.Load(); n != 2 {
		t.Errorf("stream %d to the endpoint came on connection %d, want it on a second one", h2StreamsPerConn+1, n)
	}
}

// Endpoint connections are reused, not one per request; a connection
// the endpoint closes, or that stays idle, leaves the pool and is
// counted out of MaxConnections.
func TestReviewH2ConnectionsReused(t *testing.T) {
	be := h2cCounted(t, time.Second, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	p := start(t, Options{})
	h2cRoute(t, p, be)
	c := rvH2Client(p, nil)
	get := func() error {
		req, _ := http.NewRequest("GET", "https://h2c.example/", nil)
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 || string(body) != "ok" {
			return fmt.Errorf("%d %q %v, want 200 ok", res.StatusCode, body, err)
		}
		return nil
	}
	for range 4 { // rounds of 50 at once, fewer than h2StreamsPerConn
		errs := make(chan error, 50)
		for range 50 {
			go func() { errs <- get() }()
		}
		for range 50 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := be.accepted.Load(); n != 1 {
		t.Errorf("200 requests, 50 at a time: %d endpoint connections, want 1", n)
	}

	// The endpoint closes its idle connection (after 1 s): the pool
	// forgets it, and the next request makes another.
	eventually(t, "the endpoint's idle connection is still open", func() bool { return be.open.Load() == 0 })
	eventually(t, "the pool holds a connection the endpoint closed", func() bool { return h2PoolConns(p.Server) == 0 })
	if err := get(); err != nil {
		t.Fatal(err)
	}
	if n := be.accepted.Load(); n != 2 || h2PoolConns(p.Server) != 1 {
		t.Errorf("after the endpoint closed its connection: %d accepted, %d pooled, want 2 and 1", n, h2PoolConns(p.Server))
	}

	// closeIdle (the server's janitor) closes it from the proxy's side.
	p.std.closeIdle(false)
	if n := h2PoolConns(p.Server); n != 0 {
		t.Errorf("after closeIdle the pool holds %d connections, want 0", n)
	}
	eventually(t, "closeIdle left the endpoint connection open", func() bool { return be.open.Load() == 0 })
	c.CloseIdleConnections()
	eventually(t, "connections still counted against MaxConnections", func() bool { return p.open.Load() == 0 })
}
