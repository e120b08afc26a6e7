package main

// Everything the bench knows of Portico's proxy API is in this file, so
// that a change of that API is a change here only.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/portico-lb/portico/ingress/proxy"
	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// benchHost is the Host the load generators send; a request for any other
// host (h2spec's :authority is the address) takes the catch-all rule.
const benchHost = "bench.example"

// newCert returns the self-signed ECDSA P-256 certificate both proxies
// serve.
func newCert() (*tls.Certificate, error) {
	return proxy.SelfSigned(benchHost, benchHost)
}

// backends are the addresses of the HTTP backend, and of the gRPC one ("":
// none).
type backends struct{ http, grpc string }

// servePortico serves plain HTTP on plain and HTTPS (HTTP/1.1 and h2 by
// ALPN) on secure, either of which may be nil, proxying every request to
// backend, until ctx ends. The returned channel is closed once the proxy
// has shut down.
func servePortico(ctx context.Context, plain, secure net.Listener, be backends, cert *tls.Certificate) (<-chan struct{}, error) {
	// The certificate is the default one rather than an Ingress's TLS
	// Secret: wrk sends the address as SNI, and a TLS host would have plain
	// HTTP redirected with 308.
	s, err := proxy.New(proxy.Options{DefaultCert: cert}, nil)
	if err != nil {
		return nil, err
	}
	backend := be.http
	to := route.Backend{Service: "backend", Port: route.Port{Number: 80}}
	canary := route.Backend{Service: "canary", Port: route.Port{Number: 80}}
	grpcTo := route.Backend{Service: "grpc", Port: route.Port{Number: 80}}
	paths := []route.Path{{Path: "/", Type: route.Prefix, Backend: to}}
	// The annotated route (see annotatedServer), as the controller
	// compiles such an Ingress and its canary.
	tab, rej := route.Build([]route.Ingress{{
		Namespace: "bench", Name: "bench",
		Rules: []route.Rule{{Host: benchHost, Paths: paths}, {Paths: paths}},
	}, {
		Namespace: "bench", Name: "annotated", Regex: true, RewriteTarget: "/$2",
		Rules: []route.Rule{{Host: annotatedHost, Paths: []route.Path{{Path: annotatedPath, Backend: to}}}},
	}, {
		Namespace: "bench", Name: "annotated-canary", Canary: &route.Canary{Weight: 10, WeightTotal: 100},
		Rules: []route.Rule{{Host: annotatedHost, Paths: []route.Path{{Path: annotatedPath, Backend: canary}}}},
	}, {
		Namespace: "bench", Name: "grpc", Protocol: route.GRPC,
		Rules: []route.Rule{{Host: grpcHost, Paths: []route.Path{{Path: "/", Type: route.Prefix, Backend: grpcTo}}}},
	}})
	if len(rej) > 0 {
		return nil, fmt.Errorf("routes: %v", rej)
	}
	ups := map[exchange.Target]*exchange.Upstream{
		{Namespace: "bench", Service: to.Service, Port: to.Port}:         exchange.NewUpstream(backend),
		{Namespace: "bench", Service: canary.Service, Port: canary.Port}: exchange.NewUpstream(backend),
	}
	if be.grpc != "" {
		ups[exchange.Target{Namespace: "bench", Service: grpcTo.Service, Port: grpcTo.Port, Protocol: route.GRPC}] = exchange.NewUpstream(be.grpc)
	}
	s.Store(&exchange.Config{
		Routes:    tab,
		Upstreams: ups,
		Rules: map[string]*exchange.Rules{"bench/annotated": {
			Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			CORS: &exchange.CORS{Origins: []string{corsOrigin}, Methods: "GET, PUT, POST, DELETE, PATCH, OPTIONS",
				Headers: "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization",
				MaxAge:  "1728000", Credentials: true},
		}},
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ctx, plain, secure, time.Second)
	}()
	return done, nil
}

// The memory mode runs Portico in a child process, this same binary
// started again with these variables set, so that the clients' memory is
// not counted in the proxy's.
const (
	childBackendEnv = "PORTICO_BENCH_CHILD_BACKEND"
	childNofileEnv  = "PORTICO_BENCH_CHILD_NOFILE"
)

func isChild() bool { return os.Getenv(childBackendEnv) != "" }

// runChild serves plain HTTP on a loopback port of its choosing, prints
// that address on stdout, and shuts down when stdin closes (the parent
// closed it, or died).
func runChild() error {
	if n, _ := strconv.Atoi(os.Getenv(childNofileEnv)); n > 0 {
		if err := raiseNofile(n); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, err := servePortico(ctx, ln, nil, backends{http: os.Getenv(childBackendEnv)}, nil)
	if err != nil {
		cancel()
		return err
	}
	fmt.Println(ln.Addr())
	_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	cancel()
	<-done
	return nil
}
