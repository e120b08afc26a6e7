package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

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
	s.Store(&exchange.Config{Routes: tab, Upstreams: map[exchange.Target]*exchange.Upstream{}})
	return s
}

// FuzzHTTP2Handler: whatever request net/http can parse, the HTTP/2
// adapter answers it without panicking.
func FuzzHTTP2Handler(f *testing.F) {
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
		http2Handler{s}.ServeHTTP(w, r)
		if w.Code < 200 || w.Code > 599 || w.Code == 200 && r.RequestURI != "*" {
			t.Fatalf("status %d with no endpoint anywhere", w.Code)
		}
	})
}

// FuzzConn: raw bytes, as one client sends them on a connection, go
// through the whole goroutine loop (parse, decide, answer) with no
// endpoint to forward to. It never panics, and what it writes back is a
// sequence of well-formed answers of its own.
func FuzzConn(f *testing.F) {
	s := fuzzServer(f)
	fr := &front{s: s}
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET /%zz HTTP/1.1\r\nHost: b\r\n\r\n",
		"POST /x/../y HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nabcHEAD / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.example:8080\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: b\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nTRACE / HTTP/1.1\r\nHost: b\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &memConn{in: bytes.NewReader(in)}
		s.open.Add(1)
		hc := s.track(c, fr)
		hc.serve()
		for _, res := range answers(t, in, c.out.Bytes()) {
			if res.StatusCode < 300 && res.Request.RequestURI != "*" {
				t.Fatalf("answered %d with no endpoint anywhere", res.StatusCode)
			}
		}
	})
}

// answers reads what the proxy wrote to a client that sent in: a
// sequence of well-formed answers of its own (Server and Date), each read
// as an answer to its request's method, as net/http reads the requests
// (an answer to HEAD has no body, whatever its Content-Length says).
// Interim 100 Continue answers are skipped. An answer cut short ends it.
func answers(t *testing.T, in, out []byte) []*http.Response {
	t.Helper()
	var reqs []*http.Request
	rr := bufio.NewReader(bytes.NewReader(in))
	for {
		r, err := http.ReadRequest(rr)
		if err != nil {
			break
		}
		reqs = append(reqs, r)
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			break
		}
	}
	var all []*http.Response
	br := bufio.NewReader(bytes.NewReader(out))
	for {
		if _, err := br.Peek(1); err != nil {
			return all
		}
		req := &http.Request{Method: "GET", RequestURI: "/"} // for what the proxy refused, and sentinels
		if len(all) < len(reqs) {
			req = reqs[len(all)]
		}
		res, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("a malformed answer (%v) to %q: %q", err, in, out)
		}
		if res.StatusCode == 100 {
			continue
		}
		if res.Header.Get("Server") != "portico" || res.Header.Get("Date") == "" {
			t.Fatalf("an answer without Server or Date to %q: %q", in, out)
		}
		all = append(all, res)
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			return all // cut on purpose: a broken answer
		}
	}
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
