package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/route"
)

// FuzzCheckPath: CheckPath never panics, and a path it accepts is one a route
// can judge: it starts with '/', has no dot segment and no control byte, and
// its escaped form has no encoded slash.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a/../b", "/%2e%2e/", "/a%2Fb", "a", "", "/a/.", "/..", "//x", "/a%00", "/%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, escaped string) {
		path, err := url.PathUnescape(escaped)
		if err != nil {
			return // the server refuses such a request line before routing
		}
		if CheckPath(path, escaped) != nil {
			return
		}
		if path[0] != '/' {
			t.Fatalf("accepted %q, which does not start with /", path)
		}
		for _, seg := range strings.Split(path, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("accepted %q, which has a dot segment", path)
			}
		}
		if strings.Contains(strings.ToLower(escaped), "%2f") {
			t.Fatalf("accepted %q, which has an encoded slash", escaped)
		}
		for _, c := range []byte(path) {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("accepted %q, which has a control byte", path)
			}
		}
	})
}

// fuzzServer is a Server with routes but no endpoint anywhere: a TLS host
// whose Service has none, and a resource default backend.
func fuzzServer(f *testing.F) *Server {
	s, err := New(Options{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	tab, _ := route.Build([]route.Ingress{
		{Namespace: "ns", Name: "a", Rules: []route.Rule{{Host: "a.example", Paths: []route.Path{{Path: "/", Backend: svc("none")}}}},
			TLS: []route.TLS{{Hosts: []string{"a.example"}}}},
		{Namespace: "ns", Name: "b", DefaultBackend: &route.Backend{Resource: "x/Y/z"}},
	})
	s.Store(&Config{Routes: tab, Upstreams: map[Target]*Upstream{}})
	return s
}

// FuzzServeHTTP: whatever request net/http can parse, the handler answers
// without panicking.
func FuzzServeHTTP(f *testing.F) {
	s := fuzzServer(f)
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"GET /x/../y HTTP/1.1\r\nHost: b\r\n\r\n",
		"GET http://a.example/%2F HTTP/1.1\r\nHost: a.example:99\r\n\r\n",
		"POST /u?x HTTP/1.0\r\nContent-Length: 3\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nabc",
		"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		r.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code < 300 || w.Code > 599 {
			t.Fatalf("status %d with no endpoint anywhere", w.Code)
		}
	})
}

// FuzzReadHead: the fast loop's parser never panics, refuses with 400 or
// 431 only, and a request it keeps for itself is well formed and read the
// same way by net/http: same method, target, Host, body length and
// keep-alive. A parser that disagrees with the servers behind it is how
// requests get smuggled.
func FuzzReadHead(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"\r\nPOST /u?x=1 HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
		"GET /x HTTP/1.1\nHost: b\nX-A:  spaced \t\n\n",
		"PUT /p HTTP/1.1\r\nHost: c:80\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: c\r\nX: a\r\n b\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close, X-Y\r\nX-Y: 1\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var h reqHead
		// A small buffer, so that lines cross its end.
		head, err := readHead(bufio.NewReaderSize(bytes.NewReader(in), 16), nil, 4096, &h)
		if err != nil {
			var he *headError
			if errors.As(err, &he) && he.code != 400 && he.code != 431 {
				t.Fatalf("refused with %d", he.code)
			}
			return
		}
		if h.handoff {
			return // net/http's to judge
		}
		if fastMethod([]byte(h.method)) == "" || h.target == "" || h.target[0] != '/' || h.minor > 1 || h.length < 0 || !validHost(h.host) {
			t.Fatalf("accepted a malformed head: %+v", h)
		}
		for _, c := range []byte(h.target) {
			if c <= ' ' || c == 0x7f {
				t.Fatalf("accepted target %q", h.target)
			}
		}
		for _, fl := range h.fields {
			if fl.name == "" || strings.ContainsFunc(fl.name, func(r rune) bool { return r > 0x7f || !isToken(byte(r)) }) {
				t.Fatalf("accepted field name %q", fl.name)
			}
			if strings.ContainsAny(fl.value, "\r\n\x00") || strings.TrimSpace(fl.value) != strings.Trim(fl.value, " \t") || strings.Trim(fl.value, " \t") != fl.value {
				t.Fatalf("accepted field value %q", fl.value)
			}
			if is(fl.name, "Transfer-Encoding") || is(fl.name, "Upgrade") || is(fl.name, "Expect") || is(fl.name, "Host") {
				t.Fatalf("kept a request with %s", fl.name)
			}
		}

		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("accepted a head net/http refuses (%v): %q", err, head)
		}
		if r.Method != h.method || r.RequestURI != h.target || r.Host != h.host || r.ContentLength != h.length || r.Close != h.close {
			t.Fatalf("read %q as %s %s host %q length %d close %v; net/http: %s %s host %q length %d close %v",
				head, h.method, h.target, h.host, h.length, h.close, r.Method, r.RequestURI, r.Host, r.ContentLength, r.Close)
		}
	})
}

// FuzzRelay: an endpoint's response, however broken, never panics the
// proxy; a body it relays as chunks decodes to what net/http reads from
// the same response.
func FuzzRelay(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: v\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nto the end",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		var h resHead
		if _, err := readResponseHead(br, nil, &h); err != nil {
			return
		}
		if h.status < 100 || h.status > 999 {
			t.Fatalf("status %d", h.status)
		}
		var out bytes.Buffer
		bw := bufio.NewWriterSize(&out, 16)
		r := relay{dst: bw, src: br}
		var err error
		switch {
		case noResponseBody("GET", h.status):
			return
		case h.chunked:
			err = r.copyChunked(true)
		case h.length >= 0:
			err = r.copyN(h.length)
		default:
			err = r.copyToEOF(true)
		}
		if err != nil {
			return
		}
		_ = bw.Flush()
		var got []byte
		if h.length >= 0 {
			got = out.Bytes()
		} else if got, err = io.ReadAll(httputil.NewChunkedReader(&out)); err != nil {
			t.Fatalf("relayed chunks that do not decode (%v): %q", err, out.Bytes())
		}
		res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(in)), &http.Request{Method: "GET"})
		if err != nil {
			return
		}
		want, err := io.ReadAll(res.Body)
		if err != nil {
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("relayed body %q, net/http reads %q", got, want)
		}
	})
}

// FuzzFastLoop: raw bytes, as one client sends them on a connection, go
// through the whole fast loop (parse, route, answer) with no endpoint to
// forward to. It never panics, and what it writes back is a sequence of
// well-formed responses of its own.
func FuzzFastLoop(f *testing.F) {
	s := fuzzServer(f)
	fr := &front{s: s, handoff: newHandoff(nil)}
	fr.handoff.Close() // hand-offs are refused: the loop closes those connections
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET /%zz HTTP/1.1\r\nHost: b\r\n\r\n",
		"POST /x/../y HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nabcHEAD / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.example:8080\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: b\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &memConn{in: bytes.NewReader(in)}
		hc := s.track(c)
		fr.serveConn(hc, nil)
		all := c.out.String()
		br := bufio.NewReader(&c.out)
		for {
			if _, err := br.Peek(1); err == io.EOF {
				return
			}
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("wrote a malformed response (%v): %q", err, all)
			}
			if res.StatusCode < 300 || res.StatusCode > 599 || res.Header.Get("Server") != "portico" || res.Header.Get("Date") == "" {
				t.Fatalf("answered %d %v with no endpoint anywhere", res.StatusCode, res.Header)
			}
			if _, err := io.Copy(io.Discard, res.Body); err != nil {
				t.Fatalf("response body: %v", err)
			}
		}
	})
}

// memConn is a client connection that sends in and records what it gets.
type memConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1234} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }
