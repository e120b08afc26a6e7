package main

// Everything the bench knows of Portico's proxy API is in this file, so
// that a change of that API is a change here only.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/portico-lb/portico/ingress/proxy"
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

// servePortico serves plain HTTP on plain and HTTPS (HTTP/1.1 and h2 by
// ALPN) on secure, either of which may be nil, proxying every request to
// backend, until ctx ends. The returned channel is closed once the proxy
// has shut down.
func servePortico(ctx context.Context, plain, secure net.Listener, backend string, cert *tls.Certificate) (<-chan struct{}, error) {
	// The certificate is the default one rather than an Ingress's TLS
	// Secret: wrk sends the address as SNI, and a TLS host would have plain
	// HTTP redirected with 308.
	s, err := proxy.New(proxy.Options{DefaultCert: cert}, nil)
	if err != nil {
		return nil, err
	}
	to := route.Backend{Service: "backend", Port: route.Port{Number: 80}}
	paths := []route.Path{{Path: "/", Type: route.Prefix, Backend: to}}
	tab, rej := route.Build([]route.Ingress{{
		Namespace: "bench", Name: "bench",
		Rules: []route.Rule{{Host: benchHost, Paths: paths}, {Paths: paths}},
	}})
	if len(rej) > 0 {
		return nil, fmt.Errorf("routes: %v", rej)
	}
	s.Store(&proxy.Config{
		Routes: tab,
		Upstreams: map[proxy.Target]*proxy.Upstream{
			{Namespace: "bench", Service: to.Service, Port: to.Port}: proxy.NewUpstream(backend),
		},
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ctx, plain, secure, time.Second)
	}()
	return done, nil
}
