package exchange

import (
	"crypto/tls"
	"crypto/x509"
)

// BackendTLS is how the proxy speaks TLS to the endpoints of one
// Ingress's backends (backend-protocol HTTPS or GRPCS, and the
// proxy-ssl-* annotations). The zero value is nginx's default: TLS with
// no verification and no server name sent.
type BackendTLS struct {
	// Verify: the endpoint's certificate must chain to Roots (the
	// system's when nil) and be valid for Name (proxy-ssl-verify).
	Verify bool
	Roots  *x509.CertPool
	// Name is the name an endpoint's certificate is verified for, and
	// sent as the TLS server name when SNI is set (proxy-ssl-name). Empty:
	// the Service's own, <service>.<namespace>.svc.
	Name string
	// SNI: send Name as the TLS server name (proxy-ssl-server-name).
	SNI bool
	// Cert, when set, is presented to endpoints that ask for a client
	// certificate (proxy-ssl-secret's tls.crt and tls.key).
	Cert *tls.Certificate
	// Key identifies these settings across compiles: equal Keys, equal
	// settings. The proxy keeps one client, and its connections, per Key.
	Key string
}

// ServerName is the name a target's endpoints are verified for, and
// sent as SNI when b says so.
func (b *BackendTLS) ServerName(t Target) string {
	if b != nil && b.Name != "" {
		return b.Name
	}
	return t.Service + "." + t.Namespace + ".svc"
}
