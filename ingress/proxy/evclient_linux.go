package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"net"
	"os"
	"syscall"
	"time"
)

// The client side of the event loops (evloop_linux.go): reading requests,
// answering, handing a connection to the goroutine loop.

// evClient is a client connection served by a loop.
type evClient struct {
	l  *evloop
	fd int
	hc *h1conn
	// in holds what was read from the client; in[off:] is not served
	// yet. The request in flight points into in[:off].
	in   []byte
	off  int
	out  appendBuf // answers to the client; out[sent:] is not written yet
	sent int
	// The request in flight: the endpoint connection it is on, its
	// body (in in), the Upstream and the endpoints tried.
	up       *evUp
	upstream *Upstream
	addrs    []syscall.Sockaddr // upstream's addresses, parsed
	body     []byte
	first    int
	attempt  int
	tries    int
	rec      Record
	// headStart is when the first byte of the head being read came.
	headStart time.Time
	// deadline ends a wait for the client: its next request, the rest of
	// a head or a body.
	deadline time.Time
	// pending: the socket may hold input not read yet.
	pending bool
	eof     bool // the client sent its end
	serving bool // serve is on the stack
	closed  bool
}

// owed is how much of the answers the client has not been sent yet.
func (c *evClient) owed() int { return len(c.out) - c.sent }

// appendBuf is a buffer written to by appending.
type appendBuf []byte

func (b *appendBuf) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

func (c *evClient) event(ev uint32) {
	if ev&(syscall.EPOLLIN|evHangup) != 0 {
		c.pending = true // read once no request is in flight
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

// serve serves the requests the client sent, reading as needed, until one
// waits for an endpoint, the client has to read or write, or the
// connection ends.
func (c *evClient) serve() {
	if c.serving {
		return
	}
	c.serving = true
	defer func() { c.serving = false }()
	for !c.closed && c.up == nil && c.owed() == 0 {
		if !c.next() {
			if !c.pending || c.closed {
				return
			}
			if !c.read() {
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
	if c.off == len(c.in) {
		c.in, c.off = c.in[:0], 0
	}
	c.in, c.off = makeRoom(c.in, c.off, true, 1<<10)
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
		if len(c.in) == c.off {
			c.headStart = c.l.now
		}
		c.in = in
		// A short read emptied the socket: epoll says when more comes.
		c.pending = len(c.in) == cap(c.in)
	}
	return true
}

// next serves the next request if it is all in, and reports whether it
// did (or ended the connection trying).
func (c *evClient) next() bool {
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
		c.deadline = c.l.now.Add(s.opts.IdleTimeout)
		return false
	}
	skip, end, st := findHead(b, s.opts.MaxHeaderBytes)
	switch st {
	case headTooLarge:
		c.migrate()
		return true
	case headIncomplete:
		if c.eof {
			c.close()
			return true
		}
		c.deadline = c.headStart.Add(s.opts.ReadHeaderTimeout)
		return false
	}
	hc := c.hc
	if err := parseHead(b[skip:end], &hc.req); err != nil || hc.req.handoff || hc.req.length > maxEvBody {
		c.migrate() // refused, handed off or streamed there
		return true
	}
	bodyEnd := end + int(hc.req.length)
	if len(b) < bodyEnd {
		if c.eof {
			c.close()
			return true
		}
		c.deadline = c.l.now.Add(s.opts.IdleTimeout)
		return false
	}
	c.body = b[end:bodyEnd]
	start := c.off
	c.off += bodyEnd
	c.headStart = c.l.now
	c.deadline = time.Time{}
	hc.bodyLeft = 0
	hc.closeAfter = hc.req.close || s.closing.Load()
	hc.bw.Reset(&c.out)
	c.rec = hc.record(c.l.now)
	up, code := hc.choose(c.l.now, &c.rec)
	if up == nil {
		c.rec.Status = code
		c.finish()
		return true
	}
	if c.addrs = c.l.sockaddrs(up); c.addrs == nil {
		// An endpoint the loop cannot dial without a resolver: the
		// request goes to the goroutine loop, to be routed again there.
		c.off = start
		c.migrate()
		return true
	}
	c.upstream = up
	c.first = up.pick()
	c.tries = 1
	if c.replayable() {
		c.tries = min(len(up.Addrs), 3)
	}
	c.try(0, false)
	return true
}

func (c *evClient) replayable() bool {
	return c.hc.req.length == 0 && idempotent(c.hc.req.method)
}

// try sends the request to the attempt-th endpoint, on an idle connection
// unless fresh is set.
func (c *evClient) try(attempt int, fresh bool) {
	l, up := c.l, c.upstream
	var u *evUp
	for ; u == nil; attempt++ {
		i := (c.first + attempt) % len(up.Addrs)
		addr := up.Addrs[i]
		c.attempt = attempt
		c.rec.Endpoint, c.rec.Retries = addr, attempt
		if !fresh {
			u = l.takeIdle(addr, c.replayable())
		}
		if u == nil {
			var err error
			if u, err = l.dial(addr, c.addrs[i]); err != nil {
				if attempt+1 >= c.tries {
					c.fail(err)
					return
				}
			}
		}
	}
	u.c, u.last, c.up = c, c, u
	l.ubw.Reset(&u.out)
	c.hc.writeRequest(l.ubw)
	_, _ = l.ubw.Write(c.body)
	_ = l.ubw.Flush()
	if u.reused {
		u.deadline = l.now.Add(l.s.opts.ResponseHeaderTimeout)
	} else {
		u.deadline = l.now.Add(l.s.opts.DialTimeout)
	}
	u.flush()
}

// upFailed handles the failure err of the endpoint connection u before
// the response head was relayed: another try, or an answer of the proxy's
// own.
func (c *evClient) upFailed(u *evUp, err error) {
	reused, answered := u.reused, u.got
	c.l.closeUp(u)
	c.up = nil
	switch {
	case answered:
	case isConnectError(err): // timed out connecting too
		if c.attempt+1 < c.tries {
			c.try(c.attempt+1, false)
			return
		}
	case isTimeout(err):
	case reused && c.replayable():
		// The endpoint had closed the kept-alive connection: again, on a
		// new one.
		c.try(c.attempt, true)
		return
	}
	c.fail(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// fail answers a request no endpoint answered.
func (c *evClient) fail(err error) {
	c.up = nil
	c.hc.bw.Reset(&c.out)
	c.rec.Status = c.hc.failed(c.l.now, err, &c.rec)
	c.finish()
}

// gone: the client left while its request waited for the endpoint.
func (c *evClient) gone() {
	if u := c.up; u != nil {
		c.l.closeUp(u)
		c.up = nil
		if !u.headDone {
			c.rec.Status, c.rec.UpstreamError = 499, "canceled"
		}
	}
	c.hc.observe(&c.rec)
	c.close()
}

// finish ends a request whose answer is complete in out: it is recorded,
// written, and the next request served.
func (c *evClient) finish() {
	_ = c.hc.bw.Flush()
	c.hc.observe(&c.rec)
	if !c.flush() || c.owed() > 0 || c.serving {
		return
	}
	c.serve()
}

// flush writes what the client is owed. It reports false when the
// connection was closed: on an error, or after the last answer.
func (c *evClient) flush() bool {
	for c.owed() > 0 {
		n, full, err := writeSome(c.fd, c.out[c.sent:])
		switch {
		case full:
			return true
		case err != nil:
			c.close()
			return false
		}
		if c.sent += n; c.owed() > 0 {
			continue
		}
		// A large answer's buffer is not kept for an idle connection.
		if cap(c.out) > 64<<10 {
			c.out = nil
		}
		c.out, c.sent = c.out[:0], 0
	}
	if c.up != nil {
		if u := c.up; u.paused {
			u.paused = false
			u.receive()
		}
		return !c.closed
	}
	if c.hc.closeAfter {
		c.close()
		return false
	}
	return true
}

// close ends the client's connection, and the request in flight if any.
func (c *evClient) close() {
	if c.closed {
		return
	}
	c.closed = true
	l := c.l
	if c.up != nil {
		l.closeUp(c.up)
		c.up = nil
	}
	l.forget(c.fd)
	syscall.Close(c.fd)
	l.clients--
	c.dropBuffers()
	l.s.untrack(c.hc)
	c.hc.release()
}

func (c *evClient) dropBuffers() {
	c.dropInput()
	c.out, c.sent = nil, 0
}

// dropInput gives the input buffer back to the loop.
func (c *evClient) dropInput() {
	if c.in != nil && cap(c.in) <= 64<<10 && len(c.l.bufs) < 1024 {
		c.l.bufs = append(c.l.bufs, c.in[:0])
	}
	c.in, c.off = nil, 0
}

// migrate hands the client to the goroutine loop, with what the loop
// read but did not serve.
func (c *evClient) migrate() {
	nc, ok := c.release()
	if !ok {
		return
	}
	hc := c.hc
	var conn net.Conn = nc
	if rest := c.in[c.off:]; len(rest) > 0 {
		conn = &replayConn{Conn: nc, pending: append([]byte(nil), rest...)}
		// A request was begun: it is served even if shutdown began.
		hc.resumed = true
	}
	c.dropBuffers()
	c.resume(hc, conn, nil)
}

// migrateResponse hands the client and the endpoint connection u, whose
// response head is parsed, to the goroutine loop, which relays the answer
// and serves the client from then on.
func (c *evClient) migrateResponse(u *evUp) {
	l := c.l
	l.forget(u.fd)
	uc, err := fileConn(u.fd)
	if err != nil {
		c.up = nil
		c.fail(err)
		return
	}
	c.up = nil
	ucc := net.Conn(uc)
	if rest := u.in[u.off:]; len(rest) > 0 {
		ucc = &replayConn{Conn: uc, pending: append([]byte(nil), rest...)}
	}
	up := &upConn{Conn: ucc, bw: bufio.NewWriterSize(ucc, 8<<10), budget: math.MaxInt64, res: u.res}
	up.br = bufio.NewReaderSize(up, 16<<10)
	nc, ok := c.release()
	if !ok {
		up.Close()
		return
	}
	hc := c.hc
	var conn net.Conn = nc
	if rest := c.in[c.off:]; len(rest) > 0 {
		conn = &replayConn{Conn: nc, pending: append([]byte(nil), rest...)}
	}
	// The request's strings point into in: it goes along, not back to
	// the loop's buffers.
	c.in, c.out = nil, nil
	rec := c.rec
	hc.idle = l.s.pool.lookup(u.addr)
	c.resume(hc, conn, func() bool {
		rec.Status = hc.respond(rec.Start, up, &rec)
		hc.observe(&rec)
		return hc.finish()
	})
}

// release takes the client's socket out of the loop as a net.Conn.
func (c *evClient) release() (net.Conn, bool) {
	l := c.l
	c.closed = true
	l.forget(c.fd)
	l.clients--
	nc, err := fileConn(c.fd)
	if err != nil {
		l.s.log.Error("event loop cannot hand a connection over", "err", err)
		c.dropBuffers()
		l.s.untrack(c.hc)
		c.hc.release()
		return nil, false
	}
	return nc, true
}

// resume starts the goroutine loop on hc over conn.
func (c *evClient) resume(hc *h1conn, conn net.Conn, first func() bool) {
	hc.raw, hc.conn = conn, conn
	hc.br.Reset(hc)
	hc.bw.Reset(conn)
	if first != nil || hc.resumed {
		hc.state.Store(connActive) // a request is under way: shutdown waits for it
	} else {
		hc.state.Store(connIdle)
	}
	go c.l.f.serveConn(hc, first)
}

// fileConn makes a net.Conn of the descriptor fd, which it closes.
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	defer f.Close()
	return net.FileConn(f)
}

// makeRoom returns buf with at least min bytes free after its end: the
// bytes in use, buf[off:], moved to the front when move is set and that
// makes room, else a larger copy.
func makeRoom(buf []byte, off int, move bool, min int) ([]byte, int) {
	if cap(buf)-len(buf) >= min {
		return buf, off
	}
	if move && off > 0 {
		buf, off = buf[:copy(buf, buf[off:])], 0
	}
	if cap(buf)-len(buf) < min {
		b := make([]byte, len(buf), max(2*cap(buf), 4*min))
		copy(b, buf)
		buf = b
	}
	return buf, off
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

// findHead finds a complete head at the start of b, as readLines reads
// one: empty lines before it are skipped, and it ends with an empty line.
// It returns where the head starts and ends.
func findHead(b []byte, max int) (start, end int, st headState) {
	lines := 0
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			if len(b)-start > max {
				return 0, 0, headTooLarge
			}
			return 0, 0, headIncomplete
		}
		line := b[i : i+j+1]
		i += j + 1
		if i-start > max {
			return 0, 0, headTooLarge
		}
		if lines++; lines > maxFields+2 {
			return 0, 0, headTooLarge
		}
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			if i-len(line) == start { // empty lines before the head
				start = i
				continue
			}
			return start, i, headComplete
		}
	}
}

type headState int

const (
	headComplete headState = iota
	headIncomplete
	headTooLarge
)
