package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// The goroutine loop: one goroutine per connection reads requests with
// the codec, has the core decide each, and carries the decision out with
// blocking I/O. It serves HTTP/1.x over TLS (and hands connections that
// choose h2 to the HTTP/2 adapter), the WebSocket tunnels an event loop
// hands over, and plain HTTP where there are no event loops.
//
// Unlike an event loop, it does not read from a client while its request
// is in flight: a client that leaves is noticed when its answer is
// written.

// h1conn is one client connection of the goroutine loop and what it keeps
// between requests: buffers, the request being served, deadlines.
type h1conn struct {
	s *Server
	f *front
	// raw is the accepted connection; conn is what requests are read
	// from: raw, or the TLS connection over it.
	raw           net.Conn
	conn          net.Conn
	tls           bool
	serverName    string
	peer          *exchange.Peer // the client's certificates, if it sent any
	client, local netip.AddrPort
	// in holds what was read from the client; in[off:] is not served
	// yet. The request being served points into in[:off].
	in  []byte
	off int
	out []byte // what the client is owed, not written yet
	eof bool   // the client sent its end

	req  h1.Request
	xreq exchange.Request
	x    exchange.Exchange
	body reqBody
	rd   lazyDeadline
	wd   lazyDeadline
	// reply frames the answer being written.
	reply h1Reply
	// resumed: an event loop handed the connection over with a request
	// begun, which is served whatever comes (shutdown); handed: the
	// request being read is that one, decided there already.
	resumed, handed bool
	// state is connIdle between requests, connActive while serving one
	// (or HTTP/2), connClosing when shutdown closed it.
	state atomic.Int32
}

const (
	connActive = iota
	connIdle
	connClosing
)

var connPool = sync.Pool{New: func() any { return &h1conn{in: make([]byte, 0, 4<<10)} }}

// track returns a new h1conn for c, registered for shutdown, or nil when
// the server is shutting down.
func (s *Server) track(c net.Conn, f *front) *h1conn {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if s.closing.Load() {
		return nil
	}
	s.connsWG.Add(1)
	return s.register(c, f)
}

// register makes an h1conn for c; the caller holds connsMu and has
// counted the connection in connsWG.
func (s *Server) register(c net.Conn, f *front) *h1conn {
	hc := connPool.Get().(*h1conn)
	hc.s, hc.f, hc.raw, hc.conn = s, f, c, c
	hc.client, hc.local = addrPort(c.RemoteAddr()), addrPort(c.LocalAddr())
	hc.state.Store(connIdle)
	s.conns[hc] = struct{}{}
	return hc
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// release forgets hc and returns it to the pool, buffers kept unless large.
func (hc *h1conn) release() {
	s := hc.s
	s.connsMu.Lock()
	delete(s.conns, hc)
	s.connsMu.Unlock()
	s.connsWG.Done()
	s.closed()
	hc.x.End() // a request cut off by a panic is over too
	hc.body.reset()
	in, out := hc.in[:0], hc.out[:0]
	if cap(in) > 64<<10 {
		in = make([]byte, 0, 4<<10)
	}
	if cap(out) > 64<<10 {
		out = nil
	}
	*hc = h1conn{in: in, out: out, req: h1.Request{Fields: hc.req.Fields[:0]}, x: hc.x}
	connPool.Put(hc)
}

// serve runs the loop on the connection until it ends. A panic ends the
// connection, not the process.
func (hc *h1conn) serve() {
	s := hc.s
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic serving a connection", "client", hc.client.String(), "panic", p, "stack", string(debug.Stack()))
		}
		_ = hc.flush()
		_ = hc.conn.Close()
		hc.release()
	}()
	if hc.f.tls != nil {
		if cfg := s.cfg.Load(); cfg.Routes.HasPassthrough() && hc.passthrough(cfg) {
			return
		}
		if !hc.handshake() {
			return
		}
	}
	for hc.waitRequest() && hc.serveRequest() {
	}
}

// handshake completes TLS within ReadHeaderTimeout. A connection that
// chooses HTTP/2 is served by the HTTP/2 adapter until it ends; handshake
// then reports false.
func (hc *h1conn) handshake() bool {
	s := hc.s
	tc := tls.Server(hc.conn, hc.f.tls)
	hc.conn, hc.tls = tc, true
	_ = tc.SetDeadline(time.Now().Add(s.opts.ReadHeaderTimeout))
	if err := tc.Handshake(); err != nil {
		s.tlsFailed.Add(1)
		s.log.Debug("TLS handshake failed", "client", hc.client.String(), "err", err)
		return false
	}
	_ = tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	hc.serverName, hc.peer = st.ServerName, peerOf(&st)
	if st.NegotiatedProtocol == "h2" {
		hc.state.Store(connActive) // the HTTP/2 server ends it on shutdown
		ctx := context.WithValue(context.Background(), h2connKey{}, &h2conn{serverName: st.ServerName, local: hc.local, peer: hc.peer})
		s.h2.ServeConn(tc, &http2.ServeConnOpts{Context: ctx, BaseConfig: s.h2base, Handler: http2Handler{s}})
		return false
	}
	return true
}

// waitRequest waits for the first byte of the next request, within the
// idle timeout. It reports false when the connection is to end: closed,
// idle too long, or the server shutting down.
func (hc *h1conn) waitRequest() bool {
	if hc.resumed { // an event loop read this request already
		hc.resumed, hc.handed = false, true
		hc.state.Store(connActive)
		return true
	}
	if hc.off == len(hc.in) {
		hc.in, hc.off = hc.in[:0], 0
		if cap(hc.in) > 64<<10 { // a large head's room is not kept
			hc.in = make([]byte, 0, 4<<10)
		}
	}
	if cap(hc.out) > 64<<10 && len(hc.out) == 0 {
		hc.out = nil
	}
	hc.state.Store(connIdle)
	if hc.s.closing.Load() {
		return false
	}
	if hc.off == len(hc.in) && hc.read(time.Now(), hc.s.opts.IdleTimeout, false) != nil {
		return false
	}
	return hc.state.CompareAndSwap(connIdle, connActive) // else shutdown closed it meanwhile
}

// read reads what the client sent into in, the read ending by start +
// timeout. What the client is owed is written first: answers go out in
// one write, pipelined ones together, but never wait behind a read. busy
// says a request is in flight, whose head in in must stay where it is.
func (hc *h1conn) read(start time.Time, timeout time.Duration, busy bool) error {
	if err := hc.flush(); err != nil {
		return err
	}
	if hc.eof {
		return io.EOF
	}
	hc.in, hc.off = makeRoom(hc.in, hc.off, !busy, 1<<10)
	hc.rd.within(start, timeout)
	if err := hc.rd.apply(hc.conn); err != nil {
		return err
	}
	n, err := hc.conn.Read(hc.in[len(hc.in):cap(hc.in)])
	hc.in = hc.in[:len(hc.in)+n]
	if err == io.EOF {
		hc.eof = true
		if n > 0 {
			err = nil
		}
	}
	return err
}

// flush writes what the client is owed, within ClientSendTimeout.
func (hc *h1conn) flush() error {
	if len(hc.out) == 0 {
		return nil
	}
	hc.wd.within(time.Now(), hc.x.Limits.ClientSendTimeout)
	if err := hc.wd.applyWrite(hc.conn); err != nil {
		return err
	}
	_, err := hc.conn.Write(hc.out)
	hc.out = hc.out[:0]
	return err
}

// serveRequest reads, decides and serves one request. It reports whether
// the connection goes on.
func (hc *h1conn) serveRequest() bool {
	s := hc.s
	start := time.Now()
	var n int
	for {
		var err error
		if n, err = h1.ParseRequest(hc.in[hc.off:], s.opts.MaxHeaderBytes, &hc.req); err != nil {
			var e *h1.Error
			if errors.As(err, &e) {
				hc.refuse(e, start)
			}
			return false
		}
		if n > 0 {
			break
		}
		if hc.read(start, s.opts.ReadHeaderTimeout, false) != nil {
			return false // closed, reset, timed out: nobody to tell
		}
	}
	hc.xreq = h1Request(&hc.req, hc.tls, hc.serverName, hc.client, hc.local)
	hc.xreq.Handed, hc.handed = hc.handed, false
	hc.xreq.Peer = hc.peer
	x := &hc.x
	s.policy.Decide(s.cfg.Load(), &hc.xreq, start, x)
	hc.off += n
	hc.reply.start(&hc.req, s.closing.Load())
	if x.Outcome == exchange.Authorize {
		s.authorize(context.Background(), x)
	}
	switch x.Outcome {
	case exchange.Answer:
		hc.answer()
		hc.observe()
		hc.skipBody()
	case exchange.Forward:
		hc.forward()
		hc.observe()
	case exchange.Tunnel:
		hc.tunnel()
		hc.observe()
	}
	if hc.reply.closeAfter {
		_ = hc.flush()
		return false
	}
	if len(hc.out) >= 32<<10 { // pipelined answers wait for no more than that
		return hc.flush() == nil
	}
	return true
}

// refuse answers a request head the codec refused and ends the
// connection, reading a little of what the client still sends first, so
// that the answer is not lost in a reset.
func (hc *h1conn) refuse(e *h1.Error, start time.Time) {
	hc.s.log.Debug("refused a request", "client", hc.client.String(), "status", e.Status, "reason", e.Reason)
	hc.s.policy.Refuse(e, hc.client, start, &hc.x)
	hc.req = h1.Request{Method: hc.req.Method, Fields: hc.req.Fields[:0], Minor: 1}
	hc.reply.start(&hc.req, true)
	hc.answer()
	hc.observe()
	if hc.flush() != nil {
		return
	}
	if cw, ok := hc.conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = hc.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.CopyN(io.Discard, hc.conn, exchange.MaxDiscard)
	}
}

// answer writes the proxy's own answer.
func (hc *h1conn) answer() {
	hc.out = hc.reply.answer(hc.out, &hc.x, hc.s.closing.Load(), time.Now())
}

// skipBody reads through the body of a request answered without it,
// when the core keeps the connection. The request is recorded already:
// nothing points into in, whose room is reused as the body goes by.
func (hc *h1conn) skipBody() {
	if hc.reply.closeAfter || !hc.req.HasBody() {
		return
	}
	for left := hc.req.Length; left > 0; {
		if hc.off == len(hc.in) && hc.read(time.Now(), hc.x.Limits.ClientBodyTimeout, false) != nil {
			hc.reply.closeAfter = true
			return
		}
		k := int(min(left, int64(len(hc.in)-hc.off)))
		hc.off += k
		left -= int64(k)
	}
}

// receiveBody reads the request's body whole into hc.body. It reports
// false when it did not arrive whole: x then holds the answer, or the
// client left.
func (hc *h1conn) receiveBody() bool {
	x := &hc.x
	hc.body.start(hc.s.opts.BodyBufferSize, hc.s.opts.BodyTempDir)
	if !hc.req.HasBody() {
		return true
	}
	if x.Continue {
		hc.out = append(hc.out, "HTTP/1.1 100 Continue\r\n\r\n"...)
		if hc.flush() != nil {
			x.ClientGone()
			return false
		}
	}
	var b h1.Body
	b.Reset(hc.req.Length, hc.req.Chunked)
	headEnd := hc.off
	max := x.Limits.MaxBodySize
	for {
		p, n, err := b.Next(hc.in[hc.off:], hc.eof)
		hc.off += n
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			x.ClientGone()
			return false
		case err != nil:
			x.BodyFailed(exchange.BodyMalformed)
			return false
		case p.Kind == h1.Data:
			if werr := hc.body.write(p.Data); werr != nil {
				hc.s.log.Error("cannot buffer a request body", "err", werr)
				x.BodyFailed(exchange.BodyTooLarge)
				return false
			}
			if max >= 0 && hc.body.size > max {
				x.BodyFailed(exchange.BodyTooLarge)
				return false
			}
		case p.Kind == h1.End:
			x.Record.BytesIn = hc.body.size
			return true
		case p.Kind == h1.More:
			// What was taken is in hc.body: keep only the head (the
			// request points into it) and what is not taken yet.
			hc.in = append(hc.in[:headEnd], hc.in[hc.off:]...)
			hc.off = headEnd
			if err := hc.read(time.Now(), x.Limits.ClientBodyTimeout, true); err != nil && err != io.EOF {
				if isTimeout(err) {
					x.BodyFailed(exchange.BodyTimeout)
				} else {
					x.ClientGone()
				}
				return false
			}
		}
	}
}

// forward receives the body, sends the request upstream as the plan says
// and relays the answer.
func (hc *h1conn) forward() {
	x := &hc.x
	if !hc.receiveBody() {
		hc.reply.closeAfter = true
		if x.Outcome == exchange.Answer {
			hc.answer()
		}
		return
	}
	var a upAnswer
	if x.Target.Protocol == route.HTTP {
		c := hc.s.roundTrip(context.Background(), x, &hc.body)
		hc.body.reset()
		if c != nil {
			a = c
		}
	} else {
		// Go's client may read the body until the answer is done.
		defer hc.body.reset()
		if r := hc.s.roundTripStd(context.Background(), x, bufferedBody{&hc.body}); r != nil {
			a = r
		}
	}
	a = hc.s.errorPage(context.Background(), x, a)
	if a == nil {
		hc.answer()
		return
	}
	hc.relay(a)
}

// relay writes the endpoint's answer a to the client.
func (hc *h1conn) relay(a upAnswer) {
	x := &hc.x
	hc.out = hc.reply.head(hc.out, x, a.response(), hc.s.closing.Load(), time.Now())
	err := func() error {
		for {
			p, err := a.next(x.Limits.ReadTimeout, hc.flush)
			if err != nil {
				return err
			}
			hc.out = hc.reply.piece(hc.out, x, p)
			switch {
			case p.Kind == h1.End:
				return nil
			case len(hc.out) >= 32<<10 && hc.flush() != nil:
				return errClientGone
			}
		}
	}()
	a.done(hc.s, err == nil, x.Record.Start)
	switch {
	case err == errClientGone:
		x.ClientGone()
		hc.reply.closeAfter = true
	case err != nil:
		// The status line is gone already: cut the connection so that
		// the client sees a broken answer, not a short one that looks
		// whole.
		x.BodyBroken()
		hc.s.log.Debug("upstream body error", "endpoint", x.Record.Endpoint, "err", err)
		hc.out = hc.out[:0]
		hc.reply.closeAfter = true
	}
}

// tunnel carries out a WebSocket upgrade: on the endpoint's 101 the two
// connections are joined until either side ends or both are silent for
// TunnelIdleTimeout; any other answer is relayed as usual.
func (hc *h1conn) tunnel() {
	x := &hc.x
	c := hc.s.roundTrip(context.Background(), x, nil)
	if c == nil {
		hc.answer()
		return
	}
	if c.res.Status != 101 {
		hc.relay(c)
		return
	}
	hc.reply.closeAfter = true
	hc.out = h1.AppendResponseHead(hc.out, 1, 101, "Switching Protocols", x.ResponseFields(&c.res, time.Now()), -1, false, "")
	if hc.flush() != nil {
		c.Close()
		return
	}
	hc.state.Store(connActive)
	join(hc.conn, c.Conn, hc.in[hc.off:], c.in[c.off:], x.Limits.TunnelIdleTimeout)
	hc.in, hc.off = hc.in[:0], 0
}

// observe gives the exchange's Record to Options.Observe.
func (hc *h1conn) observe() {
	if obs := hc.s.opts.Observe; obs != nil {
		obs(hc.x.Finish(time.Now()))
	}
	hc.x.End()
}
