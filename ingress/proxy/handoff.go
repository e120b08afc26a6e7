package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
)

// handoff is the net.Listener of the http.Server that takes the
// connections the fast loop does not serve: HTTP/2, and HTTP/1.x
// connections from the first request the fast loop leaves to net/http
// (see reqHead.handoff) until they close.
type handoff struct {
	conns chan net.Conn
	addr  net.Addr
	done  chan struct{}
	once  sync.Once
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{conns: make(chan net.Conn), addr: addr, done: make(chan struct{})}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }

// give passes c to the http.Server. It reports false when the server is
// closed; c is then the caller's to close.
func (h *handoff) give(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.done:
		return false
	}
}

// replayConn is a connection handed off mid-stream: reads return the
// bytes the fast loop had already taken from it first.
type replayConn struct {
	net.Conn
	pending []byte
	// tls is the state of the TLS connection under Conn, if any: net/http
	// only recognises a bare *tls.Conn, so the state travels in the
	// request's context instead (see connContext).
	tls *tls.ConnectionState
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

type tlsStateKey struct{}

// connContext is the http.Server's ConnContext: it carries the TLS state
// of a replayed TLS connection to its requests.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if rc, ok := c.(*replayConn); ok && rc.tls != nil {
		return context.WithValue(ctx, tlsStateKey{}, rc.tls)
	}
	return ctx
}

// requestTLS gives r the TLS state of a replayed TLS connection, which
// net/http could not see.
func requestTLS(r *http.Request) {
	if r.TLS == nil {
		if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
			r.TLS = st
		}
	}
}
