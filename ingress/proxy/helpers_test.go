package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

func certPool(certs ...*tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c.Leaf)
	}
	return p
}

func routeTable() (*route.Table, []route.Rejection) {
	return route.Build([]route.Ingress{{Namespace: "ns", Name: "web", Rules: []route.Rule{{Host: "bench.example",
		Paths: []route.Path{{Path: "/", Type: route.Prefix, Backend: route.Backend{Service: "web", Port: route.Port{Number: 80}}}}}}}})
}

// readTimeout is the policy of a test with a short UpstreamReadTimeout.
func readTimeout(d time.Duration) exchange.Settings {
	return exchange.Settings{Limits: exchange.Limits{ReadTimeout: d}}
}

// connectTimeout is the policy of a test with a short connect timeout.
func connectTimeout(d time.Duration) exchange.Settings {
	return exchange.Settings{Limits: exchange.Limits{ConnectTimeout: d}}
}

// limits is the policy of a test with the limits l.
func limits(l exchange.Limits) exchange.Settings { return exchange.Settings{Limits: l} }
