package proxy

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// The HTTP/2 endpoints (GRPC, GRPCS, H2C) are spoken to by x/net's HTTP/2
// Transport with a connection pool of our own, h2Pool, which puts at most
// h2StreamsPerConn streams on a connection and opens another to the
// endpoint when every one has that many.
//
// Why not net/http's pool: it puts every stream to an endpoint on one
// connection when the endpoint allows it, and gRPC servers allow any
// number. A connection's receive window is shared by its streams and
// refilled only as their clients read: clients that open streams and
// stop reading (4,096 streams of 256 KiB fill the 1 GiB default, 32
// client connections of 128 streams) would hold it all and freeze every
// other client's streams to that endpoint until ClientSendTimeout. nginx's
// grpc_pass has no such coupling: a connection per request.
//
// With the cap, what the streams of one connection can hold
// (h2StreamsPerConn × h2StreamWindow, 100 × 256 KiB = 25 MiB) is less than
// the connection's window (h2ConnWindow, 32 MiB): the connection's window
// never runs out, and a stream waits for its own client only.
const (
	// h2StreamWindow is how much of an HTTP/2 endpoint's answer the proxy
	// takes ahead of its client, per stream.
	h2StreamWindow = 256 << 10
	// h2StreamsPerConn is the most streams on one endpoint connection
	// (fewer when the endpoint says so).
	h2StreamsPerConn = 100
	// h2ConnWindow is an endpoint connection's receive window: more than
	// its streams can hold (25 MiB), with 7 MiB to spare.
	h2ConnWindow = h2StreamsPerConn*h2StreamWindow + 7<<20
)

// h2Pool holds the connections of one HTTP/2 Transport, by endpoint
// address (an x/net http2.ClientConnPool).
type h2Pool struct {
	s *Server
	t *http2.Transport

	mu    sync.Mutex
	conns map[string][]*http2.ClientConn
	addr  map[*http2.ClientConn]string
	// dialing is the connection being made to an address: requests that
	// find every connection full wait for it rather than make their own.
	dialing map[string]*h2Dial
}

type h2Dial struct {
	done     chan struct{}
	err      error
	canceled bool // the request that dialed went away
}

// newH2Pool returns a pool and its Transport. Connections are made by
// dialStd, with the dial settings of the request that needs one.
func (s *Server) newH2Pool() *h2Pool {
	// x/net's Transport reads the receive windows from the net/http
	// Transport it is configured for; this one carries no request.
	t1 := &http.Transport{
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true, // bodies are relayed as they come
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		HTTP2: &http.HTTP2Config{
			// A connection the endpoint stopped answering is found out
			// between requests, not by the next one's timeout.
			SendPingTimeout:               30 * time.Second,
			PingTimeout:                   15 * time.Second,
			MaxReceiveBufferPerStream:     h2StreamWindow,
			MaxReceiveBufferPerConnection: h2ConnWindow,
		},
	}
	t, err := http2.ConfigureTransports(t1)
	if err != nil { // only for a Transport set up for HTTP/2 before; t1 is new
		panic(fmt.Sprintf("configuring an HTTP/2 Transport: %v", err))
	}
	t.AllowHTTP = true // h2c and gRPC in the clear, with prior knowledge
	p := &h2Pool{s: s, t: t, conns: map[string][]*http2.ClientConn{}, addr: map[*http2.ClientConn]string{}, dialing: map[string]*h2Dial{}}
	t.ConnPool = p
	return p
}

// GetClientConn returns a connection to addr with a stream reserved for
// req: one with fewer than h2StreamsPerConn streams, or a new one.
func (p *h2Pool) GetClientConn(req *http.Request, addr string) (*http2.ClientConn, error) {
	ctx := req.Context()
	for {
		p.mu.Lock()
		if cc := p.reserve(addr); cc != nil {
			p.mu.Unlock()
			return cc, nil
		}
		if d := p.dialing[addr]; d != nil {
			p.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, &dialError{ctx.Err()}
			}
			if d.err != nil && !d.canceled {
				return nil, d.err
			}
			continue // take a stream on the new connection, or dial
		}
		d := &h2Dial{done: make(chan struct{})}
		p.dialing[addr] = d
		p.mu.Unlock()

		cc, err := p.dial(req, addr)
		p.mu.Lock()
		delete(p.dialing, addr)
		if err == nil {
			cc.ReserveNewRequest() // a new connection takes one
			p.conns[addr] = append(p.conns[addr], cc)
			p.addr[cc] = addr
		}
		d.err, d.canceled = err, ctx.Err() != nil
		p.mu.Unlock()
		close(d.done)
		return cc, err
	}
}

// reserve reserves a stream on a connection to addr that has room, or
// returns nil. p.mu is held: no other stream is reserved meanwhile, so
// that the count and the reservation agree.
func (p *h2Pool) reserve(addr string) *http2.ClientConn {
	for _, cc := range p.conns[addr] {
		st := cc.State()
		if st.StreamsActive+st.StreamsReserved+st.StreamsPending < h2StreamsPerConn && cc.ReserveNewRequest() {
			return cc
		}
	}
	return nil
}

// dial makes a new connection to addr for req.
func (p *h2Pool) dial(req *http.Request, addr string) (*http2.ClientConn, error) {
	nc, err := p.s.dialStd(req.Context(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol != http2.NextProtoTLS {
		_ = nc.Close()
		return nil, &dialError{fmt.Errorf("%s did not agree to HTTP/2 (ALPN h2)", addr)}
	}
	cc, err := p.t.NewClientConn(nc)
	if err != nil {
		_ = nc.Close()
		return nil, &dialError{fmt.Errorf("HTTP/2 with %s: %w", addr, err)}
	}
	return cc, nil
}

// MarkDead forgets a connection that closed: x/net calls it when the
// connection's reading ends.
func (p *h2Pool) MarkDead(cc *http2.ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forget(cc)
}

// forget removes cc from the pool. p.mu is held.
func (p *h2Pool) forget(cc *http2.ClientConn) {
	addr, ok := p.addr[cc]
	if !ok {
		return
	}
	delete(p.addr, cc)
	l := p.conns[addr]
	for i, c := range l {
		if c == cc {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(p.conns, addr)
	} else {
		p.conns[addr] = l
	}
}

// closeIdle closes the connections that carry no stream. None is
// reserved meanwhile: reservations are made with p.mu held.
func (p *h2Pool) closeIdle() {
	var idle []*http2.ClientConn
	p.mu.Lock()
	for cc := range p.addr {
		if st := cc.State(); st.StreamsActive+st.StreamsReserved+st.StreamsPending == 0 {
			idle = append(idle, cc)
			p.forget(cc)
		}
	}
	p.mu.Unlock()
	for _, cc := range idle {
		_ = cc.Close()
	}
}

var _ http2.ClientConnPool = (*h2Pool)(nil)
