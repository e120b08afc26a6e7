package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"golang.org/x/net/http2/hpack"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// The findings of the security review of the proxy, one test each. A test
// reproduces its finding on every front-end that serves it and states what
// must happen instead. Each was written against the proxy before the
// exchange core, and failed there (the "before" in the comments below);
// they pass since every front-end frames with one codec and decides with
// one core. Subtests are named after the front-end the client's requests
// reach the proxy through:
//
//   - plain: plain HTTP/1.1; the event loops, or the goroutine loop when
//     the tests run with -goroutine-loop;
//   - tls-h1: HTTP/1.1 over TLS, the goroutine loop;
//   - h2: HTTP/2 over TLS, the HTTP/2 adapter;
//   - handed-off-plain, handed-off-tls: an HTTP/1.x connection whose first
//     request has a chunked body. Before, the proxy's loops handed such a
//     connection to net/http, which parsed every later request on it by
//     its own rules; the names stay to say what these subtests guard.
//
// Everything goes over loopback sockets, with real clients: raw bytes,
// crypto/tls, x/net/http2's client, and its Framer for frames no client
// would send.

const (
	fePlain          = "plain"
	feTLS            = "tls-h1"
	feH2             = "h2"
	feHandedOffPlain = "handed-off-plain"
	feHandedOffTLS   = "handed-off-tls"
)

// Timeouts under test are set to shortTimeout; timeoutGuard is how long a
// test waits for one to act, ioGuard how long for what should happen at
// once. Both only bound waits: no test measures speed with them.
const (
	shortTimeout = 300 * time.Millisecond
	timeoutGuard = 3 * time.Second
	ioGuard      = 10 * time.Second
)

// handoffHost has a backend of its own: the request that moves a
// connection to net/http goes there, out of the way of what a test counts
// at its endpoint.
const handoffHost = "handoff.example"

// handoffRequest is one the proxy's loops hand to net/http: a POST with a
// chunked body.
var handoffRequest = clientRequest{method: "POST", host: handoffHost, path: "/handoff",
	header: [][2]string{{"Transfer-Encoding", "chunked"}}, body: "4\r\ndata\r\n0\r\n\r\n"}

// routeTo makes p route each host of hosts ("" for any other) to the
// endpoint address given, and handoffHost to an echo backend.
func routeTo(t *testing.T, p *proxy, hosts map[string]string) {
	t.Helper()
	ings := []route.Ingress{ingress("handoff", handoffHost, prefix("/", "handoff"))}
	ups := map[exchange.Target]*exchange.Upstream{target("handoff"): exchange.NewUpstream(addr(echo(t, "handoff")))}
	i := 0
	for host, endpoint := range hosts {
		name := fmt.Sprintf("web%d", i)
		i++
		ings = append(ings, ingress(name, host, prefix("/", name)))
		ups[target(name)] = exchange.NewUpstream(endpoint)
	}
	p.Store(&exchange.Config{Routes: table(t, ings...), Upstreams: ups})
}

// handEndpoint is an endpoint written by hand, to misbehave. It numbers the
// connections it accepts from 1 and runs serve on each, which is closed
// after. Its connections are also closed as soon as the test ends, before
// any cleanup: a proxy waiting on a silent endpoint then cannot hold up
// its own shutdown.
type handEndpoint struct {
	addr     string
	accepted atomic.Int32
}

func newEndpoint(t *testing.T, serve func(c net.Conn, n int32)) *handEndpoint {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &handEndpoint{addr: l.Addr().String()}
	ended := t.Context()
	go func() {
		<-ended.Done()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := e.accepted.Add(1)
			stop := context.AfterFunc(ended, func() { c.Close() })
			go func() {
				defer stop()
				defer c.Close()
				serve(c, n)
			}()
		}
	}()
	return e
}

// tally is an endpoint that answers every request 200 and counts the
// requests that reached it, from their first byte.
func tally(t *testing.T) (*handEndpoint, *atomic.Int32) {
	reached := new(atomic.Int32)
	e := newEndpoint(t, func(c net.Conn, _ int32) {
		br := bufio.NewReader(c)
		for {
			if _, err := br.Peek(1); err != nil {
				return
			}
			reached.Add(1)
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Backend: tally\r\nContent-Length: 7\r\n\r\nreached")
		}
	})
	return e, reached
}

// bodyEndpoint reads each request with its whole body and answers "got N",
// N the body's length.
func bodyEndpoint(t *testing.T) *handEndpoint {
	return newEndpoint(t, func(c net.Conn, _ int32) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			n, err := io.Copy(io.Discard, req.Body)
			if err != nil {
				return
			}
			body := fmt.Sprintf("got %d", n)
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
	})
}

// echoHandler answers with what it saw, as JSON, as echo's backend does.
func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		_ = json.NewEncoder(w).Encode(seen{r.Method, r.RequestURI, r.Host, r.Proto, r.Header, string(body)})
	})
}

// clientRequest is what a test client sends.
type clientRequest struct {
	method, host, path string
	// header fields, sent in this order, names as written.
	header [][2]string
	body   string
}

// getPath is a GET of path on a.example.
func getPath(path string) clientRequest {
	return clientRequest{method: "GET", host: "a.example", path: path}
}

// wire is r as HTTP/1.1 bytes. A body gets a Content-Length unless a
// Transfer-Encoding field frames it.
func (r clientRequest) wire() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.method, r.path, r.host)
	framed := false
	for _, f := range r.header {
		fmt.Fprintf(&b, "%s: %s\r\n", f[0], f[1])
		framed = framed || strings.EqualFold(f[0], "Transfer-Encoding")
	}
	if r.body != "" && !framed {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.body))
	}
	b.WriteString("\r\n")
	b.WriteString(r.body)
	return b.String()
}

// h2 is r as a request for x/net/http2's client.
func (r clientRequest) h2(ctx context.Context) (*http.Request, error) {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, "https://"+r.host+r.path, body)
	if err != nil {
		return nil, err
	}
	for _, f := range r.header {
		req.Header[f[0]] = append(req.Header[f[0]], f[1])
	}
	return req, nil
}

// clientReply is what a test client got back.
type clientReply struct {
	status int
	header http.Header
	body   string
}

// seen decodes an answer of echoHandler (or echo).
func (a clientReply) seen() (seen, error) {
	var s seen
	err := json.Unmarshal([]byte(a.body), &s)
	return s, err
}

// clientConn is one client connection to the proxy through one front-end.
type clientConn interface {
	// do sends one request and reads its answer, within ioGuard.
	do(r clientRequest) (clientReply, error)
	Close() error
}

// h1Client is an HTTP/1.1 client connection, plain or TLS.
type h1Client struct {
	net.Conn
	br *bufio.Reader
}

func (s *h1Client) send(b string) error {
	_ = s.SetWriteDeadline(time.Now().Add(ioGuard))
	_, err := io.WriteString(s, b)
	return err
}

func (s *h1Client) do(r clientRequest) (clientReply, error) {
	if err := s.send(r.wire()); err != nil {
		return clientReply{}, err
	}
	return s.read(r.method, ioGuard)
}

// read reads one answer (an interim 1xx one too) to a request of method,
// body included, within wait.
func (s *h1Client) read(method string, wait time.Duration) (clientReply, error) {
	_ = s.SetReadDeadline(time.Now().Add(wait))
	res, err := http.ReadResponse(s.br, &http.Request{Method: method})
	if err != nil {
		return clientReply{}, err
	}
	body, err := io.ReadAll(res.Body)
	return clientReply{res.StatusCode, res.Header, string(body)}, err
}

// h2Client is one HTTP/2 connection of x/net/http2's client: a request
// never moves to another connection behind the test's back.
type h2Client struct {
	cc *http2.ClientConn
}

func (s *h2Client) do(r clientRequest) (clientReply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ioGuard)
	defer cancel()
	req, err := r.h2(ctx)
	if err != nil {
		return clientReply{}, err
	}
	res, err := s.cc.RoundTrip(req)
	if err != nil {
		return clientReply{}, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return clientReply{res.StatusCode, res.Header, string(body)}, err
}

func (s *h2Client) Close() error { return s.cc.Close() }

// openClient opens a client connection to p through the front-end fe.
func openClient(t *testing.T, p *proxy, fe string) (clientConn, error) {
	t.Helper()
	d := &net.Dialer{Timeout: ioGuard}
	var s clientConn
	switch fe {
	case fePlain, feHandedOffPlain:
		c, err := d.Dial("tcp", p.plain)
		if err != nil {
			return nil, err
		}
		s = &h1Client{Conn: c, br: bufio.NewReader(c)}
	case feTLS, feHandedOffTLS:
		c, err := tls.DialWithDialer(d, "tcp", p.secure, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			return nil, err
		}
		s = &h1Client{Conn: c, br: bufio.NewReader(c)}
	case feH2:
		c, err := dialH2(d, p)
		if err != nil {
			return nil, err
		}
		cc, err := (&http2.Transport{}).NewClientConn(c)
		if err != nil {
			c.Close()
			return nil, err
		}
		s = &h2Client{cc: cc}
	default:
		t.Fatalf("no front-end %q", fe)
	}
	t.Cleanup(func() { s.Close() })
	if fe == feHandedOffPlain || fe == feHandedOffTLS {
		a, err := s.do(handoffRequest)
		if err != nil || a.status != 200 || a.header.Get("X-Backend") != "handoff" {
			return nil, fmt.Errorf("the request that hands the connection off: %d %v", a.status, err)
		}
	}
	return s, nil
}

func dialH2(d *net.Dialer, p *proxy) (*tls.Conn, error) {
	c, err := tls.DialWithDialer(d, "tcp", p.secure, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		return nil, err
	}
	if proto := c.ConnectionState().NegotiatedProtocol; proto != "h2" {
		c.Close()
		return nil, fmt.Errorf("ALPN chose %q, want h2", proto)
	}
	return c, nil
}

func mustOpen(t *testing.T, p *proxy, fe string) clientConn {
	t.Helper()
	s, err := openClient(t, p, fe)
	if err != nil {
		t.Fatalf("opening a %s connection: %v", fe, err)
	}
	return s
}

func mustOpenH1(t *testing.T, p *proxy, fe string) *h1Client {
	t.Helper()
	return mustOpen(t, p, fe).(*h1Client)
}

func mustOpenH2(t *testing.T, p *proxy) *h2Client {
	t.Helper()
	return mustOpen(t, p, feH2).(*h2Client)
}

// isDeadline reports an error that is a wait running out, not an end.
func isDeadline(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}

// endsWithin reports whether the peer ends the connection c within wait:
// what comes until then is read through r, and reading ends otherwise
// than for the deadline (an end of input, a reset).
func endsWithin(c net.Conn, r io.Reader, wait time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, r)
	return !isDeadline(err)
}

// headerFold returns the values of the field name, in any case.
func headerFold(h http.Header, name string) []string {
	var vv []string
	for k, v := range h {
		if strings.EqualFold(k, name) {
			vv = append(vv, v...)
		}
	}
	return vv
}

// zeros is an endless body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// h2Frames is an HTTP/2 client written frame by frame: for requests Go's
// client will not send, and for clients that misbehave.
type h2Frames struct {
	t    *testing.T
	conn *tls.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

// framesTo opens an HTTP/2 connection to p and exchanges settings, as a
// client must before anything else.
func framesTo(t *testing.T, p *proxy) *h2Frames {
	t.Helper()
	c, err := dialH2(&net.Dialer{Timeout: ioGuard}, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(ioGuard))
	f := &h2Frames{t: t, conn: c, fr: http2.NewFramer(c, c)}
	f.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	f.enc = hpack.NewEncoder(&f.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := f.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		fm, err := f.fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for the server's settings: %v", err)
		}
		if sf, ok := fm.(*http2.SettingsFrame); ok && !sf.IsAck() {
			if err := f.fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
}

// headers sends a HEADERS frame on stream with the fields given as name,
// value pairs, encoded as they are.
func (f *h2Frames) headers(stream uint32, end bool, fields ...string) {
	f.t.Helper()
	f.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		if err := f.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}); err != nil {
			f.t.Fatal(err)
		}
	}
	err := f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: f.hbuf.Bytes(), EndStream: end, EndHeaders: true})
	if err != nil {
		f.t.Fatal(err)
	}
}

// h2End is how the server ended a stream.
type h2End struct {
	status string // of the final answer; "" when none came
	body   string
	// reset: the stream was reset (RST_STREAM) or refused with the
	// connection (GOAWAY), with code.
	reset bool
	code  http2.ErrCode
	err   error // reading ended: the connection closed, or wait ran out
}

func (e h2End) String() string {
	switch {
	case e.reset:
		return "reset " + e.code.String()
	case e.status != "":
		return fmt.Sprintf("%s %q", e.status, e.body)
	}
	return fmt.Sprintf("no answer (%v)", e.err)
}

// end reads frames, within wait, until stream ends: its answer is whole,
// it is reset, or the connection goes away.
func (f *h2Frames) end(stream uint32, wait time.Duration) h2End {
	_ = f.conn.SetReadDeadline(time.Now().Add(wait))
	var e h2End
	for {
		fm, err := f.fr.ReadFrame()
		if err != nil {
			e.err = err
			return e
		}
		switch fm := fm.(type) {
		case *http2.MetaHeadersFrame:
			if fm.StreamID != stream {
				continue
			}
			if s := fm.PseudoValue("status"); s != "" && s[0] != '1' {
				e.status = s
			}
			if fm.StreamEnded() {
				return e
			}
		case *http2.DataFrame:
			if fm.StreamID != stream {
				continue
			}
			e.body += string(fm.Data())
			if n := uint32(len(fm.Data())); n > 0 { // keep the answer coming
				_ = f.fr.WriteWindowUpdate(0, n)
				_ = f.fr.WriteWindowUpdate(stream, n)
			}
			if fm.StreamEnded() {
				return e
			}
		case *http2.RSTStreamFrame:
			if fm.StreamID == stream {
				e.reset, e.code = true, fm.ErrCode
				return e
			}
		case *http2.GoAwayFrame:
			if fm.LastStreamID < stream {
				e.reset, e.code = true, fm.ErrCode
				return e
			}
		case *http2.SettingsFrame:
			if !fm.IsAck() {
				_ = f.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !fm.IsAck() {
				_ = f.fr.WritePing(true, fm.Data)
			}
		}
	}
}

// TestF1StrayBytesNeverAnswerAnotherRequest: response-queue poisoning. An
// endpoint (or whoever controls one) sends bytes after a response has
// ended: a body after its answer to HEAD, a second response after the
// first, a response nobody asked for on an idle connection. Those bytes
// must never reach a client: every later request, on the same client
// connection or a new one, gets its own, genuine answer (never "poison",
// nor another request's answer, nor a 502 because the endpoint's
// connection was reused).
func TestF1StrayBytesNeverAnswerAnotherRequest(t *testing.T) {
	const poison = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\npoison"
	for _, c := range []struct {
		name, method string
		answer       string // to /trigger; "" for a genuine one
		stray        string // sent 30 ms after it
	}{
		{"HEAD then its body", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "poiso"},
		{"HEAD then a response", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", poison},
		{"response then another", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", poison},
		{"unsolicited response when idle", "GET", "", poison},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, fe := range []string{fePlain, feTLS, feH2, feHandedOffPlain} {
				t.Run(fe, func(t *testing.T) {
					p := start(t, Options{})
					routeTo(t, p, map[string]string{"": strayEndpoint(t, c.answer, c.stray).addr})
					first := mustOpen(t, p, fe)
					if a, err := first.do(clientRequest{method: c.method, host: "a.example", path: "/trigger"}); err != nil || a.status != 200 {
						t.Fatalf("%s /trigger: %d %v", c.method, a.status, err)
					}
					time.Sleep(100 * time.Millisecond) // the stray bytes come meanwhile
					for i, s := range []clientConn{first, mustOpen(t, p, fe)} {
						conn := [...]string{"same", "new"}[i]
						for j := range 2 {
							path := fmt.Sprintf("/next-%d", j)
							a, err := s.do(getPath(path))
							if err != nil {
								t.Errorf("GET %s on the %s connection: %v", path, conn, err)
								break
							}
							if a.status != 200 || !strings.HasPrefix(a.body, "genuine-") || !strings.HasSuffix(a.body, " "+path) {
								t.Errorf("GET %s on the %s connection got %d %q, want the endpoint's own answer to it", path, conn, a.status, a.body)
							}
						}
					}
				})
			}
		})
	}
}

// strayEndpoint answers each request "genuine-N <path>", numbering its
// answers, but /trigger, which it answers with answer (a genuine answer
// when empty) and follows, 30 ms later, with stray on the same connection.
func strayEndpoint(t *testing.T, answer, stray string) *handEndpoint {
	var n atomic.Int32
	return newEndpoint(t, func(c net.Conn, _ int32) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			trigger := req.URL.Path == "/trigger"
			if trigger && answer != "" {
				_, _ = io.WriteString(c, answer)
			} else {
				body := fmt.Sprintf("genuine-%d %s", n.Add(1), req.URL.Path)
				_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			}
			if trigger {
				time.Sleep(30 * time.Millisecond)
				_, _ = io.WriteString(c, stray)
			}
		}
	})
}

// TestF2UpgradeOtherThanWebSocket: a client asks to switch to a protocol
// other than WebSocket (h2c, or anything else) on a backend that would
// accept h2c. The proxy tunnels WebSocket alone: the request must reach the
// backend as an ordinary one, without Upgrade and without HTTP2-Settings,
// and get its ordinary HTTP/1.1 answer, not a 101; and the client's next
// request on the connection, for another host, must still be routed by the
// proxy, to that host's backend, not go down a tunnel to the first.
func TestF2UpgradeOtherThanWebSocket(t *testing.T) {
	for _, c := range []struct {
		name   string
		header [][2]string
	}{
		{"h2c", [][2]string{{"Connection", "Upgrade, HTTP2-Settings"}, {"Upgrade", "h2c"}, {"HTTP2-Settings", "AAMAAABkAAQAAP__"}}},
		{"foo", [][2]string{{"Connection", "Upgrade"}, {"Upgrade", "foo/1"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, fe := range []string{fePlain, feTLS} {
				t.Run(fe, func(t *testing.T) {
					p := start(t, Options{})
					h2cBackend := httptest.NewServer(h2c.NewHandler(echoHandler("h2c"), &http2.Server{}))
					t.Cleanup(h2cBackend.Close)
					routeTo(t, p, map[string]string{"a.example": addr(h2cBackend), "other.example": addr(echo(t, "other"))})
					s := mustOpen(t, p, fe)
					a, err := s.do(clientRequest{method: "GET", host: "a.example", path: "/upgrade", header: c.header})
					if err != nil {
						t.Fatal(err)
					}
					if a.status != 200 || a.header.Get("X-Backend") != "h2c" {
						t.Errorf("got %d from %q, want the backend's ordinary 200", a.status, a.header.Get("X-Backend"))
					} else if sn, err := a.seen(); err != nil {
						t.Errorf("the backend's answer: %v", err)
					} else {
						for _, name := range []string{"Upgrade", "Http2-Settings"} {
							if v := sn.Header.Get(name); v != "" {
								t.Errorf("the backend saw %s: %q, want none", name, v)
							}
						}
					}
					a, err = s.do(clientRequest{method: "GET", host: "other.example", path: "/next"})
					if err != nil || a.status != 200 || a.header.Get("X-Backend") != "other" {
						t.Errorf("the next request, for other.example: %d from %q, %v; want 200 from its own backend", a.status, a.header.Get("X-Backend"), err)
					}
				})
			}
		})
	}
}

// TestF3ClientBodyTimeout: a client sends a head announcing a 100-byte
// body, 10 bytes of it, then nothing. Past ClientBodyTimeout it gets 408
// and its connection is closed; before, it held the connection (and, as the
// body is streamed, the endpoint's) for as long as IdleTimeout allows, or
// for ever.
func TestF3ClientBodyTimeout(t *testing.T) {
	for _, fe := range []string{fePlain, feTLS, feH2} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{Policy: limits(exchange.Limits{ClientBodyTimeout: shortTimeout})})
			routeTo(t, p, map[string]string{"": bodyEndpoint(t).addr})
			if fe == feH2 {
				s := mustOpenH2(t, p)
				body, w := io.Pipe()
				t.Cleanup(func() { w.Close() })
				go func() { _, _ = w.Write(make([]byte, 10)) }()
				ctx, cancel := context.WithTimeout(t.Context(), timeoutGuard)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "POST", "https://a.example/upload", body)
				req.ContentLength = 100
				res, err := s.cc.RoundTrip(req)
				if err != nil {
					t.Fatalf("no answer to a stalled body: %v", err)
				}
				res.Body.Close()
				if res.StatusCode != http.StatusRequestTimeout {
					t.Errorf("got %d, want 408", res.StatusCode)
				}
				return
			}
			s := mustOpenH1(t, p, fe)
			if err := s.send("POST /upload HTTP/1.1\r\nHost: a.example\r\nContent-Length: 100\r\n\r\n0123456789"); err != nil {
				t.Fatal(err)
			}
			a, err := s.read("POST", timeoutGuard)
			if err != nil {
				t.Fatalf("no answer to a stalled body: %v", err)
			}
			if a.status != http.StatusRequestTimeout {
				t.Errorf("got %d, want 408", a.status)
			}
			if !endsWithin(s, s.br, timeoutGuard) {
				t.Error("the connection stayed open after the 408")
			}
		})
	}
}

// TestF3SendTimeout: a client asks for a large answer and never reads it.
// Past SendTimeout without a successful write to it, the proxy closes the
// client's connection, and the endpoint's: the endpoint's writes fail.
// Before, both stayed open, the endpoint blocked, for as long as the client
// likes.
func TestF3SendTimeout(t *testing.T) {
	for _, fe := range []string{fePlain, feTLS, feH2} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{Policy: limits(exchange.Limits{ClientSendTimeout: shortTimeout})})
			stopped := make(chan error, 1)
			e := newEndpoint(t, func(c net.Conn, _ int32) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n")
				chunk := make([]byte, 64<<10)
				for err == nil {
					_, err = c.Write(chunk)
				}
				stopped <- err
			})
			routeTo(t, p, map[string]string{"": e.addr})
			// The client sends its request and then reads nothing: not a
			// byte of the socket, not a frame of HTTP/2.
			var f *h2Frames
			var s *h1Client
			if fe == feH2 {
				f = framesTo(t, p)
				f.headers(1, true, ":method", "GET", ":scheme", "https", ":authority", "a.example", ":path", "/stream")
			} else {
				s = mustOpenH1(t, p, fe)
				if err := s.send("GET /stream HTTP/1.1\r\nHost: a.example\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-stopped:
			case <-time.After(timeoutGuard):
				t.Fatalf("the endpoint still sends %v after the client stopped reading: its connection was not closed", timeoutGuard)
			}
			if f != nil {
				if end := f.end(1, timeoutGuard); !end.reset && isDeadline(end.err) {
					t.Errorf("the stream stayed open: %v", end)
				}
			} else if !endsWithin(s, s.br, timeoutGuard) {
				t.Error("the client's connection stayed open")
			}
		})
	}
}

// TestF3UpstreamReadTimeout: an endpoint sends the head of its answer and
// 10 bytes of a 100-byte body, then nothing. Past UpstreamReadTimeout
// without a read, the client's connection (over HTTP/2, its stream) is cut,
// so that it sees a broken answer; before, it waited as long as the endpoint
// likes, since ResponseHeaderTimeout covers only the head.
func TestF3UpstreamReadTimeout(t *testing.T) {
	for _, fe := range []string{fePlain, feTLS, feH2} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{Policy: limits(exchange.Limits{ReadTimeout: shortTimeout})})
			e := newEndpoint(t, func(c net.Conn, _ int32) {
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
				_, _ = io.Copy(io.Discard, br) // until the proxy or the test ends
			})
			routeTo(t, p, map[string]string{"": e.addr})
			var err error
			if fe == feH2 {
				ctx, cancel := context.WithTimeout(t.Context(), timeoutGuard)
				defer cancel()
				req, _ := getPath("/slow").h2(ctx)
				var res *http.Response
				if res, err = mustOpenH2(t, p).cc.RoundTrip(req); err == nil {
					_, err = io.ReadAll(res.Body)
					res.Body.Close()
				}
			} else {
				s := mustOpenH1(t, p, fe)
				if err := s.send(getPath("/slow").wire()); err != nil {
					t.Fatal(err)
				}
				_, err = s.read("GET", timeoutGuard)
			}
			switch {
			case err == nil:
				t.Error("10 bytes of a 100-byte body came as a whole answer")
			case isDeadline(err):
				t.Errorf("the answer still hangs %v after the endpoint fell silent: %v", timeoutGuard, err)
			}
		})
	}
}

// TestF3UpstreamSendTimeout: an endpoint takes a request but never reads
// its large body. Past UpstreamSendTimeout without a write to it, the
// client gets 504 (or, its upload cut short, sees its connection or stream
// end); before, the proxy waited on the endpoint for ever.
func TestF3UpstreamSendTimeout(t *testing.T) {
	const size = 64 << 20 // more than every socket buffer on the way
	for _, fe := range []string{fePlain, feTLS, feH2} {
		t.Run(fe, func(t *testing.T) {
			// No body limit: this is about the endpoint, not the size.
			p := start(t, Options{Policy: limits(exchange.Limits{SendTimeout: shortTimeout, MaxBodySize: -1})})
			ended := t.Context()
			e := newEndpoint(t, func(net.Conn, int32) { <-ended.Done() })
			routeTo(t, p, map[string]string{"": e.addr})
			var status int
			var err error
			if fe == feH2 {
				ctx, cancel := context.WithTimeout(t.Context(), timeoutGuard)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "POST", "https://a.example/upload", io.LimitReader(zeros{}, size))
				req.ContentLength = size
				var res *http.Response
				if res, err = mustOpenH2(t, p).cc.RoundTrip(req); err == nil {
					status = res.StatusCode
					res.Body.Close()
				}
			} else {
				s := mustOpenH1(t, p, fe)
				go func() {
					_, _ = fmt.Fprintf(s, "POST /upload HTTP/1.1\r\nHost: a.example\r\nContent-Length: %d\r\n\r\n", size)
					_, _ = io.Copy(s, io.LimitReader(zeros{}, size)) // ends when the connection does
				}()
				var a clientReply
				a, err = s.read("POST", timeoutGuard)
				status = a.status
			}
			switch {
			case isDeadline(err):
				t.Errorf("no answer and no end %v after the endpoint stopped reading: %v", timeoutGuard, err)
			case err == nil && status != http.StatusGatewayTimeout:
				t.Errorf("got %d, want 504", status)
			}
		})
	}
}

// TestF3TunnelIdleTimeout: a client opens a WebSocket tunnel through the
// proxy, and then neither it nor the backend sends anything. Past
// TunnelIdleTimeout the proxy closes the tunnel on both sides; before, it
// held both connections for as long as they stayed open (more than 100 s
// were seen). HTTP/2 has no tunnel.
func TestF3TunnelIdleTimeout(t *testing.T) {
	for _, fe := range []string{fePlain, feTLS} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{Policy: limits(exchange.Limits{TunnelIdleTimeout: shortTimeout})})
			backendEnd := make(chan struct{}, 1)
			e := newEndpoint(t, func(c net.Conn, _ int32) {
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Header.Get("Upgrade") != "websocket" {
					_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
				_, _ = io.Copy(io.Discard, br)
				backendEnd <- struct{}{}
			})
			routeTo(t, p, map[string]string{"": e.addr})
			s := mustOpenH1(t, p, fe)
			if err := s.send("GET /chat HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			if a, err := s.read("GET", ioGuard); err != nil || a.status != 101 {
				t.Fatalf("upgrade: %d %v", a.status, err)
			}
			deadline := time.Now().Add(timeoutGuard)
			if !endsWithin(s, s.br, time.Until(deadline)) {
				t.Errorf("the client's side of an idle tunnel stayed open %v", timeoutGuard)
			}
			select {
			case <-backendEnd: // closed or reset: either way by the proxy
			case <-time.After(max(time.Until(deadline), 0)):
				t.Errorf("the backend's side of an idle tunnel stayed open %v", timeoutGuard)
			}
		})
	}
}

// TestF4MaxConnections: clients open more connections than MaxConnections
// allows. MaxConnections counts the endpoints' connections too, as nginx's
// worker_connections does (this endpoint closes each after its answer, so
// that only clients' stay open): with 6, five clients are served, each
// request taking a sixth connection for its endpoint a moment; a sixth
// client is let in but its request gets 502, there being no room left for
// an endpoint; a seventh is closed at once (its read ends, with no answer).
// The others are served on, and once one of them closes, a new one is
// served again. Before, every connection was served, so that a few clients
// could take all of the proxy's file descriptors.
func TestF4MaxConnections(t *testing.T) {
	for _, fe := range []string{fePlain, feTLS, feH2} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{MaxConnections: 6})
			e := newEndpoint(t, func(c net.Conn, _ int32) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
				}
			})
			routeTo(t, p, map[string]string{"": e.addr})
			var five []clientConn
			for i := range 5 {
				s := mustOpen(t, p, fe)
				if a, err := s.do(getPath(fmt.Sprintf("/conn-%d", i))); err != nil || a.status != 200 {
					t.Fatalf("connection %d: %d %v", i, a.status, err)
				}
				five = append(five, s)
			}
			sixth := mustOpen(t, p, fe)
			if a, err := sixth.do(getPath("/sixth")); err != nil || a.status != 502 {
				t.Errorf("the sixth connection's request: %d %v, want 502 (no room for its endpoint)", a.status, err)
			}
			if seventh, err := openClient(t, p, fe); err == nil {
				a, err := seventh.do(getPath("/seventh"))
				switch {
				case err == nil:
					t.Errorf("the seventh connection was served (%d), want it closed at once", a.status)
				case isDeadline(err):
					t.Errorf("the seventh connection was neither served nor closed: %v", err)
				}
			} else if isDeadline(err) {
				t.Errorf("the seventh connection hangs: %v", err)
			}
			if st := p.Stats(); st.Refused < 2 || st.Open != 6 {
				t.Errorf("stats %+v, want 6 open, and the sixth's endpoint and the seventh counted as refused", st)
			}
			sixth.Close()
			for end := time.Now().Add(timeoutGuard); p.Stats().Open > 5 && time.Now().Before(end); {
				time.Sleep(10 * time.Millisecond) // until the proxy has seen it close
			}
			for i, s := range five {
				if a, err := s.do(getPath(fmt.Sprintf("/again-%d", i))); err != nil || a.status != 200 {
					t.Errorf("connection %d after the others: %d %v", i, a.status, err)
				}
			}
			five[0].Close()
			// Its place is free once the proxy has seen it close.
			served := false
			for end := time.Now().Add(timeoutGuard); !served && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				if s, err := openClient(t, p, fe); err == nil {
					a, err := s.do(getPath("/after"))
					served = err == nil && a.status == 200
					s.Close()
				}
			}
			if !served {
				t.Error("no new connection was served after one of the five closed")
			}
		})
	}
}

// TestF5SlowUploadIsReadBeforeConnecting: a client sends a head announcing
// a 100,000-byte body and 1,000 bytes of it, then stalls. While the body is
// incomplete no connection to the endpoint may be opened: slow clients
// must not hold endpoint connections (nginx reads the body first). Once the
// rest arrives the request goes through whole.
func TestF5SlowUploadIsReadBeforeConnecting(t *testing.T) {
	const size, first = 100000, 1000
	for _, fe := range []string{fePlain, feTLS, feH2} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{})
			e := bodyEndpoint(t)
			routeTo(t, p, map[string]string{"": e.addr})
			stall := func() {
				time.Sleep(300 * time.Millisecond)
				if n := e.accepted.Load(); n != 0 {
					t.Errorf("the endpoint had %d connection(s) while the body was incomplete, want none", n)
				}
			}
			var a clientReply
			var err error
			if fe == feH2 {
				body, w := io.Pipe()
				t.Cleanup(func() { w.Close() })
				ctx, cancel := context.WithTimeout(t.Context(), ioGuard)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "POST", "https://a.example/upload", body)
				req.ContentLength = size
				s := mustOpenH2(t, p)
				got := make(chan clientReply, 1)
				errc := make(chan error, 1)
				go func() {
					res, err := s.cc.RoundTrip(req)
					if err != nil {
						errc <- err
						return
					}
					defer res.Body.Close()
					b, err := io.ReadAll(res.Body)
					got <- clientReply{status: res.StatusCode, body: string(b)}
					errc <- err
				}()
				if _, err := w.Write(make([]byte, first)); err != nil {
					t.Fatal(err)
				}
				stall()
				if _, err := w.Write(make([]byte, size-first)); err != nil {
					t.Fatal(err)
				}
				w.Close()
				if err = <-errc; err == nil {
					a = <-got
				}
			} else {
				s := mustOpenH1(t, p, fe)
				if err := s.send(fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: a.example\r\nContent-Length: %d\r\n\r\n%s", size, strings.Repeat("x", first))); err != nil {
					t.Fatal(err)
				}
				stall()
				if err := s.send(strings.Repeat("x", size-first)); err != nil {
					t.Fatal(err)
				}
				a, err = s.read("POST", ioGuard)
			}
			if err != nil || a.status != 200 || a.body != fmt.Sprintf("got %d", size) {
				t.Errorf("once the body was whole: %d %q %v, want 200 %q", a.status, a.body, err, fmt.Sprintf("got %d", size))
			}
		})
	}
}

// TestF6HandedOffFraming: on a connection whose later requests net/http
// parses, a client sends request heads that proxies and endpoints may frame
// differently: Transfer-Encoding in HTTP/1.0, Content-Length twice (the
// same value, or two), a folded header line, a bare CR in a header line.
// Each gets 400 and the connection closed, as on the proxy's own loops,
// and nothing reaches the backend.
func TestF6HandedOffFraming(t *testing.T) {
	for _, c := range []struct{ name, req, method string }{
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n", "POST"},
		{"two CL, same", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", "POST"},
		{"two CL, different", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", "POST"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a.example\r\nX-A: a\r\n b\r\n\r\n", "GET"},
		{"bare CR", "GET / HTTP/1.1\r\nHost: a.example\r\nX-A: a\rb\r\n\r\n", "GET"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, fe := range []string{feHandedOffPlain, feHandedOffTLS} {
				t.Run(fe, func(t *testing.T) {
					p := start(t, Options{})
					e, reached := tally(t)
					routeTo(t, p, map[string]string{"": e.addr})
					s := mustOpenH1(t, p, fe)
					if err := s.send(c.req); err != nil {
						t.Fatal(err)
					}
					if a, err := s.read(c.method, ioGuard); err != nil || a.status != 400 {
						t.Errorf("got %d %v, want 400", a.status, err)
					}
					if !endsWithin(s, s.br, timeoutGuard) {
						t.Error("the connection stayed open")
					}
					if n := reached.Load(); n != 0 {
						t.Errorf("%d request(s) reached the backend", n)
					}
				})
			}
		})
	}
}

// TestF7H2Path: an HTTP/2 client sends a :path that is no origin-form path
// (HPACK carries any bytes): with a space, with a control byte, in absolute
// form, without a leading slash, or "*" with GET. Each gets 400, or the
// stream reset if the server library refuses it before the handler, and
// nothing reaches the backend (a space would split the request line the
// proxy writes upstream).
func TestF7H2Path(t *testing.T) {
	for _, c := range []struct{ name, path string }{
		{"space", "/a b"},
		{"control byte", "/a\x01b"},
		{"absolute form", "http://x/abs"},
		{"no slash", "x"},
		{"asterisk", "*"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Run(feH2, func(t *testing.T) {
				p := start(t, Options{})
				e, reached := tally(t)
				routeTo(t, p, map[string]string{"": e.addr})
				f := framesTo(t, p)
				f.headers(1, true, ":method", "GET", ":scheme", "https", ":authority", "a.example", ":path", c.path)
				end := f.end(1, ioGuard)
				if end.status != "400" && !end.reset {
					t.Errorf("got %v, want 400 or the stream reset", end)
				}
				t.Logf(":path %q: %v", c.path, end)
				if n := reached.Load(); n != 0 {
					t.Errorf("%d request(s) reached the backend", n)
				}
			})
		})
	}
}

// TestF7H2PostSentOnce: an endpoint reads a POST and closes its connection
// without answering, on a new connection or on one kept alive from an
// answered request. A POST over HTTP/2, which is not idempotent, must
// reach it exactly once (sent again it could, say, pay twice), and the
// client gets 502.
func TestF7H2PostSentOnce(t *testing.T) {
	for _, c := range []struct {
		name string
		warm bool // a first request is answered and its connection kept
	}{{"new endpoint connection", false}, {"kept-alive endpoint connection", true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Run(feH2, func(t *testing.T) {
				p := start(t, Options{})
				var paid atomic.Int32
				e := newEndpoint(t, func(c net.Conn, _ int32) {
					br := bufio.NewReader(c)
					for {
						req, err := http.ReadRequest(br)
						if err != nil {
							return
						}
						_, _ = io.Copy(io.Discard, req.Body)
						if req.URL.Path != "/warm" {
							paid.Add(1)
							return // closed, unanswered
						}
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nwarm")
					}
				})
				routeTo(t, p, map[string]string{"": e.addr})
				s := mustOpen(t, p, feH2)
				if c.warm {
					if a, err := s.do(clientRequest{method: "POST", host: "a.example", path: "/warm", body: "data"}); err != nil || a.status != 200 {
						t.Fatalf("the first POST: %d %v", a.status, err)
					}
				}
				a, err := s.do(clientRequest{method: "POST", host: "a.example", path: "/pay", body: "data"})
				if err != nil || a.status != http.StatusBadGateway {
					t.Errorf("got %d %v, want 502", a.status, err)
				}
				if n := paid.Load(); n != 1 {
					t.Errorf("the POST reached the endpoint %d times, want once", n)
				}
			})
		})
	}
}

// TestF8UnderscoresInHeaders: a client sends header fields whose names
// hold '_' ("X_Forwarded_For: 6.6.6.6", "Foo_Bar: x"). Backends that map
// '-' and '_' alike (CGI, WSGI, PHP) would read the first as the proxy's
// X-Forwarded-For. By default they are dropped before the request goes
// upstream, as nginx does; with UnderscoresInHeaders they go through.
func TestF8UnderscoresInHeaders(t *testing.T) {
	fields := [][2]string{{"X_Forwarded_For", "6.6.6.6"}, {"Foo_Bar", "x"}}
	for _, c := range []struct {
		name string
		keep bool
	}{{"dropped by default", false}, {"kept when allowed", true}} {
		t.Run(c.name, func(t *testing.T) {
			for _, fe := range []string{fePlain, feTLS, feH2, feHandedOffPlain} {
				t.Run(fe, func(t *testing.T) {
					p := start(t, Options{Policy: exchange.Settings{UnderscoresInHeaders: c.keep}})
					routeTo(t, p, map[string]string{"": addr(echo(t, "web"))})
					a, err := mustOpen(t, p, fe).do(clientRequest{method: "GET", host: "a.example", path: "/", header: fields})
					if err != nil || a.status != 200 {
						t.Fatalf("got %d %v", a.status, err)
					}
					sn, err := a.seen()
					if err != nil {
						t.Fatalf("the backend's answer: %v", err)
					}
					for _, f := range fields {
						got := strings.Join(headerFold(sn.Header, f[0]), ",")
						if want := map[bool]string{false: "", true: f[1]}[c.keep]; got != want {
							t.Errorf("the backend saw %s %q, want %q", f[0], got, want)
						}
					}
				})
			}
		})
	}
}

// TestF9MalformedChunkedBody: a client sends a valid head with a chunked
// body, a chunk of data, then a chunk size that is no number. It gets 400
// and its connection closed. The endpoint connection that took part of the
// body, if any, is closed, never reused: the next request (on a new client
// connection) reaches the endpoint on another connection and gets its own
// answer.
func TestF9MalformedChunkedBody(t *testing.T) {
	for _, fe := range []string{fePlain, feTLS} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{})
			var partialConn atomic.Int32
			afterPartial := make(chan string, 1) // what came on that connection after the head, until it closed
			e := newEndpoint(t, func(c net.Conn, n int32) {
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if len(req.TransferEncoding) > 0 {
						partialConn.Store(n)
						_ = c.SetReadDeadline(time.Now().Add(ioGuard))
						rest, err := io.ReadAll(br)
						if isDeadline(err) {
							rest = append(rest, "[still open]"...)
						}
						afterPartial <- string(rest)
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					body := fmt.Sprintf("genuine conn=%d", n)
					_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			})
			routeTo(t, p, map[string]string{"": e.addr})

			s := mustOpenH1(t, p, fe)
			if err := s.send("POST /upload HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // the first chunk may go upstream
			if err := s.send("zz\r\n"); err != nil {
				t.Fatal(err)
			}
			if a, err := s.read("POST", ioGuard); err != nil || a.status != 400 {
				t.Errorf("got %d %v, want 400", a.status, err)
			}
			if !endsWithin(s, s.br, timeoutGuard) {
				t.Error("the client's connection stayed open")
			}

			a, err := mustOpen(t, p, fe).do(getPath("/next"))
			if err != nil || a.status != 200 || !genuineOn(a.body, partialConn.Load()) {
				t.Errorf("the next request: %d %q %v, want a genuine answer on a connection other than #%d", a.status, a.body, err, partialConn.Load())
			}
			if partialConn.Load() != 0 {
				select {
				case rest := <-afterPartial:
					if strings.Contains(rest, "HTTP/1.") || strings.HasSuffix(rest, "[still open]") {
						t.Errorf("the endpoint connection that took part of the body was not closed: it got %q", rest)
					}
				case <-time.After(ioGuard):
					t.Error("the endpoint connection that took part of the body stayed open")
				}
			}
		})
	}
}

// genuineOn reports whether body is a genuine answer of
// TestF9MalformedChunkedBody's endpoint given on a connection other than
// #bad.
func genuineOn(body string, bad int32) bool {
	var n int32
	if _, err := fmt.Sscanf(body, "genuine conn=%d", &n); err != nil {
		return false
	}
	return n != bad
}

// TestTraceRefused: TRACE echoes the request back, cookies and
// credentials included, to whoever can make a browser send it; the proxy
// answers it 405 itself, on every front-end, and nothing reaches the
// backend.
func TestTraceRefused(t *testing.T) {
	for _, fe := range []string{fePlain, feTLS, feH2} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{})
			e, reached := tally(t)
			routeTo(t, p, map[string]string{"": e.addr})
			a, err := mustOpen(t, p, fe).do(clientRequest{method: "TRACE", host: "a.example", path: "/"})
			if err != nil || a.status != http.StatusMethodNotAllowed {
				t.Errorf("got %d %v, want 405", a.status, err)
			}
			if n := reached.Load(); n != 0 {
				t.Errorf("%d request(s) reached the backend", n)
			}
		})
	}
}

// TestExpectContinueNotDelayed: a client sends a PUT with "Expect:
// 100-continue" and a 4-byte body to an endpoint that never sends 100
// Continue itself (most do not). The client gets its 100 Continue (or the
// final answer) from the proxy and the endpoint the request with no fixed
// delay: the whole exchange ends well under a second, where before
// net/http's Transport first waited its ExpectContinueTimeout of 1 s.
func TestExpectContinueNotDelayed(t *testing.T) {
	for _, fe := range []string{fePlain, feTLS} {
		t.Run(fe, func(t *testing.T) {
			p := start(t, Options{})
			routeTo(t, p, map[string]string{"": bodyEndpoint(t).addr})
			s := mustOpenH1(t, p, fe)
			began := time.Now()
			if err := s.send("PUT /e HTTP/1.1\r\nHost: a.example\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			a, err := s.read("PUT", ioGuard)
			if err == nil && a.status == http.StatusContinue {
				if err = s.send("data"); err == nil {
					a, err = s.read("PUT", ioGuard)
				}
			}
			took := time.Since(began)
			if err != nil || a.status != 200 || a.body != "got 4" {
				t.Fatalf("got %d %q %v, want 200 %q", a.status, a.body, err, "got 4")
			}
			if took >= 800*time.Millisecond {
				t.Errorf("the exchange took %v, want under 800ms", took.Round(time.Millisecond))
			}
		})
	}
}
