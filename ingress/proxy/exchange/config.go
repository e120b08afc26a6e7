package exchange

import (
	"crypto/tls"
	"crypto/x509"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"

	"github.com/portico-lb/portico/ingress/route"
)

// Config is one immutable snapshot of everything the proxy serves. The
// controller compiles one on every change and the server swaps it in
// atomically; a Config is never modified afterwards (the round-robin
// cursors of its Upstreams aside).
type Config struct {
	// Routes picks the backend of each request and the Secret of each TLS
	// server name.
	Routes *route.Table
	// Upstreams holds the ready endpoints of every service backend the
	// routes name. A target missing here has no ready endpoint.
	Upstreams map[Target]*Upstream
	// Certs holds the certificates of the Secrets the routes name that
	// could be loaded. A Secret missing here (absent or broken) is served
	// with the default certificate, so other hosts are not affected.
	Certs map[route.SecretRef]*tls.Certificate
	// DefaultCert, when set, replaces the server's own default certificate.
	DefaultCert *tls.Certificate
	// Rules holds the policies of the Ingresses that set any, by
	// "namespace/name" (route.Backend's Ingress).
	Rules map[string]*Rules
	// ClientCertHosts are the hosts whose TLS handshakes ask the client
	// for a certificate, with the authorities they name: rule hosts
	// ("*.example.com" for a wildcard), "" for every host (see
	// ClientCAs).
	ClientCertHosts map[string]*x509.CertPool
}

// Certificate returns the certificate to present to a TLS client that
// asked for serverName (SNI): the Secret the routes name for it when it
// loaded, else DefaultCert. nil means the server's own default.
func (c *Config) Certificate(serverName string) *tls.Certificate {
	if serverName != "" {
		if ref, ok := c.Routes.TLS(serverName); ok && ref.Name != "" {
			if cert := c.Certs[ref]; cert != nil {
				return cert
			}
		}
	}
	return c.DefaultCert
}

// Target is a Service port as a route names it. ViaService: requests go
// to the Service's cluster IP rather than to its endpoints
// (service-upstream). Protocol is how the endpoints are spoken to
// (backend-protocol).
type Target struct {
	Namespace, Service string
	Port               route.Port
	ViaService         bool
	Protocol           route.Protocol
}

// TargetOf returns the target of a service backend.
func TargetOf(b route.Backend) Target {
	return Target{Namespace: b.Namespace, Service: b.Service, Port: b.Port, ViaService: b.ServiceUpstream, Protocol: b.Protocol}
}

// Upstream is the set of ready endpoints of one Target.
type Upstream struct {
	// Addrs are "ip:port" endpoint addresses.
	Addrs []string
	// AddrPorts are Addrs parsed; the zero AddrPort for one that is not
	// an IP address and port.
	AddrPorts []netip.AddrPort
	// next is the round-robin cursor, only ever advanced atomically.
	next atomic.Uint32
	// hashed serves affinity and upstream-hash-by (hash.go).
	hashed endpointHashes
}

// NewUpstream returns an Upstream over addrs. Its round robin starts at a
// random endpoint: every change compiles new Upstreams, and starting each
// at the first endpoint would send the first requests after every change
// to the same pod, in every replica.
func NewUpstream(addrs ...string) *Upstream {
	u := &Upstream{Addrs: addrs, AddrPorts: make([]netip.AddrPort, len(addrs))}
	for i, a := range addrs {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			u.AddrPorts[i] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	u.next.Store(rand.Uint32())
	return u
}

// pick returns the index of the endpoint to try first.
func (u *Upstream) pick() int {
	return int((u.next.Add(1) - 1) % uint32(len(u.Addrs)))
}
