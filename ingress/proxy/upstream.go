package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// The goroutine loop and the HTTP/2 adapter talk HTTP/1.1 to endpoints
// over blocking connections, on the goroutine of the request; the event
// loops keep their own, non-blocking ones (evupstream_linux.go). Both
// carry out the exchange's attempt plan and frame with the codec.

// maxResponseHeaderBytes bounds an endpoint's response head (nginx's
// proxy_buffer_size is 4 or 8 KiB; large cookies need more).
const maxResponseHeaderBytes = 64 << 10

// interimCount bounds the informational (1xx) answers an endpoint sends
// before its final one: a few, and no more bytes than one head.
type interimCount struct{ n, bytes int }

func (i *interimCount) more(n int) bool {
	i.n++
	i.bytes += n
	return i.n <= 8 && i.bytes <= maxResponseHeaderBytes
}

// pool keeps idle keep-alive connections to endpoints. Each endpoint has
// its own idle list and lock: requests to different endpoints never wait
// for each other.
type pool struct {
	maxIdle int
	idleFor time.Duration
	hosts   sync.Map // endpoint address → *idleConns

	// busy are the connections out of the pool, carrying a request: a
	// forced shutdown closes them, so that no request outlives its grace.
	busyMu sync.Mutex
	busy   map[*upConn]struct{}
}

// idleConns are the idle connections to one endpoint, most recent last.
type idleConns struct {
	addr  string
	mu    sync.Mutex
	conns []*upConn
	// gone is set when closeIdle removed this list from the pool: a
	// connection put here afterwards would never be found again.
	gone atomic.Bool
}

func newPool(opts Options) *pool {
	return &pool{maxIdle: opts.MaxIdleConnsPerHost, idleFor: 90 * time.Second, busy: map[*upConn]struct{}{}}
}

// lend marks c as carrying a request.
func (p *pool) lend(c *upConn) {
	p.busyMu.Lock()
	p.busy[c] = struct{}{}
	p.busyMu.Unlock()
}

// settle marks c as no longer carrying a request.
func (p *pool) settle(c *upConn) {
	p.busyMu.Lock()
	delete(p.busy, c)
	p.busyMu.Unlock()
}

// cut closes the sockets of the connections carrying requests; their
// owners see an error, and close them for good.
func (p *pool) cut() {
	p.busyMu.Lock()
	defer p.busyMu.Unlock()
	for c := range p.busy {
		_ = c.Conn.Close()
	}
}

// list returns the idle list of addr, made when missing.
func (p *pool) list(addr string) *idleConns {
	v, ok := p.hosts.Load(addr)
	if !ok {
		v, _ = p.hosts.LoadOrStore(addr, &idleConns{addr: addr})
	}
	return v.(*idleConns)
}

// get returns an idle connection from h, or nil. A connection that
// became readable while idle (the endpoint sent bytes nobody asked for,
// or its end) is closed, never reused: those bytes would be read as the
// next request's answer.
func (p *pool) get(h *idleConns, now time.Time) *upConn {
	for {
		h.mu.Lock()
		n := len(h.conns)
		if n == 0 {
			h.mu.Unlock()
			return nil
		}
		c := h.conns[n-1]
		h.conns[n-1] = nil
		h.conns = h.conns[:n-1]
		h.mu.Unlock()
		if now.Sub(c.lastUsed) < p.idleFor && c.quiet() {
			c.reused = true
			p.lend(c)
			return c
		}
		c.Close()
	}
}

// put returns a connection whose last response was read to its end, and
// nothing after it, to its list.
func (p *pool) put(c *upConn, now time.Time) {
	p.settle(c)
	c.lastUsed = now
	if cap(c.in) > 64<<10 { // a large head's buffer is not kept idle
		c.in, c.off = make([]byte, 0, 16<<10), 0
	}
	h := c.list
	for {
		h.mu.Lock()
		if h.gone.Load() { // closeIdle just dropped it: take the new list
			h.mu.Unlock()
			h = p.list(h.addr)
			c.list = h
			continue
		}
		if len(h.conns) < p.maxIdle {
			h.conns = append(h.conns, c)
			c = nil
		}
		h.mu.Unlock()
		if c != nil {
			c.Close()
		}
		return
	}
}

// closeIdle closes the connections idle for longer than the pool keeps
// them, or all of them; connections to endpoints that went away end here,
// and so do the lists of endpoints left with none.
func (p *pool) closeIdle(all bool) {
	p.hosts.Range(func(addr, v any) bool {
		h := v.(*idleConns)
		h.mu.Lock()
		defer h.mu.Unlock()
		kept := h.conns[:0]
		for _, c := range h.conns {
			if all || time.Since(c.lastUsed) >= p.idleFor {
				c.Close()
			} else {
				kept = append(kept, c)
			}
		}
		clear(h.conns[len(kept):])
		h.conns = kept
		if len(kept) == 0 {
			h.gone.Store(true)
			p.hosts.Delete(addr)
		}
		return true
	})
}

// upConn is a blocking connection to an endpoint, carrying one request at
// a time.
type upConn struct {
	net.Conn
	s    *Server
	list *idleConns
	// in holds what was read from the endpoint; in[off:] is not taken
	// yet. The response head points into it.
	in  []byte
	off int
	out []byte // the request head and small body, as written
	res h1.Response
	// body reads the response body's framing.
	body     h1.Body
	rd, wd   lazyDeadline
	fd       int // the socket's descriptor, for quiet; -1 when unknown
	lastUsed time.Time
	reused   bool // it carried a request before this one
	got      bool // some of a response came
	eof      bool // the endpoint sent its end
	closed   atomic.Bool
}

// dial connects to addr within timeout. The connection counts against
// MaxConnections, as nginx's worker_connections counts both sides: a
// client cannot make the proxy open more sockets than that by spreading
// requests over HTTP/2 streams.
func (s *Server) dial(addr string, timeout time.Duration, list *idleConns) (*upConn, error) {
	if !s.reserve("endpoint") {
		return nil, errTooManyConnections
	}
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		s.closed()
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetKeepAlivePeriod(30 * time.Second)
	}
	c := newUpConn(nc, list)
	c.s = s
	s.pool.lend(c)
	return c, nil
}

var errTooManyConnections = errors.New("the limit of open connections is reached")

// Close closes the connection once, and counts it out.
func (c *upConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if c.s != nil {
		c.s.pool.settle(c)
		c.s.closed()
	}
	return c.Conn.Close()
}

func newUpConn(c net.Conn, list *idleConns) *upConn {
	u := &upConn{Conn: c, list: list, in: make([]byte, 0, 16<<10), fd: -1}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { u.fd = int(fd) })
		}
	}
	return u
}

// quiet reports whether an idle connection is still open and has sent
// nothing: one system call, spent once per reuse. The descriptor is the
// connection's own until it is closed, and a pooled connection is closed
// only by whoever took it off its list.
func (c *upConn) quiet() bool {
	if c.off != len(c.in) {
		return false
	}
	if c.fd < 0 {
		return true // not a socket: a test's
	}
	return peekQuiet(c.fd)
}

// peekQuiet reports whether the socket fd has nothing to read, neither
// data nor its end. MSG_DONTWAIT never blocks, so the scheduler is not
// told of the call.
func peekQuiet(fd int) bool {
	var b [1]byte
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno == syscall.EAGAIN
}

// read reads what the endpoint sent into in, within timeout of now. The
// response head is written to the client before the body is read, so
// what was taken of in may be overwritten.
func (c *upConn) read(timeout time.Duration) error {
	if c.off == len(c.in) {
		c.in, c.off = c.in[:0], 0
	}
	c.in, c.off = makeRoom(c.in, c.off, true, 4<<10)
	c.rd.within(time.Now(), timeout)
	if err := c.rd.apply(c.Conn); err != nil {
		return err
	}
	n, err := c.Conn.Read(c.in[len(c.in):cap(c.in)])
	c.in = c.in[:len(c.in)+n]
	if n > 0 {
		c.got = true
	}
	if err == io.EOF {
		c.eof = true
	}
	return err
}

// roundTrip carries out x's plan: it sends the request and its body to the
// endpoints the plan names, attempt after attempt as the plan says, and
// returns the connection whose final response head it read (c.res), the
// body's framing set up in c.body. It returns nil when no endpoint
// answered: x then holds the client's answer. When ctx ends (an HTTP/2
// stream reset: the client left) the attempt ends at once, and nothing is
// answered.
func (s *Server) roundTrip(ctx context.Context, x *exchange.Exchange, body *reqBody) *upConn {
	start := time.Now()
	defer func() { x.Record.UpstreamTime = time.Since(start) }()
	for {
		c, f := s.try(ctx, x, body)
		if f == 0 {
			return c
		}
		if ctx.Err() != nil {
			x.ClientGone()
			return nil
		}
		if !x.Retry(f) {
			return nil
		}
	}
}

// try makes one attempt of x's plan.
func (s *Server) try(ctx context.Context, x *exchange.Exchange, body *reqBody) (*upConn, exchange.Failure) {
	addr, _ := x.Endpoint()
	lim := &x.Limits
	list := s.pool.list(addr)
	var c *upConn
	if !x.FreshConnection() {
		c = s.pool.get(list, time.Now())
	}
	if c == nil {
		var err error
		if c, err = s.dial(addr, lim.ConnectTimeout, list); err != nil {
			return nil, exchange.FailConnect
		}
	}
	if ctx.Done() != nil {
		// A client that leaves ends the wait: the socket's deadlines fire.
		stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	c.got, c.eof = false, false
	length := int64(-1)
	if x.Out.Body {
		length = 0
		if body != nil {
			length = body.size
		}
	}
	c.out = h1.AppendRequestHead(c.out[:0], x.Out.Method, x.Out.Target, x.Out.Host, x.Out.Fields, length)
	if err := c.send(lim.SendTimeout, body); err != nil {
		// The endpoint may have answered before it took the whole body
		// (a 413, a 401) and closed: that answer is the client's. It
		// reads no more of this connection.
		if length > 0 && !isTimeout(err) && c.receive(x, lim.ReadTimeout) == 0 {
			c.res.Close = true
			return c, 0
		}
		c.Close()
		return nil, failure(c, err)
	}
	if f := c.receive(x, lim.ReadTimeout); f != 0 {
		c.Close()
		return nil, f
	}
	return c, 0
}

// failure classes an error reading from or writing to c before the
// response head came: a timeout; a kept-alive connection the endpoint had
// closed before it answered anything; or a broken connection.
func failure(c *upConn, err error) exchange.Failure {
	switch {
	case isTimeout(err):
		return exchange.FailTimeout
	case c.reused && !c.got:
		return exchange.FailStale
	}
	return exchange.FailReset
}

// send writes the request head and body, each write within timeout. A
// small body goes in the head's write.
func (c *upConn) send(timeout time.Duration, body *reqBody) error {
	var mem []byte
	if body != nil {
		mem = body.mem
	}
	if len(mem) <= 16<<10 { // one write
		c.out = append(c.out, mem...)
		mem = nil
	}
	if err := c.write(c.out, timeout); err != nil {
		return err
	}
	if err := c.write(mem, timeout); err != nil {
		return err
	}
	if body == nil || body.file == nil {
		return nil
	}
	buf := make([]byte, 32<<10)
	for off := int64(0); off < body.size-int64(len(body.mem)); {
		n, err := body.file.ReadAt(buf, off)
		if n > 0 {
			if err := c.write(buf[:n], timeout); err != nil {
				return err
			}
			off += int64(n)
		}
		if err != nil && err != io.EOF {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF // the file is shorter than the body
		}
	}
	return nil
}

func (c *upConn) write(b []byte, timeout time.Duration) error {
	if len(b) == 0 {
		return nil
	}
	c.wd.within(time.Now(), timeout)
	if err := c.wd.applyWrite(c.Conn); err != nil {
		return err
	}
	_, err := c.Conn.Write(b)
	return err
}

// receive reads the final response head, skipping 1xx answers but 101,
// and checks it against the plan.
func (c *upConn) receive(x *exchange.Exchange, timeout time.Duration) exchange.Failure {
	var interim interimCount
	for {
		n, err := h1.ParseResponse(c.in[c.off:], maxResponseHeaderBytes, &c.res)
		switch {
		case err != nil:
			return exchange.FailInvalid
		case n > 0:
			c.off += n
			if c.res.Status < 200 && c.res.Status != 101 {
				// 103 Early Hints and the like: informational only, but
				// not without end.
				if !interim.more(n) {
					return exchange.FailInvalid
				}
				continue
			}
			if f := x.Judge(c.res.Status, c.res.Upgrade); f != 0 {
				return f
			}
			c.body.ResetResponse(x.Method(), &c.res)
			return 0
		case c.eof:
			return failure(c, io.EOF)
		}
		if err := c.read(timeout); err != nil && err != io.EOF {
			return failure(c, err)
		}
	}
}

// next returns the next piece of the response body, reading from the
// endpoint as needed, each read within timeout. Before a read that may
// wait, flush gives the client what it is owed, so that a stream reaches
// it as it comes. A piece's data is valid until the next call.
func (c *upConn) next(timeout time.Duration, flush func() error) (h1.Piece, error) {
	for {
		p, n, err := c.body.Next(c.in[c.off:], c.eof)
		c.off += n
		if err != nil || p.Kind != h1.More {
			return p, err
		}
		if err := flush(); err != nil {
			return p, errClientGone
		}
		if err := c.read(timeout); err != nil && err != io.EOF {
			return p, err
		}
	}
}

// upAnswer is an endpoint's answer being relayed: its head, then its body
// piece by piece. An upConn is one, and so is a stdReply.
type upAnswer interface {
	response() *h1.Response
	// next returns the next piece of the body, reading from the endpoint
	// as needed, each read within timeout; before a read that may wait,
	// flush gives the client what it is owed.
	next(timeout time.Duration, flush func() error) (h1.Piece, error)
	// cutOn makes the endpoint's reads end when ctx ends (the client
	// left); the func it returns undoes that, and reports false when ctx
	// ended already.
	cutOn(ctx context.Context) (stop func() bool)
	// done ends the answer; whole: it was relayed to its end.
	done(s *Server, whole bool, start time.Time)
}

func (c *upConn) response() *h1.Response { return &c.res }

func (c *upConn) cutOn(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
}

// done gives c back to the pool when it can carry another request, and
// closes it otherwise.
func (c *upConn) done(s *Server, whole bool, start time.Time) {
	if whole && c.reusable() {
		s.pool.put(c, start)
		return
	}
	c.Close()
}

// reusable reports whether c may carry another request: its response was
// read to its end, and nothing came after it.
func (c *upConn) reusable() bool {
	return c.body.Done() && !c.res.Close && !c.eof && c.off == len(c.in)
}

// errClientGone: writing to the client failed; there is nobody to answer.
var errClientGone = errors.New("the client went away")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// lazyDeadline is a connection's read deadline, set on the connection
// only when a read goes to the network, and moved only when it is off by
// more than a tenth of its timeout: arming the runtime timer on every
// request costs more than parsing it. Timeouts are so honoured to within
// a tenth, early.
type lazyDeadline struct{ want, set time.Time }

// within asks for reads to end within d of now.
func (l *lazyDeadline) within(now time.Time, d time.Duration) {
	by := now.Add(d)
	if l.set.IsZero() || l.set.After(by) || by.Sub(l.set) > d/10 {
		l.want = by
	} else {
		l.want = l.set
	}
}

// apply sets the wanted read deadline on c if it is not set already.
func (l *lazyDeadline) apply(c net.Conn) error { return l.applyWith(c.SetReadDeadline) }

// applyWrite is apply for a write deadline.
func (l *lazyDeadline) applyWrite(c net.Conn) error { return l.applyWith(c.SetWriteDeadline) }

func (l *lazyDeadline) applyWith(set func(time.Time) error) error {
	if l.want.Equal(l.set) {
		return nil
	}
	if err := set(l.want); err != nil {
		return err
	}
	l.set = l.want
	return nil
}
