package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// SSL passthrough: when the routes pass some server names through
// (ingress-nginx's ssl-passthrough), the TLS front-end reads a
// connection's ClientHello before the handshake, and the core decides
// whether its server name is one of them. Such a connection is joined to
// an endpoint, ClientHello and all, as nginx's stream module with
// ssl_preread does; any other is handshaken with what was read given back
// first. Connections pay for the read only while some name is passed
// through.

// passthrough serves the connection if its server name is passed
// through, and reports whether it did (the connection is then done with).
// Otherwise the connection goes on to its handshake, the ClientHello read
// again from what was kept.
func (hc *h1conn) passthrough(cfg *exchange.Config) bool {
	s := hc.s
	start := time.Now()
	_ = hc.conn.SetReadDeadline(start.Add(s.opts.ReadHeaderTimeout))
	hello, sni, err := readClientHello(hc.conn)
	_ = hc.conn.SetReadDeadline(time.Time{})
	if err != nil {
		s.log.Debug("no TLS ClientHello", "client", hc.client.String(), "err", err)
		return true
	}
	x := &hc.x
	if !s.policy.Passthrough(cfg, sni, hc.client, hc.local, start, x) {
		hc.conn = &replayConn{Conn: hc.conn, first: hello}
		return false
	}
	defer hc.observe()
	if x.Outcome != exchange.Tunnel {
		return true // refused: closing is all a connection can be told
	}
	for {
		addr, _ := x.Endpoint()
		c, err := s.dial(addr, x.Limits.ConnectTimeout, nil)
		if err == nil {
			x.Joined()
			hc.state.Store(connActive)
			join(hc.conn, c.Conn, hello, nil, x.Limits.TunnelIdleTimeout)
			c.Close()
			return true
		}
		if !x.Retry(exchange.FailConnect) {
			return true
		}
	}
}

// readClientHello reads c until its TLS ClientHello is whole and returns
// every byte read, and the server name it asks for. crypto/tls parses the
// hello, and is stopped as soon as it has: nothing is written to c.
func readClientHello(c net.Conn) ([]byte, string, error) {
	rc := &recordConn{Conn: c}
	var sni string
	err := tls.Server(rc, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni = h.ServerName
		return nil, errHelloRead
	}}).Handshake()
	if !errors.Is(err, errHelloRead) {
		return nil, "", err
	}
	return rc.read.Bytes(), sni, nil
}

var errHelloRead = errors.New("the ClientHello is read")

// recordConn keeps what is read, and drops what is written (the alert
// crypto/tls sends when it is stopped).
type recordConn struct {
	net.Conn
	read bytes.Buffer
}

func (c *recordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Write(p[:n])
	return n, err
}

func (c *recordConn) Write(p []byte) (int, error) { return len(p), nil }

// replayConn gives first to its reads before the connection's own bytes.
type replayConn struct {
	net.Conn
	first []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
