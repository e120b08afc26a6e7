package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The whole package's tests run against the event loops (and again with
// -goroutine-loop against the goroutine loop). These test what only the
// loops do: hand a connection over mid-life, watch a waiting client,
// hold back an endpoint for a slow client.

// loopProxy serves endpoints with the event loops on, whatever
// -goroutine-loop says.
func loopProxy(t *testing.T, opts Options, endpoints ...string) *proxy {
	t.Helper()
	s, err := New(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := serve(t, s)
	p.Store(&Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[Target]*Upstream{target("web"): NewUpstream(endpoints...)},
	})
	return p
}

// loopConns counts the connections an event loop serves now.
func loopConns(s *Server) int {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	n := 0
	for hc := range s.conns {
		if hc.state.Load() == connEvLoop {
			n++
		}
	}
	return n
}

// A connection stays with a loop while its requests are of the common
// kind, and goes to the goroutine loop, which serves it on, at the first
// that is not: a chunked answer, or a body too large to read whole.
func TestLoopHandsConnectionsOver(t *testing.T) {
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

	c := dial(t, p.plain)
	get(c, "/1")
	if n := loopConns(p.Server); n != 1 {
		t.Fatalf("after a plain GET, %d connections with the loops, want 1", n)
	}

	// A chunked answer: relayed by the goroutine loop, which then serves
	// the connection's next requests.
	p.Store(&Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[Target]*Upstream{target("web"): NewUpstream(chunked)},
	})
	if body := get(c, "/chunked"); body != "hello" {
		t.Fatalf("chunked answer: %q", body)
	}
	if n := loopConns(p.Server); n != 0 {
		t.Fatalf("after a chunked answer, %d connections with the loops, want 0", n)
	}
	p.Store(&Config{
		Routes:    table(t, ingress("web", "", prefix("/", "web"))),
		Upstreams: map[Target]*Upstream{target("web"): NewUpstream(addr(b))},
	})
	if body := get(c, "/after"); !strings.Contains(body, `"URI":"/after"`) {
		t.Fatalf("after the hand-over: %s", body)
	}

	// A body larger than the loops read whole, pipelined with a GET.
	c = dial(t, p.plain)
	big := strings.Repeat("x", maxEvBody+1)
	c.send(fmt.Sprintf("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%sGET /next HTTP/1.1\r\nHost: x\r\n\r\n", len(big), big))
	if res, body := c.read("POST"); res.StatusCode != 200 || !strings.Contains(body, `"Body":"`+big+`"`) {
		t.Fatalf("large body: %d, the backend saw another body", res.StatusCode)
	}
	if res, body := c.read("GET"); res.StatusCode != 200 || !strings.Contains(body, `"URI":"/next"`) {
		t.Fatalf("the request after a large body: %d %s", res.StatusCode, body)
	}

	// A body the loops take whole, and a head sent in pieces.
	c = dial(t, p.plain)
	small := strings.Repeat("y", 1000)
	for _, part := range []string{"POST /small HTTP/1.1\r\nHo", "st: x\r\nContent-Len", fmt.Sprintf("gth: %d\r\n\r\n", len(small)), small[:10], small[10:]} {
		c.send(part)
		time.Sleep(10 * time.Millisecond)
	}
	if res, body := c.read("POST"); res.StatusCode != 200 || !strings.Contains(body, `"Body":"`+small+`"`) {
		t.Fatalf("body in pieces: %d %s", res.StatusCode, body)
	}
	if n := loopConns(p.Server); n != 1 {
		t.Fatalf("after a small body in pieces, %d connections with the loops, want 1", n)
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
	recs := make(chan Record, 1)
	p := loopProxy(t, Options{Observe: func(r Record) { recs <- r }}, endpoint)
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

// FuzzFindHead: the loops find a head in what they read as readLines
// reads it from a stream: the same bytes, the same limits.
func FuzzFindHead(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\n\nGET / HTTP/1.1\nHost: a\n\nrest",
		"GET / HTTP/1.1\r\nHost: a\r\n",
		"\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(seed), 64)
	}
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max <= 0 || max > 1<<16 {
			return
		}
		start, end, st := findHead(in, max)
		buf, err := readLines(bufio.NewReaderSize(bytes.NewReader(in), 16), nil, max)
		switch {
		case err == errTooLarge:
			if st != headTooLarge {
				t.Fatalf("readLines: too large; findHead: %d (%q)", st, in)
			}
		case err != nil: // the input ended inside a head, or before one
			if st != headIncomplete {
				t.Fatalf("readLines: %v; findHead: %d [%d:%d] (%q)", err, st, start, end, in)
			}
		default:
			if st != headComplete || !bytes.Equal(in[start:end], buf) {
				t.Fatalf("readLines read %q; findHead: %d %q (%q)", buf, st, in[start:end], in)
			}
		}
	})
}
