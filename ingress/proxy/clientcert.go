package proxy

import (
	"crypto/tls"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// Client certificates (auth-tls-*): the handshake of a host whose routes
// authenticate clients by certificate asks for one, naming the
// authorities of those routes; the certificates received go to the core
// unverified, which decides per request (exchange/clientcert.go), as
// nginx completes the handshake and answers 400 for a missing or invalid
// certificate. Other hosts' handshakes are unchanged.

// withClientCerts returns base, asking for client certificates on the
// hosts the Config in force says.
func (s *Server) withClientCerts(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		pool := s.cfg.Load().ClientCAs(hello.ServerName)
		if pool == nil {
			return nil, nil // base, as for every other host
		}
		ask := base.Clone()
		ask.ClientAuth = tls.RequestClientCert
		ask.ClientCAs = pool
		// A resumed session carries the certificates (or their absence)
		// of a handshake made for another host, maybe one that asked for
		// none: every connection here shows its certificate anew.
		ask.SessionTicketsDisabled = true
		return ask, nil
	}
	return c
}

// peerOf returns what a handshake received of the client's certificates.
func peerOf(st *tls.ConnectionState) *exchange.Peer {
	if len(st.PeerCertificates) == 0 {
		return nil
	}
	return &exchange.Peer{Certs: st.PeerCertificates}
}
