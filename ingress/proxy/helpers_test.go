package proxy

import (
	"crypto/tls"
	"crypto/x509"
)

func certPool(certs ...*tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c.Leaf)
	}
	return p
}
