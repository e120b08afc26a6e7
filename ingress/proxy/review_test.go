package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// The findings of the second security review (after the exchange
// redesign), one test each, named TestR<n>. Every test sends what an
// attacker would over loopback sockets and states what must happen
// instead; each failed when it was written. Subtest names are the
// front-ends of findings_test.go.

// panicLog is a slog.Handler that counts the panics a server logs.
type panicLog struct{ n *atomic.Int32 }

func (h panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (h panicLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		h.n.Add(1)
	}
	return nil
}
func (h panicLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h panicLog) WithGroup(string) slog.Handler      { return h }

// startCounting is start with a logger that counts panics.
func startCounting(t *testing.T, opts Options) (*proxy, *atomic.Int32) {
	t.Helper()
	panics := new(atomic.Int32)
	opts.GoroutineLoop = opts.GoroutineLoop || *goroutineLoop
	s, err := New(opts, slog.New(panicLog{panics}))
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, s), panics
}

// headEndpoint answers every request "200 ok" and sends each request head
// it reads, as received (request line and fields, up to the empty line),
// on the channel it returns.
func headEndpoint(t *testing.T) (*handEndpoint, chan string) {
	heads := make(chan string, 16)
	e := newEndpoint(t, func(c net.Conn, _ int32) {
		br := bufio.NewReader(c)
		for {
			var head strings.Builder
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				head.WriteString(line)
				if line == "\r\n" || line == "\n" {
					break
				}
			}
			heads <- head.String()
			// Bodies are not read: the requests of these tests have none.
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return e, heads
}

// TestR1UpgradeWithBody: a WebSocket upgrade request that announces a
// body (Content-Length: 5, or chunked). Decide makes it a Tunnel with
// Out.Body set, and the goroutine loop (which serves every tunnel, the
// event loops hand theirs over) calls roundTrip(x, nil): try reads
// body.size of the nil body and panics. The panic is recovered, logged at
// Error with a stack, and the connection dropped without an answer: any
// client can make the proxy log a stack trace per request. Want: no panic;
// an answer (nginx reads the body, sends it with the request, and tunnels
// after a 101; refusing such a request with 400 is fine too).
func TestR1UpgradeWithBody(t *testing.T) {
	for _, framing := range []struct{ name, field, body string }{
		{"content-length", "Content-Length: 5", "hello"},
		{"chunked", "Transfer-Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n"},
	} {
		t.Run(framing.name, func(t *testing.T) {
			for _, fe := range []string{fePlain, feTLS} {
				t.Run(fe, func(t *testing.T) {
					p, panics := startCounting(t, Options{})
					b := wsBackend(t)
					routeTo(t, p, map[string]string{"": addr(b)})
					s := mustOpenH1(t, p, fe)
					req := "GET /chat HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
						"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + framing.field + "\r\n\r\n" + framing.body
					if err := s.send(req); err != nil {
						t.Fatal(err)
					}
					a, err := s.read("GET", ioGuard)
					if err != nil {
						t.Errorf("no answer to an upgrade with a body: %v", err)
					} else {
						t.Logf("answer: %d", a.status)
					}
					if n := panics.Load(); n != 0 {
						t.Errorf("the proxy panicked %d time(s) serving it", n)
					}
				})
			}
		})
	}
}

// TestR2H2MethodInjection: HPACK carries any bytes but CR, LF and NUL, and
// x/net/http2 checks :method no further (it is not a token there). An
// HTTP/2 client sends ":method: GET /internal?x=" with ":path: /public".
// The core routes by :path and checks it, but writes the method upstream as
// it came, so the endpoint reads the request line
//
//	GET /internal?x= /public HTTP/1.1
//
// A backend that allows spaces in the target (nginx does: it reads
// "/internal?x= /public" and serves location /internal), or that takes
// the first and last space as the delimiters, serves a path the route
// never allowed; stricter ones answer 400. The HTTP/1.x codec refuses such
// a method; nginx's HTTP/2 module refuses any method that is not
// upper-case letters, '-' and '_' ("client sent invalid method", 400).
// Want: 400 (or the stream reset), and nothing upstream.
func TestR2H2MethodInjection(t *testing.T) {
	for _, c := range []struct{ name, method string }{
		{"space", "GET /internal?x="},
		{"tab", "GET\t/internal"},
		{"separator", "GET(x)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Run(feH2, func(t *testing.T) {
				p := start(t, Options{})
				e, heads := headEndpoint(t)
				routeTo(t, p, map[string]string{"": e.addr})
				f := framesTo(t, p)
				f.headers(1, true, ":method", c.method, ":scheme", "https", ":authority", "a.example", ":path", "/public")
				end := f.end(1, ioGuard)
				if end.status != "400" && !end.reset {
					t.Errorf("got %v, want 400 or the stream reset", end)
				}
				select {
				case h := <-heads:
					line, _, _ := strings.Cut(h, "\r\n")
					t.Errorf("the endpoint got the request line %q", line)
				default:
				}
			})
		})
	}
}

// TestR3H2DuplicateHost: an HTTP/2 request carries a regular "host" field
// besides :authority (or instead of it). x/net/http2 leaves it in
// r.Header, the adapter passes every field but Content-Length to the core,
// and AppendRequestHead writes the Host of the plan and then the fields:
// the endpoint gets two Host fields. Routing used :authority; a backend
// that takes the last Host (or joins them) serves the attacker's virtual
// host; Go and nginx backends answer 400, so even an honest request that
// gives Host instead of :authority (RFC 9113, 8.3.1 allows it) fails.
// The core's contract (Request.Fields: "framing fields (Host, ...) left
// out") is broken by this front-end. Want: one Host upstream, the one the
// request was routed by (nginx's HTTP/2 module uses :authority, else host,
// and sends one Host).
func TestR3H2DuplicateHost(t *testing.T) {
	for _, c := range []struct {
		name   string
		fields []string
	}{
		{"host beside :authority", []string{":method", "GET", ":scheme", "https", ":authority", "a.example", ":path", "/", "host", "admin.internal"}},
		{"host instead of :authority", []string{":method", "GET", ":scheme", "https", ":path", "/", "host", "a.example"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Run(feH2, func(t *testing.T) {
				p := start(t, Options{})
				e, heads := headEndpoint(t)
				routeTo(t, p, map[string]string{"": e.addr})
				f := framesTo(t, p)
				f.headers(1, true, c.fields...)
				end := f.end(1, ioGuard)
				select {
				case h := <-heads:
					var hosts []string
					for _, line := range strings.Split(h, "\r\n") {
						if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Host") {
							hosts = append(hosts, strings.TrimSpace(value))
						}
					}
					if len(hosts) != 1 || hosts[0] != "a.example" {
						t.Errorf("the endpoint got Host fields %q, want exactly [a.example]", hosts)
					}
				default:
					t.Logf("nothing reached the endpoint (%v)", end)
				}
			})
		})
	}
}

// TestR4ShutdownGrace: Serve promises in-flight requests "up to grace to
// finish". A request of the goroutine loop (HTTP/1.1 over TLS) or of the
// HTTP/2 adapter waits for an endpoint that trickles its response head, a
// byte every 100 ms (or sends 1xx answers one after the other). When the
// grace period ends, shutdown closes the client connections, but the
// request goes on reading from the endpoint: each byte moves the read
// deadline on, and nothing looks at the client. The goroutine loop's
// connection stays in connsWG, so Serve does not return at all (here, until
// the test ends and the endpoint closes); an HTTP/2 handler is not even
// waited for, and keeps the endpoint's connection after Serve returned.
// The event loops close the endpoint's side on force (plain passes, but
// fails with -goroutine-loop). Want: Serve returns
// soon after grace, and no connection to the endpoint outlives it.
func TestR4ShutdownGrace(t *testing.T) {
	for _, fe := range []string{fePlain, feTLS, feH2} {
		t.Run(fe, func(t *testing.T) {
			endpointClosed := make(chan struct{}, 4)
			e := newEndpoint(t, func(c net.Conn, _ int32) {
				br := bufio.NewReader(c)
				if _, err := br.ReadString('\n'); err != nil {
					return
				}
				go func() { // tell when the proxy closes its side
					_, _ = io.Copy(io.Discard, br)
					endpointClosed <- struct{}{}
				}()
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
				const field = "X-Trickle: y\r\n"
				for i := 0; ; i++ {
					time.Sleep(100 * time.Millisecond)
					if _, err := c.Write([]byte{field[i%len(field)]}); err != nil {
						return
					}
				}
			})
			s := newServer(t, Options{})
			pl, _ := net.Listen("tcp", "127.0.0.1:0")
			sl, _ := net.Listen("tcp", "127.0.0.1:0")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			const grace = 300 * time.Millisecond
			go func() { served <- s.Serve(ctx, pl, sl, grace) }()
			p := &proxy{Server: s, plain: pl.Addr().String(), secure: sl.Addr().String()}
			routeTo(t, p, map[string]string{"": e.addr})

			c := mustOpen(t, p, fe)
			go func() { _, _ = c.do(getPath("/slow")) }()
			for deadline := time.Now().Add(ioGuard); e.accepted.Load() == 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			cancel()
			select {
			case <-served:
			case <-time.After(grace + timeoutGuard):
				t.Errorf("Serve did not return %v after a shutdown with %v of grace", grace+timeoutGuard, grace)
				return // the endpoint closes when the test ends, which ends Serve
			}
			select {
			case <-endpointClosed:
			case <-time.After(timeoutGuard):
				t.Errorf("the proxy kept its connection to the endpoint %v after Serve returned", timeoutGuard)
			}
		})
	}
}

// TestR5SkippedBodyGrowsBuffer: a client sends requests the proxy answers
// itself (404 here) with a body of MaxDiscard bytes, which the goroutine
// loop reads through to keep the connection. skipBody reads with busy set,
// so makeRoom never moves the consumed bytes out and the input buffer grows
// to hold the whole body: 256 KiB to 512 KiB per connection, kept while the
// connection lives (it is shrunk only on release). Each such connection
// then costs the proxy half a megabyte for as long as it idles; MaxConnections
// of them (16,384) are 8 GiB. nginx discards into a fixed 4 KiB buffer
// (NGX_HTTP_DISCARD_BUFFER_SIZE). The event loops reset their buffer. Want:
// a connection that read through a body holds no more than a few tens of
// KiB.
func TestR5SkippedBodyGrowsBuffer(t *testing.T) {
	const conns = 32
	for _, fe := range []string{fePlain, feTLS} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{})
			p.Store(&exchange.Config{}) // every request 404
			body := strings.Repeat("x", exchange.MaxDiscard)
			req := "POST /nowhere HTTP/1.1\r\nHost: a.example\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body
			heap := func() uint64 {
				runtime.GC()
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				return m.HeapInuse
			}
			var clients []*h1Client
			// Connections first, so that what they cost anyway (TLS
			// buffers, both ends) is in the baseline.
			for range conns {
				s := mustOpenH1(t, p, fe)
				if a, err := s.do(getPath("/warm")); err != nil || a.status != 404 {
					t.Fatalf("warm-up: %d %v", a.status, err)
				}
				clients = append(clients, s)
			}
			before := heap()
			for i, s := range clients {
				if err := s.send(req); err != nil {
					t.Fatal(err)
				}
				if a, err := s.read("POST", ioGuard); err != nil || a.status != 404 {
					t.Fatalf("connection %d: %d %v", i, a.status, err)
				}
				// The connection is kept: it can serve another request.
				if a, err := s.do(getPath("/again")); err != nil || a.status != 404 {
					t.Fatalf("connection %d after the body: %d %v", i, a.status, err)
				}
			}
			after := heap()
			per := (int64(after) - int64(before)) / conns
			t.Logf("heap in use grew %d KiB per connection", per>>10)
			if per > 64<<10 {
				t.Errorf("each connection that read through a %d KiB body holds %d KiB more, want at most 64 KiB", len(body)>>10, per>>10)
			}
			runtime.KeepAlive(clients)
		})
	}
}

// TestR6DotSegmentWithParameters: the target check refuses "." and ".."
// segments, encoded or not, because routes are not cleaned. A segment
// "..;" (or "..;jsessionid=x", "%2e%2e;") is a ".." with a path parameter
// to Tomcat, Jetty and Spring, which drop the parameter and then resolve
// the dot segment: "/public/..;/internal" routes by the rule for /public
// and reaches /internal on such a backend (the "..;" bypass of
// nginx/ingress-nginx in front of Tomcat). The target check's own rule is
// "a target whose meaning a backend might resolve differently from the
// route is refused instead of guessed at". Want: 400 on every front-end,
// and nothing upstream.
func TestR6DotSegmentWithParameters(t *testing.T) {
	for _, path := range []string{"/public/..;/internal", "/public/..;x=y/internal", "/public/%2e%2e;/internal", "/public/.;/x"} {
		t.Run(path, func(t *testing.T) {
			for _, fe := range []string{fePlain, feTLS, feH2} {
				t.Run(fe, func(t *testing.T) {
					p := start(t, Options{})
					e, reached := tally(t)
					routeTo(t, p, map[string]string{"": e.addr})
					s := mustOpen(t, p, fe)
					a, err := s.do(getPath(path))
					if err != nil || a.status != 400 {
						t.Errorf("got %d %v, want 400", a.status, err)
					}
					if n := reached.Load(); n != 0 {
						t.Errorf("%d request(s) reached the endpoint", n)
					}
				})
			}
		})
	}
}

// TestR7ContentLengthOn204: an endpoint answers 204 with "Content-Length:
// 5" (RFC 9110, 8.6: a server MUST NOT send it in a 204). The proxy relays
// no body, rightly, but passes the Content-Length on: an HTTP/1.1 client
// that trusts it over the status reads the next answer's first bytes as
// this one's body, and the answers on its connection are off by five bytes
// from then on. nginx drops Content-Length from a 204 it relays
// (ngx_http_header_filter). Want: no Content-Length on a 204.
func TestR7ContentLengthOn204(t *testing.T) {
	for _, fe := range []string{fePlain, feTLS, feH2} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{})
			e := newEndpoint(t, func(c net.Conn, _ int32) {
				br := bufio.NewReader(c)
				for {
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if line == "\r\n" {
							break
						}
					}
					_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
				}
			})
			routeTo(t, p, map[string]string{"": e.addr})
			s := mustOpen(t, p, fe)
			a, err := s.do(getPath("/"))
			if err != nil || a.status != 204 {
				// HTTP/2: the adapter sets content-length 5 and ends the
				// stream with no DATA; x/net's client reports the answer
				// broken (unexpected EOF).
				t.Fatalf("got %d %v, want a whole 204", a.status, err)
			}
			if cl := headerFold(a.header, "Content-Length"); len(cl) > 0 {
				t.Errorf("a 204 went out with Content-Length %q", cl)
			}
		})
	}
}

// TestR8H2AuthorityUnchecked: the HTTP/1.x codec refuses a Host with bytes
// no host has (ValidHost: a '/', a space, a quote, ...). x/net/http2 checks
// :authority only for '@', and the core checks Host not at all, so over
// HTTP/2 such an authority is routed (a rule without a host, a
// defaultBackend, or a wildcard: "x/.example.com" matches "*.example.com"),
// written upstream as Host and X-Forwarded-Host, and put into the Location
// of the redirect to HTTPS ("https://x/.example.com/..."). nginx checks the
// host of both protocols alike (ngx_http_validate_host: 400). Want: 400 or
// the stream reset, and nothing upstream.
func TestR8H2AuthorityUnchecked(t *testing.T) {
	for _, authority := range []string{"a.example/x", "a.example x", `a.example"<b>`} {
		t.Run(authority, func(t *testing.T) {
			t.Run(feH2, func(t *testing.T) {
				p := start(t, Options{})
				e, heads := headEndpoint(t)
				routeTo(t, p, map[string]string{"": e.addr})
				f := framesTo(t, p)
				f.headers(1, true, ":method", "GET", ":scheme", "https", ":authority", authority, ":path", "/")
				end := f.end(1, ioGuard)
				if end.status != "400" && !end.reset {
					t.Errorf("got %v, want 400 or the stream reset", end)
				}
				select {
				case h := <-heads:
					t.Errorf("the endpoint got %q", h)
				default:
				}
			})
		})
	}
}

// TestR9H2SchemeDecidesTLS: x/net/http2 sets r.TLS only when :scheme is
// "https", and the adapter takes r.TLS for "the request came over TLS". An
// HTTP/2 client on a TLS connection that sends ":scheme: http" is then
// treated as plain HTTP: X-Forwarded-Proto "http" and X-Forwarded-Port 80
// go upstream (a backend that trusts them drops Secure cookies, or
// redirects to https forever), ServerName is lost, and a host with TLS gets
// the 308 to https that it is already on. nginx's $scheme comes from the
// connection. Want: the connection's TLS decides.
func TestR9H2SchemeDecidesTLS(t *testing.T) {
	t.Run(feH2, func(t *testing.T) {
		p := start(t, Options{})
		e, heads := headEndpoint(t)
		routeTo(t, p, map[string]string{"": e.addr})
		f := framesTo(t, p)
		f.headers(1, true, ":method", "GET", ":scheme", "http", ":authority", "a.example", ":path", "/")
		end := f.end(1, ioGuard)
		select {
		case h := <-heads:
			if !strings.Contains(h, "\r\nX-Forwarded-Proto: https\r\n") {
				t.Errorf("a request over TLS went upstream as:\n%s", h)
			}
		default:
			t.Errorf("nothing reached the endpoint (%v)", end)
		}
	})
}

// TestR10H2ResetStreamKeepsEndpoint: an HTTP/2 client sends a request to
// an endpoint that is slow to answer, then resets the stream (or closes
// the connection). The adapter's roundTrip does not look at the stream's
// context: it waits for the response head for up to ReadTimeout (60 s by
// default, and for ever if the endpoint trickles), holding the endpoint's
// connection and a handler slot, while the client has long gone and can
// send the next one. The event loops close the endpoint's connection when
// the client leaves (TestLoopClientLeavesWhileWaiting), as nginx does
// (proxy_ignore_client_abort off). Want: the endpoint's connection closed
// soon after the reset.
func TestR10H2ResetStreamKeepsEndpoint(t *testing.T) {
	t.Run(feH2, func(t *testing.T) {
		p := start(t, Options{})
		closed := make(chan struct{}, 1)
		e := newEndpoint(t, func(c net.Conn, _ int32) {
			_, _ = io.Copy(io.Discard, c) // never answers; ends when the proxy closes
			closed <- struct{}{}
		})
		routeTo(t, p, map[string]string{"": e.addr})
		f := framesTo(t, p)
		f.headers(1, true, ":method", "GET", ":scheme", "https", ":authority", "a.example", ":path", "/slow")
		for deadline := time.Now().Add(ioGuard); e.accepted.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if err := f.fr.WriteRSTStream(1, 0x8 /* CANCEL */); err != nil {
			t.Fatal(err)
		}
		select {
		case <-closed:
		case <-time.After(timeoutGuard):
			t.Errorf("the endpoint's connection was still open %v after the client reset its stream", timeoutGuard)
		}
	})
}

// TestR11H2StreamsBypassMaxConnections: MaxConnections exists so that a
// few clients cannot take all of the proxy's file descriptors (F4). It
// counts client connections; an HTTP/1.x connection holds at most one
// endpoint connection (and one body file) besides. Over HTTP/2 one client
// connection carries up to 128 streams, each of which takes an endpoint
// connection of its own while it waits (and, with a body over 8 KiB, an
// unlinked temporary file), so one connection holds up to 256 descriptors
// and MaxConnections of them 256 times the limit. nginx counts endpoint
// connections in worker_connections. Here MaxConnections is 4 and one
// client connection opens 64 streams to an endpoint that is slow to
// answer. Want: the proxy never holds more endpoint connections than
// MaxConnections allows (here at most 4 besides the client's one).
func TestR11H2StreamsBypassMaxConnections(t *testing.T) {
	t.Run(feH2, func(t *testing.T) {
		p := start(t, Options{MaxConnections: 4})
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		e := newEndpoint(t, func(c net.Conn, _ int32) {
			br := bufio.NewReader(c)
			if _, err := br.ReadString('\n'); err != nil {
				return
			}
			select {
			case <-release:
			case <-time.After(ioGuard):
			}
		})
		routeTo(t, p, map[string]string{"": e.addr})
		f := framesTo(t, p)
		const streams = 64
		for i := range streams {
			f.headers(uint32(2*i+1), true, ":method", "GET", ":scheme", "https", ":authority", "a.example", ":path", fmt.Sprintf("/s%d", i))
		}
		time.Sleep(time.Second)
		if n := e.accepted.Load(); n > 4 {
			t.Errorf("one client connection made the proxy open %d connections to the endpoint, with MaxConnections 4", n)
		}
	})
}

// TestR12EndlessInterimAnswers: an endpoint answers a request with an
// endless stream of "HTTP/1.1 100 Continue\r\n\r\n". Every front-end skips
// interim answers with no bound on their number or bytes (receive in
// upstream.go, relay in evupstream_linux.go), and each read moves the read
// deadline on: the proxy parses for as long as the endpoint sends, a CPU
// busy on it (in the event loops, the whole loop's: its other clients wait
// while it parses), and the client never gets an answer. Want: interim
// answers count against the response head's limit (maxResponseHeaderBytes,
// or a count), and the client gets 502 once it is passed.
func TestR12EndlessInterimAnswers(t *testing.T) {
	for _, fe := range []string{fePlain, feTLS, feH2} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{})
			flood := []byte(strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 4096))
			e := newEndpoint(t, func(c net.Conn, _ int32) {
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					return
				}
				for {
					if _, err := c.Write(flood); err != nil {
						return
					}
				}
			})
			routeTo(t, p, map[string]string{"": e.addr})
			s := mustOpen(t, p, fe)
			got := make(chan string, 1)
			go func() {
				a, err := s.do(getPath("/"))
				got <- fmt.Sprintf("%d %v", a.status, err)
			}()
			select {
			case g := <-got:
				if !strings.HasPrefix(g, "502 ") {
					t.Errorf("got %s, want 502", g)
				}
			case <-time.After(timeoutGuard):
				t.Errorf("no answer %v into an endless stream of interim answers", timeoutGuard)
			}
		})
	}
}
