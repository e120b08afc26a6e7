package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// BenchmarkProxy: requests over keep-alive connections through the proxy
// to a backend, all in this process on loopback: GETs, POSTs with a 1 KiB
// body, and chunked POSTs. The figures include the client and the backend; compare them
// between versions of the proxy, not with other proxies (ingress/bench
// does that).
func BenchmarkProxy(b *testing.B) {
	body := strings.Repeat("x", 1<<10)
	b.Run("GET", func(b *testing.B) {
		benchProxy(b, "GET /shop/cart?id=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	})
	b.Run("POST", func(b *testing.B) {
		benchProxy(b, "POST /shop/cart HTTP/1.1\r\nHost: bench.example\r\nContent-Length: 1024\r\n\r\n"+body)
	})
	b.Run("chunked", func(b *testing.B) {
		benchProxy(b, "POST /shop/cart HTTP/1.1\r\nHost: bench.example\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n"+body+"\r\n0\r\n\r\n")
	})
}

func benchProxy(b *testing.B, request string) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "hello from the backend\n")
	}))
	defer backend.Close()
	s, err := New(Options{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	tab, _ := routeTable()
	s.Store(&exchange.Config{Routes: tab, Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(backend.Listener.Addr().String())}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, ln, nil, time.Second) }()
	defer func() { cancel(); <-done }()

	req := []byte(request)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
}
