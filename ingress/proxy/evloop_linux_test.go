package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// The whole package's tests run against the event loops (and again with
// -goroutine-loop against the goroutine loop). These test what only the
// loops do: hand a connection over mid-life, watch a waiting client,
// hold back an endpoint for a slow client.

// loopProxy serves endpoints with the event loops on, whatever
// -goroutine-loop says.
func loopProxy(t *testing.T, opts Options, endpoints ...string) *proxy {
	t.Helper()
	return serve(t, loopServer(t, opts, endpoints...))
}

// loopServer is the Server of loopProxy, not serving yet.
func loopServer(t *testing.T, opts Options, endpoints ...string) *Server {
	t.Helper()
	s, err := New(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Store(&exchange.Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(endpoints...)},
	})
	return s
}

// loopConns counts the connections an event loop serves now.
func loopConns(s *Server) int { return int(s.Stats().Loop) }

// A connection stays with its loop whatever its requests and answers are
// (chunked answers, bodies too large for memory, heads and bodies in
// pieces), and goes to the goroutine loop only for a WebSocket upgrade,
// which the goroutine loop tunnels.
func TestLoopKeepsConnections(t *testing.T) {
	b := echo(t, "web")
	chunked := rawEndpoint(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		}
	})
	p := loopProxy(t, Options{}, addr(b))
	get := func(c *client, path string) string {
		t.Helper()
		c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		res, body := c.read("GET")
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, res.StatusCode, body)
		}
		return body
	}
	stays := func(what string) {
		t.Helper()
		if n := loopConns(p.Server); n != 1 {
			t.Fatalf("after %s, %d connections with the loops, want 1", what, n)
		}
	}

	c := dial(t, p.plain)
	get(c, "/1")
	stays("a plain GET")

	p.Store(&exchange.Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(chunked)},
	})
	if body := get(c, "/chunked"); body != "hello" {
		t.Fatalf("chunked answer: %q", body)
	}
	stays("a chunked answer")
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(b))},
	})
	if body := get(c, "/after"); !strings.Contains(body, `"URI":"/after"`) {
		t.Fatalf("after a chunked answer: %s", body)
	}
	c.Close()

	// A body larger than memory holds (a temporary file then), pipelined
	// with a GET, and a chunked one.
	c = dial(t, p.plain)
	big := strings.Repeat("x", 128<<10)
	c.send(fmt.Sprintf("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%sGET /next HTTP/1.1\r\nHost: x\r\n\r\n", len(big), big))
	if res, body := c.read("POST"); res.StatusCode != 200 || !strings.Contains(body, `"Body":"`+big+`"`) {
		t.Fatalf("large body: %d, the backend saw another body", res.StatusCode)
	}
	if res, body := c.read("GET"); res.StatusCode != 200 || !strings.Contains(body, `"URI":"/next"`) {
		t.Fatalf("the request after a large body: %d %s", res.StatusCode, body)
	}
	c.send("POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\n")
	if res, body := c.read("POST"); res.StatusCode != 200 || !strings.Contains(body, `"Body":"hello world"`) {
		t.Fatalf("chunked body: %d %s", res.StatusCode, body)
	}
	stays("a large body and a chunked one")
	c.Close()

	// A head and a body sent in pieces.
	c = dial(t, p.plain)
	small := strings.Repeat("y", 1000)
	for _, part := range []string{"POST /small HTTP/1.1\r\nHo", "st: x\r\nContent-Len", fmt.Sprintf("gth: %d\r\n\r\n", len(small)), small[:10], small[10:]} {
		c.send(part)
		time.Sleep(10 * time.Millisecond)
	}
	if res, body := c.read("POST"); res.StatusCode != 200 || !strings.Contains(body, `"Body":"`+small+`"`) {
		t.Fatalf("body in pieces: %d %s", res.StatusCode, body)
	}
	stays("a small body in pieces")
	c.Close()

	// A WebSocket upgrade goes to the goroutine loop.
	ws := wsBackend(t)
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(ws))},
	})
	c = dial(t, p.plain)
	c.send("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nping")
	if res, err := http.ReadResponse(c.br, nil); err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo through the tunnel: %q %v", got, err)
	}
	// The last client before it closed its connection: its loop may not
	// have seen that yet on a busy machine.
	for end := time.Now().Add(5 * time.Second); loopConns(p.Server) != 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := loopConns(p.Server); n != 0 {
		t.Fatalf("a tunnel: %d connections with the loops, want 0", n)
	}
}

// A client that leaves while its request waits for the endpoint: the
// endpoint's connection is closed at once, not when it answers, and the
// request is recorded as 499.
func TestLoopClientLeavesWhileWaiting(t *testing.T) {
	closed := make(chan time.Duration, 1)
	endpoint := rawEndpoint(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		if err == io.EOF {
			closed <- time.Since(start)
		}
		close(closed)
	})
	recs := make(chan exchange.Record, 1)
	p := loopProxy(t, Options{Observe: func(r exchange.Record) { recs <- r }}, endpoint)
	c := dial(t, p.plain)
	c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	c.Close()
	after, ok := <-closed
	if !ok || after > 2*time.Second {
		t.Fatalf("the endpoint's connection was not closed when the client left (closed %v, after %v)", ok, after)
	}
	if r := <-recs; r.Status != 499 || r.UpstreamError != "canceled" {
		t.Errorf("recorded %d %q, want 499 canceled", r.Status, r.UpstreamError)
	}
}

// A client that reads slower than the endpoint sends gets the whole body,
// and the next answer on the same connection.
func TestLoopSlowClientLargeAnswer(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	endpoint := rawEndpoint(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
			if _, err := c.Write(body); err != nil {
				return
			}
		}
	})
	p := loopProxy(t, Options{}, endpoint)
	c := dial(t, p.plain)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	for i := range 2 {
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(300 * time.Millisecond) // the proxy's backlog fills
		res, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, io.LimitReader(&slowReader{res.Body}, res.ContentLength))
		if err != nil || n != int64(len(body)) || !bytes.Equal(h.Sum(nil), sha(body)) {
			t.Fatalf("answer %d: %d of %d bytes (%v), same bytes %v", i, n, len(body), err, bytes.Equal(h.Sum(nil), sha(body)))
		}
	}
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// slowReader reads in small pieces, pausing now and then.
type slowReader struct{ r io.Reader }

func (s *slowReader) Read(p []byte) (int, error) {
	if len(p) > 64<<10 {
		p = p[:64<<10]
	}
	time.Sleep(time.Millisecond)
	return s.r.Read(p)
}

// serveUntil runs s on a new plain listener until the test ends. shutdown
// begins a graceful shutdown earlier.
func serveUntil(t *testing.T, s *Server, grace time.Duration) (addr string, shutdown func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String(), serveOn(t, s, ln, grace)
}

// serveOn runs s on the plain listener ln until the test ends, and returns
// what begins a graceful shutdown earlier.
func serveOn(t testing.TB, s *Server, ln net.Listener, grace time.Duration) (shutdown func()) {
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln, nil, grace) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return cancel
}

// Graceful shutdown waits for what a loop has in flight: an answer being
// relayed (chunked), and a request whose head was being read (its body
// larger than memory holds).
func TestLoopShutdownWaitsForWorkInFlight(t *testing.T) {
	t.Run("answer", func(t *testing.T) {
		endpoint := rawEndpoint(t, func(c net.Conn) {
			if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
			time.Sleep(500 * time.Millisecond) // shutdown begins meanwhile
			_, _ = io.WriteString(c, "5\r\nworld\r\n0\r\n\r\n")
		})
		addr, shutdown := serveUntil(t, loopServer(t, Options{}, endpoint), 10*time.Second)
		c := dial(t, addr)
		c.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
		res, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		first := make([]byte, 5)
		if _, err := io.ReadFull(res.Body, first); err != nil {
			t.Fatal(err)
		}
		shutdown()
		rest, err := io.ReadAll(res.Body)
		if err != nil || string(first)+string(rest) != "helloworld" {
			t.Errorf("answer in flight at shutdown: %q + %q, %v", first, rest, err)
		}
	})
	t.Run("request", func(t *testing.T) {
		addr, shutdown := serveUntil(t, loopServer(t, Options{}, addr(echo(t, "web"))), 5*time.Second)
		c := dial(t, addr)
		c.send("POST /big HTTP/1.1\r\nHost: x\r\n")
		time.Sleep(100 * time.Millisecond)
		shutdown()
		time.Sleep(100 * time.Millisecond)
		big := strings.Repeat("x", 64<<10+1)
		c.send(fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(big), big))
		if res, body := c.read("POST"); res.StatusCode != 200 || !strings.Contains(body, `"Body":"`+big+`"`) {
			t.Errorf("request begun before shutdown: %d", res.StatusCode)
		}
	})
}

// Loops stopped with force end even when the server is not closing: the
// error path of newEvLoops relies on it.
func TestLoopsEndOnForce(t *testing.T) {
	s, err := New(Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newEvLoops(&front{s: s})
	if err != nil {
		t.Fatal(err)
	}
	e.stop(true)
	done := make(chan struct{})
	go func() { e.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("loops still running 5 s after stop(true)")
	}
}

// A panic while a loop finishes a request (here in Observe, after the
// endpoint connection went back to the idle list) closes that connection
// for good: later requests never go to its closed, perhaps reused,
// descriptor.
func TestLoopPanicLeavesNoClosedConnectionIdle(t *testing.T) {
	old := runtime.GOMAXPROCS(1) // one loop: every request goes through it
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	p := loopProxy(t, Options{Observe: func(r exchange.Record) {
		if r.Path == "/boom" {
			panic("boom")
		}
	}}, addr(echo(t, "web")))
	c := dial(t, p.plain)
	c.send("GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
	_, _ = io.Copy(io.Discard, c.br)
	for i := range 5 {
		c := dial(t, p.plain)
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		c.send("GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		if line, err := c.br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Errorf("request %d after the panic: %q, %v", i, line, err)
		}
	}
}

// blackhole returns an address whose accept queue is full: connecting to
// it takes the whole connect timeout.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	a := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 4 { // fill the queue
		d := net.Dialer{Timeout: 100 * time.Millisecond}
		if c, err := d.Dial("tcp", a); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return a
}

// An endpoint that does not accept within the connect timeout is a
// connect error: the request goes to the next endpoint, on either loop.
// Round robin starts two requests at different endpoints, so one of them
// meets the dead one first.
func TestConnectTimeoutTriesNextEndpoint(t *testing.T) {
	hole := blackhole(t)
	b := echo(t, "web")
	for _, goroutines := range []bool{false, true} {
		retried := make(chan int, 2)
		s, err := New(Options{Policy: connectTimeout(300 * time.Millisecond), GoroutineLoop: goroutines,
			Observe: func(r exchange.Record) { retried <- r.Attempts }}, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := serve(t, s)
		p.Store(&exchange.Config{
			Routes:    table(t, ingress("web", "", prefix("/", "web"))),
			Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(hole, addr(b))},
		})
		attempts := 0
		for range 2 {
			if res := raw(t, p.plain, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"); res.StatusCode != 200 {
				t.Errorf("goroutine loop %v: %d, want 200 from the live endpoint", goroutines, res.StatusCode)
			}
			attempts += <-retried
		}
		if attempts != 3 {
			t.Errorf("goroutine loop %v: %d attempts for two requests, want 3", goroutines, attempts)
		}
	}
}

// A connect timeout, which a loop finds in its scan between batches of
// events, sends the request to the next endpoint, over an idle connection
// the loop keeps to it. (Looking for that connection's readiness among the
// batch's events, from the scan, once panicked: the client got nothing.)
func TestConnectTimeoutRetryOnIdleConnection(t *testing.T) {
	old := runtime.GOMAXPROCS(1) // one loop: one idle list
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	hole := blackhole(t)
	b := echo(t, "web")
	p := loopProxy(t, Options{Policy: connectTimeout(200 * time.Millisecond)}, addr(b))
	c := dial(t, p.plain)
	c.send("GET /warm HTTP/1.1\r\nHost: x\r\n\r\n") // an idle connection to b
	if res, _ := c.read("GET"); res.StatusCode != 200 {
		t.Fatalf("warming: %d", res.StatusCode)
	}
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(hole, addr(b))},
	})
	for i := range 2 { // one of the two starts at the dead endpoint
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if res, _ := c.read("GET"); res.StatusCode != 200 {
			t.Fatalf("request %d: %d, want 200 from the live endpoint", i, res.StatusCode)
		}
	}
}

// An event that brings both the client's room for the rest of an answer
// and its next request: the request is served, not left until the idle
// timeout. Client a gets a 64 KiB answer through small socket buffers,
// so that part of it waits in the loop; while the loop is held up by
// client b, a takes the rest and sends its next request, and both reach
// the loop as one event.
func TestLoopEventWithRoomAndRequest(t *testing.T) {
	old := runtime.GOMAXPROCS(1) // one loop: a and b share it
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	const size = 64 << 10
	body := strings.Repeat("z", size)
	endpoint := rawEndpoint(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if r.URL.Path == "/big" {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", size, body)
			} else {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
	})
	s, err := New(Options{IdleTimeout: 3 * time.Second, Observe: func(r exchange.Record) {
		if r.Path == "/block" {
			time.Sleep(400 * time.Millisecond)
		}
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Store(&exchange.Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(endpoint)},
	})
	small := func(opt int) func(_, _ string, rc syscall.RawConn) error {
		return func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 4096) })
		}
	}
	ln, err := (&net.ListenConfig{Control: small(syscall.SO_SNDBUF)}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, s, ln, time.Second)
	a, err := (&net.Dialer{Control: small(syscall.SO_RCVBUF)}).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := dial(t, ln.Addr().String())
	_, _ = io.WriteString(a, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(300 * time.Millisecond) // relayed whole; part of it waits in the loop
	var got []byte
	buf := make([]byte, 1<<20)
	drain := func() int {
		n0 := len(got)
		for {
			_ = a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := a.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				return len(got) - n0
			}
		}
	}
	total, sent := -1, false
	for round := 0; round < 50 && !sent; round++ {
		b.send("GET /block HTTP/1.1\r\nHost: x\r\n\r\n") // holds the loop in Observe
		time.Sleep(50 * time.Millisecond)
		d := drain()
		if total < 0 {
			total = strings.Index(string(got), "\r\n\r\n") + 4 + size
		}
		left := total - len(got)
		if left <= 0 {
			t.Fatal("the answer went out whole: no backlog to test with")
		}
		if left <= d {
			// What is left fits the emptied buffers: the loop's next
			// event for a brings the room and the request together.
			_, _ = io.WriteString(a, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
			sent = true
		}
		b.read("GET")
	}
	if !sent {
		t.Fatal("the answer to a never drained in step with the loop")
	}
	start := time.Now()
	_ = a.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(io.MultiReader(strings.NewReader(string(got)), a))
	for i := range 2 {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the request that came with the room was answered after %v", d)
	}
}

// FuzzLoop: raw bytes from a client through the event loops, over real
// sockets, to a real endpoint: the loops never panic, and everything the
// client gets is well-formed HTTP/1.x from the proxy. A sentinel request
// with Connection: close follows the input, so that each connection ends.
func FuzzLoop(f *testing.F) {
	var panics atomic.Int32
	log := slog.New(panicLog{&panics})
	s, err := New(Options{ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond,
		Policy: limits(exchange.Limits{ClientBodyTimeout: 300 * time.Millisecond})}, log)
	if err != nil {
		f.Fatal(err)
	}
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/chunked" {
			http.NewResponseController(w).Flush()
		}
		_, _ = io.WriteString(w, "from the endpoint")
	}))
	f.Cleanup(b.Close)
	tab, _ := route.Build([]route.Ingress{
		{Namespace: "ns", Name: "a", Rules: []route.Rule{{Host: "a.example", Paths: []route.Path{{Path: "/", Backend: svc("web")}}}},
			TLS: []route.TLS{{Hosts: []string{"tls.example"}}}},
		{Namespace: "ns", Name: "b", DefaultBackend: &route.Backend{Resource: "x/Y/z"}},
	})
	s.Store(&exchange.Config{Routes: tab, Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(b))}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	serveOn(f, s, ln, time.Second)

	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET /chunked HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\nabcHEAD / HTTP/1.0\r\nHost: a.example\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: a.example\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\nHost: a.example\n\n",
		"HEAD / HTTP/1.1\r\nHost: a.example\r\n\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a.example\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
		"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			_, _ = c.Write(in)
			_, _ = io.WriteString(c, "GET /sentinel HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
		}()
		out, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the connection did not end: %q", in)
		}
		answers(t, in, out)
		if n := panics.Load(); n > 0 {
			t.Fatalf("%d panics serving %q", n, in)
		}
	})
}
