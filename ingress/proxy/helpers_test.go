package proxy

import (
	"crypto/tls"
	"crypto/x509"

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
