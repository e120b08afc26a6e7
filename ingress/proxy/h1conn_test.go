package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// Tests of the HTTP/1.x front-ends over real sockets: the event loops,
// and the goroutine loop (with -goroutine-loop, and over TLS).

// webProxy starts a proxy routing everything to backend b.
func webProxy(t *testing.T, opts Options, b *httptest.Server) *proxy {
	t.Helper()
	return webProxyAt(t, opts, addr(b))
}

// webProxyAt is webProxy for endpoints given by their addresses.
func webProxyAt(t *testing.T, opts Options, endpoints ...string) *proxy {
	t.Helper()
	p := start(t, opts)
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(endpoints...)},
	})
	return p
}

// client is one connection to the proxy, read with a bufio.Reader.
type client struct {
	t *testing.T
	net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, hostport string) *client {
	t.Helper()
	c, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t, c, bufio.NewReader(c)}
}

func (c *client) send(req string) {
	c.t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one response to a request of method, body included.
func (c *client) read(method string) (*http.Response, string) {
	c.t.Helper()
	res, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading a response: %v", err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("reading a response body: %v", err)
	}
	return res, string(body)
}

// closed reports whether the proxy closed the connection: the next read
// ends without data, and not for a timeout.
func (c *client) closed() bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.br.Read(make([]byte, 1))
	var ne net.Error
	return n == 0 && err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestPipelinedKeepAlive(t *testing.T) {
	p := webProxy(t, Options{}, echo(t, "web"))
	c := dial(t, p.plain)
	// Three requests in one write, then a fourth after the answers.
	c.send("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"/1", "/2", "/3"} {
		res, body := c.read("GET")
		if res.StatusCode != 200 || !strings.Contains(body, `"URI":"`+want+`"`) {
			t.Fatalf("got %d %s, want the answer to %s", res.StatusCode, body, want)
		}
		if res.Close || res.Header.Get("Date") == "" || res.Header.Get("Server") != "portico" {
			t.Errorf("response to %s: close %v, headers %v", want, res.Close, res.Header)
		}
	}
	c.send("GET /4 HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, body := c.read("GET"); res.StatusCode != 200 || !strings.Contains(body, `"URI":"/4"`) {
		t.Fatalf("fourth request: %d %s", res.StatusCode, body)
	}
	c.send("GET /5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if res, _ := c.read("GET"); res.StatusCode != 200 || !res.Close {
		t.Errorf("Connection: close: %d, close %v", res.StatusCode, res.Close)
	}
	if !c.closed() {
		t.Error("the connection stayed open after Connection: close")
	}
}

func TestHTTP10(t *testing.T) {
	p := webProxy(t, Options{}, echo(t, "web"))

	c := dial(t, p.plain)
	c.send("GET /old HTTP/1.0\r\n\r\n")
	res, body := c.read("GET")
	if res.StatusCode != 200 || res.Proto != "HTTP/1.0" || !strings.Contains(body, `"Proto":"HTTP/1.1"`) {
		t.Fatalf("HTTP/1.0: %s %d %s, want 200 in HTTP/1.0, sent upstream as HTTP/1.1", res.Proto, res.StatusCode, body)
	}
	if !c.closed() {
		t.Error("HTTP/1.0 without keep-alive: the connection stayed open")
	}

	c = dial(t, p.plain)
	for i := range 2 {
		c.send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		res, _ := c.read("GET")
		if res.StatusCode != 200 || res.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("HTTP/1.0 keep-alive, request %d: %d, Connection %q", i, res.StatusCode, res.Header.Get("Connection"))
		}
	}
}

func TestRequestBodyForwarded(t *testing.T) {
	p := webProxy(t, Options{}, echo(t, "web"))
	c := dial(t, p.plain)
	big := strings.Repeat("0123456789", 10000) // more than any buffer
	for _, body := range []string{"hello", big, ""} {
		c.send(fmt.Sprintf("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
		res, got := c.read("POST")
		if res.StatusCode != 200 {
			t.Fatalf("POST of %d bytes: %d", len(body), res.StatusCode)
		}
		if !strings.Contains(got, `"Body":"`+body+`"`) {
			t.Fatalf("POST of %d bytes: the backend saw another body", len(body))
		}
	}
	// The body of a request the proxy answers itself is read through.
	c.send("POST /x/../y HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, _ := c.read("POST"); res.StatusCode != 400 {
		t.Fatalf("POST to a bad path: %d, want 400", res.StatusCode)
	}
	if res, body := c.read("GET"); res.StatusCode != 200 || !strings.Contains(body, `"URI":"/after"`) {
		t.Fatalf("request after an unread body: %d %s", res.StatusCode, body)
	}
}

func TestResponseFraming(t *testing.T) {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			for i := range 3 {
				fmt.Fprintf(w, "part %d;", i)
				http.NewResponseController(w).Flush()
			}
			w.Header().Set("X-Sum", "3 parts")
		case "/close":
			// No length, no chunks: the body runs until the close.
			c, brw, _ := http.NewResponseController(w).Hijack()
			brw.WriteString("HTTP/1.1 200 OK\r\nX-Kind: close\r\n\r\nuntil the end")
			brw.Flush()
			c.Close()
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.Header().Set("Content-Length", "42")
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "fixed")
		}
	}))
	t.Cleanup(b.Close)
	p := webProxy(t, Options{}, b)
	c := dial(t, p.plain)

	c.send("GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
	res, body := c.read("GET")
	if body != "part 0;part 1;part 2;" || len(res.TransferEncoding) != 1 || res.Trailer.Get("X-Sum") != "3 parts" {
		t.Errorf("chunked: body %q, Transfer-Encoding %v, trailer %v", body, res.TransferEncoding, res.Trailer)
	}
	c.send("GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, body := c.read("GET"); body != "until the end" || res.Header.Get("X-Kind") != "close" || res.Close {
		t.Errorf("close-delimited to HTTP/1.1: body %q, headers %v, close %v; want it chunked on a kept connection", body, res.Header, res.Close)
	}
	for _, path := range []string{"/204", "/304"} {
		c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		if res, body := c.read("GET"); body != "" || res.StatusCode != map[string]int{"/204": 204, "/304": 304}[path] {
			t.Errorf("%s: %d with body %q", path, res.StatusCode, body)
		}
	}
	c.send("HEAD /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, body := c.read("HEAD"); body != "" || res.ContentLength != 5 {
		t.Errorf("HEAD: body %q, Content-Length %d, want none and 5", body, res.ContentLength)
	}
	c.send("GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.read("GET"); body != "fixed" {
		t.Errorf("GET after HEAD, 204 and 304: body %q", body)
	}

	// HTTP/1.0 has no chunks: the body runs until the proxy closes.
	c = dial(t, p.plain)
	c.send("GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(res.Body)
	if string(all) != "part 0;part 1;part 2;" || !res.Close {
		t.Errorf("chunked to HTTP/1.0: %q, close %v", all, res.Close)
	}
}

// Requests of the kinds the proxy once left to net/http (Expect, a chunked
// body, an absolute target, an unusual method) are served like any other,
// and so is what follows on the connection.
func TestUnusualRequests(t *testing.T) {
	b := echo(t, "web")
	p := webProxy(t, Options{}, b)
	for _, c := range []struct {
		name, req, body string
		method          string
	}{
		{"expect", "PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", "data", "PUT"},
		{"chunked body", "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n0\r\n\r\n", "data", "POST"},
		{"absolute form", "GET http://x/abs HTTP/1.1\r\nHost: x\r\n\r\n", "", "GET"},
		{"odd method", "PROPFIND /d HTTP/1.1\r\nHost: x\r\n\r\n", "", "PROPFIND"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := dial(t, p.plain)
			cl.send("GET /before HTTP/1.1\r\nHost: x\r\n\r\n")
			if res, _ := cl.read("GET"); res.StatusCode != 200 {
				t.Fatalf("fast request: %d", res.StatusCode)
			}
			cl.send(c.req)
			res, err := http.ReadResponse(cl.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode == 100 {
				cl.send(c.body)
				res, err = http.ReadResponse(cl.br, nil)
				if err != nil {
					t.Fatal(err)
				}
			}
			body, _ := io.ReadAll(res.Body)
			s := decode(t, &http.Response{StatusCode: res.StatusCode, Body: io.NopCloser(strings.NewReader(string(body)))})
			if s.Method != c.method || s.Body != c.body || s.Header.Get("X-Forwarded-Proto") != "http" {
				t.Errorf("backend saw %s body %q, X-Forwarded-Proto %q", s.Method, s.Body, s.Header.Get("X-Forwarded-Proto"))
			}
			cl.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
			if res, body := cl.read("GET"); res.StatusCode != 200 || !strings.Contains(body, `"URI":"/after"`) {
				t.Errorf("the next request: %d %s", res.StatusCode, body)
			}
		})
	}
}

// A WebSocket upgrade after fast requests on the same connection.
func TestUpgradeAfterFastRequests(t *testing.T) {
	p := start(t, Options{})
	ws := wsBackend(t)
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("ws", "", prefix("/", "ws"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("ws"): exchange.NewUpstream(addr(ws))},
	})
	c := dial(t, p.plain)
	c.send("GET /plain HTTP/1.1\r\nHost: x\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
	for range 2 {
		if res, _ := c.read("GET"); res.StatusCode != 400 { // not an upgrade: the backend says so
			t.Fatalf("fast request: %d", res.StatusCode)
		}
	}
	c.send("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nping")
	res, err := http.ReadResponse(c.br, nil)
	if err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo after the upgrade: %q %v", got, err)
	}
}

// Every shape of request that lets one request hide in another, or that
// proxies read differently, is answered 400 and the connection closed.
func TestSmuggling(t *testing.T) {
	hit := atomic.Int32{}
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit.Add(1) }))
	t.Cleanup(b.Close)
	p := webProxy(t, Options{}, b)
	for _, c := range []struct{ name, req string }{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"},
		{"two CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"},
		{"same CL twice", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd"},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd"},
		{"CL sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd"},
		{"CL hex", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x4\r\n\r\nabcd"},
		{"CL huge", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 4\r\n\r\nabcd"},
		{"bad name", "GET / HTTP/1.1\r\nHost: x\r\nX(A): a\r\n\r\n"},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"},
		{"CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n"},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
		{"bad Host", "GET / HTTP/1.1\r\nHost: x/y\r\n\r\n"},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"bad version", "GET / HTTP/1.1x\r\nHost: x\r\n\r\n"},
		{"no version", "GET /\r\nHost: x\r\n\r\n"},
		{"empty method", " / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := dial(t, p.plain)
			cl.send(c.req)
			if res, _ := cl.read("GET"); res.StatusCode != 400 || !res.Close {
				t.Errorf("status %d, close %v: want 400 and the connection closed", res.StatusCode, res.Close)
			}
			if !cl.closed() {
				t.Error("the connection stayed open")
			}
		})
	}
	if n := hit.Load(); n != 0 {
		t.Errorf("%d smuggling requests reached the backend", n)
	}
}

func TestHeaderLimits(t *testing.T) {
	p := webProxy(t, Options{MaxHeaderBytes: 4 << 10}, echo(t, "web"))
	many := strings.Repeat("X-A: a\r\n", h1.MaxFields+1)
	for name, req := range map[string]string{
		"big field":    "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 5<<10) + "\r\n\r\n",
		"long target":  "GET /" + strings.Repeat("a", 5<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n",
		"many fields":  "GET / HTTP/1.1\r\nHost: x\r\n" + many + "\r\n",
		"blank lines":  strings.Repeat("\r\n", 3<<10) + "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"after a fast": "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 5<<10) + "\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			cl := dial(t, p.plain)
			cl.send(req)
			res, _ := cl.read("GET")
			if name == "after a fast" {
				res, _ = cl.read("GET")
			}
			if res.StatusCode != 431 || !cl.closed() {
				t.Errorf("status %d: want 431 and the connection closed", res.StatusCode)
			}
		})
	}
}

func TestTimeouts(t *testing.T) {
	p := webProxy(t, Options{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}, echo(t, "web"))

	// Slowloris: a byte now and then does not keep the headers open.
	slow := dial(t, p.plain)
	began := time.Now()
	go func() {
		for _, b := range []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1234567890") {
			if _, err := slow.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if !slow.closed() {
		t.Error("a slow client was not cut off")
	} else if d := time.Since(began); d > 2*time.Second {
		t.Errorf("a slow client was cut off after %v, want about 200ms", d)
	}

	// An idle keep-alive connection is closed.
	c := dial(t, p.plain)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, _ := c.read("GET"); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	began = time.Now()
	if !c.closed() {
		t.Error("an idle connection stayed open")
	} else if d := time.Since(began); d > 2*time.Second {
		t.Errorf("an idle connection was closed after %v, want about 300ms", d)
	}
}

// A client that leaves in the middle of a streamed response leaves no
// goroutine behind, and the endpoint's connection is dropped.
func TestClientLeavesMidResponse(t *testing.T) {
	stopped := make(chan struct{}, 1)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { stopped <- struct{}{} }()
		for {
			if _, err := io.WriteString(w, strings.Repeat("x", 1<<10)); err != nil {
				return
			}
			http.NewResponseController(w).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	}))
	t.Cleanup(b.Close)
	p := webProxy(t, Options{}, b)
	for range 100 { // let the server's own goroutines start
		if strings.Count(goroutines(), "handoff).Accept") == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := runtime.NumGoroutine()
	c := dial(t, p.plain)
	c.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(c.br, nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the endpoint is still streaming to a client that left")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines, %d before the client came:\n%s", n, before, goroutines())
	}
}

func goroutines() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// HTTP/1.1 over TLS: every request, a chunked one included, knows it came
// over TLS.
func TestTLSRequests(t *testing.T) {
	web := echo(t, "web")
	cert, err := SelfSigned("a", "a.example")
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, tlsIngress("a", "a.example", "a-tls", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(web))},
		Certs:     map[route.SecretRef]*tls.Certificate{{Namespace: "ns", Name: "a-tls"}: cert},
	})
	conn, err := tls.Dial("tcp", p.secure, &tls.Config{ServerName: "a.example", RootCAs: certPool(cert), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t, conn, bufio.NewReader(conn)}
	for _, req := range []string{
		"GET /fast HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"POST /handed HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"GET /after HTTP/1.1\r\nHost: a.example\r\n\r\n",
	} {
		c.send(req)
		res, body := c.read("GET")
		if res.StatusCode != 200 {
			t.Fatalf("%q: status %d (a 308 means the TLS was forgotten)", req, res.StatusCode)
		}
		s := decode(t, &http.Response{Body: io.NopCloser(strings.NewReader(body))})
		if s.Header.Get("X-Forwarded-Proto") != "https" {
			t.Errorf("%q: X-Forwarded-Proto %q, want https", req, s.Header.Get("X-Forwarded-Proto"))
		}
	}
}

// A panic while serving a connection (here in Observe) closes it; the
// server goes on.
func TestPanicClosesOnlyTheConnection(t *testing.T) {
	var panicked atomic.Bool
	p := webProxy(t, Options{Observe: func(r exchange.Record) {
		if r.Path == "/boom" {
			panicked.Store(true)
			panic("boom")
		}
	}}, echo(t, "web"))
	c := dial(t, p.plain)
	c.send("GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
	// The answer may have gone out before Observe: what matters is that
	// the connection ends.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.br)
	var ne net.Error
	if !panicked.Load() || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("panicked %v, reading until the end: %v; want a panic and the connection closed", panicked.Load(), err)
	}
	if res := raw(t, p.plain, "GET /fine HTTP/1.1\r\nHost: x\r\n\r\n"); res.StatusCode != 200 {
		t.Errorf("after a panic: %d", res.StatusCode)
	}
}

// Shutdown lets a request in flight finish and closes idle connections.
func TestGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "done")
	}))
	t.Cleanup(b.Close)
	s := newServer(t, Options{})
	s.Store(&exchange.Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(b))},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln, nil, 10*time.Second) }()

	idle := dial(t, ln.Addr().String())
	idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	idle.read("GET")
	busy := dial(t, ln.Addr().String())
	busy.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	cancel()
	if !idle.closed() {
		t.Error("an idle connection stayed open during shutdown")
	}
	close(release)
	if res, body := busy.read("GET"); res.StatusCode != 200 || body != "done" || !res.Close {
		t.Errorf("request in flight: %d %q close %v", res.StatusCode, body, res.Close)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// An endpoint that sends a body with its answer to HEAD does not get the
// body taken for the answer to the next request on its connection.
func TestBodyToHEADNotReused(t *testing.T) {
	endpoint := rawEndpoint(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
		}
	})
	p := webProxyAt(t, Options{}, endpoint)
	c := dial(t, p.plain)
	c.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, _ := c.read("HEAD"); res.StatusCode != 200 {
		t.Fatalf("HEAD: %d", res.StatusCode)
	}
	time.Sleep(50 * time.Millisecond) // let the stray body arrive
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, body := c.read("GET"); res.StatusCode != 200 || body != "hello" {
		t.Errorf("GET after HEAD: %d %q", res.StatusCode, body)
	}
}

// Naming Content-Length in Connection, which makes the other fields it
// names hop-by-hop, does not separate a body from its length on either
// side: that would let the body be read as another request or response.
func TestConnectionCannotDropLength(t *testing.T) {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Connection", "Content-Length")
		w.Header().Set("Content-Length", "6")
		io.WriteString(w, "got "+strconv.Itoa(len(body))+"\n")
	}))
	t.Cleanup(b.Close)
	p := webProxy(t, Options{}, b)
	c := dial(t, p.plain)
	for range 2 {
		c.send("POST / HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nGET /\r\n")
		res, body := c.read("POST")
		if res.StatusCode != 200 || body != "got 5\n" || res.ContentLength != 6 {
			t.Fatalf("%d %q, Content-Length %d: want the backend to get the 5-byte body, and its length to reach the client", res.StatusCode, body, res.ContentLength)
		}
	}
}

// An endpoint that answers before it has read the whole body (a 413 for an
// upload too large) and closes: the client gets that answer, not a 502.
func TestEarlyAnswerToALargeBody(t *testing.T) {
	endpoint := rawEndpoint(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
		// Closing with the body unread sends a reset: the proxy's
		// writing fails after the answer is on its way.
	})
	p := webProxyAt(t, Options{Policy: exchange.Settings{Limits: exchange.Limits{MaxBodySize: -1}}}, endpoint)
	c, err := net.Dial("tcp", p.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const size = 8 << 20
	go func() {
		_, _ = fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
		_, _ = c.Write(make([]byte, size)) // fails once the proxy hangs up
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusRequestEntityTooLarge || string(body) != "too large" {
		t.Fatalf("got %d %q, want the endpoint's 413", res.StatusCode, body)
	}
}

// A response whose framing the client could read otherwise than the proxy
// (Transfer-Encoding in HTTP/1.0, a chunk size followed by anything but an
// extension) is a broken answer, never relayed whole.
func TestAmbiguousResponseFraming(t *testing.T) {
	for name, res := range map[string]string{
		"TE in HTTP/1.0":     "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"junk after size":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 0\r\nhello\r\n0\r\n\r\n",
		"no digits in size":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\nhello\r\n0\r\n\r\n",
		"size then CR alone": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\rX\r\nhello\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			endpoint := rawEndpoint(t, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					_, _ = io.WriteString(c, res)
				}
			})
			p := webProxyAt(t, Options{}, endpoint)
			c, err := net.Dial("tcp", p.plain)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			// A chunked answer's head is written before its body turns
			// out broken: then the client's connection is cut, so that
			// nothing reads as a whole answer.
			got, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return
			}
			if body, err := io.ReadAll(got.Body); got.StatusCode != 502 && err == nil {
				t.Errorf("relayed %d %q whole, want 502 or a cut connection", got.StatusCode, body)
			}
		})
	}
}
