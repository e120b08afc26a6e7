package proxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// The client side of the event loops (evloop_linux.go): reading requests
// and their bodies, answering, handing a connection to the goroutine loop.

// evClient is a client connection served by a loop.
type evClient struct {
	l             *evloop
	fd            int
	client, local netip.AddrPort
	// in holds what was read from the client; in[off:] is not served
	// yet. The request in flight points into in[:headEnd].
	in      []byte
	off     int
	headEnd int
	out     []byte // answers to the client; out[sent:] is not written yet
	sent    int

	req  h1.Request
	xreq exchange.Request
	x    exchange.Exchange
	// The request in flight: its body's framing while it is read, the
	// body itself (held when it lay whole in in, else buf), the body
	// bytes left to read through after a local answer, the endpoint
	// connection it is on.
	body    h1.Body
	reading bool
	held    []byte
	buf     reqBody
	skip    int64
	up      *evUp
	busy    bool // between a request's head and the end of its answer

	// headStart is when the first byte of the head being read came.
	headStart time.Time
	// rdeadline ends a wait for the client: its next request, the rest
	// of a head or of a body. wdeadline ends a wait for it to take what it
	// is owed.
	rdeadline, wdeadline time.Time
	// pending: the socket may hold input not read yet.
	pending   bool
	hup       bool    // epoll told of the client's end
	eof       bool    // the client sent its end, and it was read
	serving   bool    // serve is on the stack
	reply     h1Reply // frames the answer being written
	lingering bool    // its answer is out: what it still sends is read and dropped
	closed    bool
}

// owed is how much of the answers the client has not been sent yet.
func (c *evClient) owed() int { return len(c.out) - c.sent }

func (c *evClient) event(ev uint32) {
	if ev&(syscall.EPOLLIN|evHangup) != 0 {
		c.pending = true // read once no request is in flight
		c.hup = c.hup || ev&evHangup != 0
		if c.up != nil && ev&evHangup != 0 {
			c.gone()
			return
		}
	}
	if ev&syscall.EPOLLOUT != 0 && c.owed() > 0 && !c.flush() {
		return
	}
	if c.up == nil {
		c.serve()
	}
}

// serve serves what the client sent, reading as needed, until a request
// waits for an endpoint, the client has to read or write, or the
// connection ends.
func (c *evClient) serve() {
	if c.serving {
		return
	}
	c.serving = true
	defer func() { c.serving = false }()
	for !c.closed && c.up == nil && c.owed() == 0 {
		if !c.step() {
			if !c.pending || c.closed || !c.read() {
				return
			}
		}
	}
}

// read reads what the client sent into in. It reports false when the
// connection was closed.
func (c *evClient) read() bool {
	if c.in == nil {
		c.in = c.l.buffer()
	}
	if c.off == len(c.in) && !c.busy {
		c.in, c.off = c.in[:0], 0
	}
	// While a request is in flight its head stays where it is.
	c.in, c.off = makeRoom(c.in, c.off, !c.busy, 1<<10)
	in, n, err := readMore(c.fd, c.in)
	switch {
	case err == syscall.EAGAIN:
		c.pending = false
	case err != nil:
		c.close()
		return false
	case n == 0:
		c.eof, c.pending = true, false
	default:
		if len(c.in) == c.off && !c.busy {
			c.headStart = c.l.now
		}
		c.in = in
		// A short read emptied the socket: epoll says when more comes,
		// but of the client's end it tells only once.
		c.pending = len(c.in) == cap(c.in) || c.hup
	}
	return true
}

// step takes the next step with what the client sent: a request head
// served, body bytes taken. It reports false when it needs more input.
func (c *evClient) step() bool {
	switch {
	case c.lingering:
		c.off = len(c.in)
		if c.eof {
			c.close()
			return true
		}
		return false
	case c.reading:
		return c.readBody()
	case c.skip > 0:
		k := int(min(c.skip, int64(len(c.in)-c.off)))
		c.off += k
		c.skip -= int64(k)
		if c.skip > 0 {
			if c.eof {
				c.close()
				return true
			}
			c.rdeadline = c.l.now.Add(c.x.Limits.ClientBodyTimeout)
			return false
		}
		return true
	}
	s := c.l.s
	b := c.in[c.off:]
	if len(b) == 0 {
		if c.eof {
			c.close()
			return true
		}
		if !c.pending && c.in != nil {
			c.dropInput() // idle clients keep no input buffer
		}
		c.rdeadline = c.l.now.Add(s.opts.IdleTimeout)
		return false
	}
	n, err := h1.ParseRequest(b, s.opts.MaxHeaderBytes, &c.req)
	if err != nil {
		var e *h1.Error
		errors.As(err, &e)
		s.policy.Refuse(e, c.client, c.l.now, &c.x)
		c.req = h1.Request{Method: c.req.Method, Fields: c.req.Fields[:0], Minor: 1}
		c.reply.start(&c.req, true)
		c.busy = true
		c.answer()
		return true
	}
	if n == 0 {
		if c.eof {
			c.close()
			return true
		}
		c.rdeadline = c.headStart.Add(s.opts.ReadHeaderTimeout)
		return false
	}
	c.xreq = h1Request(&c.req, false, "", c.client, c.local)
	x := &c.x
	s.policy.Decide(s.cfg.Load(), &c.xreq, c.headStart, x)
	if x.Outcome == exchange.Tunnel || x.Outcome == exchange.Authorize || x.Outcome == exchange.Forward && x.Target.Protocol != route.HTTP {
		// The goroutine loop joins the connections of a tunnel, and
		// blocks on Go's client for the endpoints it speaks to and the
		// authentication services.
		c.migrate()
		return true
	}
	c.busy = true
	c.off += n
	c.headEnd = c.off
	c.headStart = c.l.now
	c.rdeadline = time.Time{}
	c.reply.start(&c.req, s.closing.Load())
	if x.Outcome == exchange.Answer {
		if c.req.HasBody() && !x.Close {
			c.skip = c.req.Length
		}
		c.answer()
		return true
	}
	if x.Continue {
		c.out = append(c.out, "HTTP/1.1 100 Continue\r\n\r\n"...)
	}
	c.buf.start(s.opts.BodyBufferSize, s.opts.BodyTempDir)
	c.held = nil
	c.body.Reset(c.req.Length, c.req.Chunked)
	c.reading = c.req.HasBody()
	if !c.reading {
		c.try()
		return true
	}
	if !c.flush() {
		return true
	}
	return c.readBody()
}

// readBody takes what came of the request's body. It reports false when
// it needs more input; once the body is whole, the request goes upstream.
func (c *evClient) readBody() bool {
	x := &c.x
	if !c.req.Chunked && c.buf.size == 0 && c.req.Length <= int64(c.l.s.opts.BodyBufferSize) && int64(len(c.in)-c.off) >= c.req.Length {
		// The common small body, whole already: sent from where it lies.
		c.held = c.in[c.off : c.off+int(c.req.Length)]
		c.off += int(c.req.Length)
		c.reading = false
		x.Record.BytesIn = c.req.Length
		c.try()
		return true
	}
	max := x.Limits.MaxBodySize
	for {
		p, n, err := c.body.Next(c.in[c.off:], c.eof)
		c.off += n
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			x.ClientGone()
			c.observe()
			c.close()
			return true
		case err != nil:
			x.BodyFailed(exchange.BodyMalformed)
			c.answer()
			return true
		case p.Kind == h1.Data:
			if werr := c.buf.write(p.Data); werr != nil {
				c.l.s.log.Error("cannot buffer a request body", "err", werr)
				x.BodyFailed(exchange.BodyTooLarge)
				c.answer()
				return true
			}
			if max >= 0 && c.buf.size > max {
				x.BodyFailed(exchange.BodyTooLarge)
				c.answer()
				return true
			}
		case p.Kind == h1.End:
			c.reading = false
			x.Record.BytesIn = c.buf.size
			c.try()
			return true
		case p.Kind == h1.More:
			// What was taken is in buf: keep only the head (the request
			// points into it) and what is not taken yet.
			c.in = append(c.in[:c.headEnd], c.in[c.off:]...)
			c.off = c.headEnd
			if c.eof {
				continue // Next reports the body cut short
			}
			c.rdeadline = c.l.now.Add(x.Limits.ClientBodyTimeout)
			return false
		}
	}
}

// bodySize is the size of the request's body, held or buffered.
func (c *evClient) bodySize() int64 {
	if c.held != nil {
		return int64(len(c.held))
	}
	return c.buf.size
}

// try sends the request to the endpoint of the plan's current attempt,
// on an idle connection unless the plan wants a fresh one.
func (c *evClient) try() {
	l, x := c.l, &c.x
	for {
		addr, ap := x.Endpoint()
		var u *evUp
		if !x.FreshConnection() {
			u = l.takeIdle(addr)
		}
		if u == nil {
			var err error
			if u, err = l.dial(addr, ap); err != nil {
				if x.Retry(exchange.FailConnect) {
					continue
				}
				c.failed()
				return
			}
		}
		c.up, u.c, u.last = u, c, c
		u.send()
		return
	}
}

// upFailed handles a failure f of the endpoint connection u before the
// response head was relayed: another attempt, or an answer of the proxy's
// own.
func (c *evClient) upFailed(u *evUp, f exchange.Failure) {
	c.l.closeUp(u)
	c.up = nil
	if c.x.Retry(f) {
		c.try()
		return
	}
	c.failed()
}

// gone: the client left while its request waited for the endpoint.
func (c *evClient) gone() {
	if u := c.up; u != nil {
		c.l.closeUp(u)
		c.up = nil
	}
	c.x.ClientGone()
	c.observe()
	c.close()
}

// answer writes the exchange's answer of the proxy's own and ends the
// request.
func (c *evClient) answer() {
	c.up, c.reading = nil, false
	c.out = c.reply.answer(c.out, &c.x, c.l.s.closing.Load(), c.l.now)
	c.finish()
}

// finish ends a request whose answer is complete in out: it is recorded,
// written, and the next request served.
func (c *evClient) finish() {
	c.observe()
	c.busy, c.held = false, nil
	c.headStart = c.l.now // a next head already begun is timed from now
	c.buf.reset()
	if !c.flush() || c.owed() > 0 || c.serving {
		return
	}
	c.serve()
}

func (c *evClient) observe() {
	if obs := c.l.s.opts.Observe; obs != nil {
		obs(c.x.Finish(c.l.now))
	}
	c.x.End()
}

// flush writes what the client is owed. It reports false when the
// connection was closed: on an error, or after the last answer.
func (c *evClient) flush() bool {
	for c.owed() > 0 {
		n, full, err := writeSome(c.fd, c.out[c.sent:])
		switch {
		case full:
			if c.wdeadline.IsZero() {
				c.wdeadline = c.l.now.Add(c.x.Limits.ClientSendTimeout)
			}
			return true
		case err != nil:
			c.close()
			return false
		}
		c.wdeadline = time.Time{}
		if c.sent += n; c.owed() > 0 {
			continue
		}
		// A large answer's buffer is not kept for an idle connection.
		if cap(c.out) > 64<<10 {
			c.out = nil
		}
		c.out, c.sent = c.out[:0], 0
	}
	c.wdeadline = time.Time{}
	if u := c.up; u != nil {
		if u.paused {
			u.paused = false
			u.deadline = c.l.now.Add(c.x.Limits.ReadTimeout)
			u.receive()
		}
		return !c.closed
	}
	if c.reply.closeAfter && !c.busy {
		c.linger()
		return false
	}
	return true
}

// linger ends the connection after its last answer. Closing a socket with
// unread input makes the kernel reset the connection, and the client may
// lose the answer with it: so when the client may still be sending, the
// loop sends its end and reads what comes for a short while first.
func (c *evClient) linger() {
	if c.eof || c.off == len(c.in) && !c.pending && !c.x.Close {
		c.close()
		return
	}
	if c.lingering || syscall.Shutdown(c.fd, syscall.SHUT_WR) != nil {
		c.close()
		return
	}
	c.lingering = true
	c.rdeadline = c.l.now.Add(500 * time.Millisecond)
}

// scan applies the client's timeouts and shutdown.
func (c *evClient) scan(closing, force bool) {
	now := c.l.now
	switch {
	case force:
		c.close()
	case c.owed() > 0:
		if !c.wdeadline.IsZero() && now.After(c.wdeadline) {
			c.close() // it does not take its answer
		}
	case c.up != nil: // the endpoint's deadlines run
	case c.reading && now.After(c.rdeadline):
		c.x.BodyFailed(exchange.BodyTimeout)
		c.answer()
	case closing && !c.busy && c.off == len(c.in), !c.rdeadline.IsZero() && now.After(c.rdeadline):
		c.close()
	}
}

// close ends the client's connection, and the request in flight if any.
func (c *evClient) close() {
	if c.closed {
		return
	}
	c.closed = true
	c.x.End() // a request cut off here is over too
	l := c.l
	if c.up != nil {
		l.closeUp(c.up)
		c.up = nil
	}
	l.forget(c.fd)
	syscall.Close(c.fd)
	l.clients--
	l.s.inLoops.Add(-1)
	c.dropBuffers()
	l.s.unhold()
}

func (c *evClient) dropBuffers() {
	c.dropInput()
	c.out, c.sent = nil, 0
	c.buf.reset()
}

// dropInput gives the input buffer back to the loop.
func (c *evClient) dropInput() {
	if c.in != nil && cap(c.in) <= 64<<10 && len(c.l.bufs) < 1024 {
		c.l.bufs = append(c.l.bufs, c.in[:0])
	}
	c.in, c.off = nil, 0
}

// migrate hands the client to the goroutine loop with what the loop read
// but did not serve: the request it is to serve there first.
func (c *evClient) migrate() {
	l := c.l
	c.closed = true
	c.x.End() // the goroutine loop decides the request again
	l.forget(c.fd)
	l.clients--
	l.s.inLoops.Add(-1)
	nc, err := fileConn(c.fd)
	if err != nil {
		l.s.log.Error("event loop cannot hand a connection over", "err", err)
		c.dropBuffers()
		l.s.unhold()
		return
	}
	pending := append([]byte(nil), c.in[c.off:]...)
	c.dropBuffers()
	l.s.resume(nc, pending, l.f)
}

// fileConn makes a net.Conn of the descriptor fd, which it closes.
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	defer f.Close()
	return net.FileConn(f)
}

// writeSome writes what fd takes of p: n bytes, or none when its buffer
// is full.
func writeSome(fd int, p []byte) (n int, full bool, err error) {
	for {
		n, err := rawWrite(fd, p)
		switch err {
		case nil:
			return n, false, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, true, nil
		}
		return 0, false, err
	}
}

// readMore reads from fd into the free space of buf.
func readMore(fd int, buf []byte) ([]byte, int, error) {
	for {
		n, err := rawRead(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if n > 0 {
			buf = buf[:len(buf)+n]
		}
		return buf, n, err
	}
}
