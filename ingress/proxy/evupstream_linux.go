package proxy

import (
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// The endpoint side of the event loops (evloop_linux.go): connecting,
// sending a request, relaying the answer, the idle lists.

// evUp is a connection to an endpoint, owned by a loop.
type evUp struct {
	l    *evloop
	fd   int
	addr string
	c    *evClient // the client whose request it carries; nil when idle
	last *evClient // the client of the last request it carried
	// in holds what was read from the endpoint; in[off:] is not taken
	// yet. The response head points into it until it is relayed.
	in  []byte
	off int
	out []byte // the request, or what is left of it to write
	// bodyOff is how much of a buffered body (the client's buf) went
	// into out already.
	bodyOff int64
	res     h1.Response
	interim interimCount // informational answers before the final one
	body    h1.Body      // the response body's framing
	// deadline ends the current wait: for the connection, for the
	// endpoint to take the request, or to send more of its answer.
	deadline  time.Time
	lastUsed  time.Time
	started   time.Time // when the request was first sent
	reused    bool      // it carried a request before this one
	connected bool      // some of the request was written
	sent      bool      // the whole request was written
	got       bool      // some of a response came
	headDone  bool      // the response head went to the client
	paused    bool      // the client's backlog is full
	pending   bool      // the socket may hold input not read yet
	hup       bool      // epoll told of the endpoint's end
	eof       bool
}

func (u *evUp) event(ev uint32) {
	if u.c == nil { // idle: anything but silence ends it
		if ev&(syscall.EPOLLIN|evHangup) != 0 {
			u.l.dropIdle(u)
		}
		return
	}
	if ev&syscall.EPOLLOUT != 0 && !u.sent && !u.flush() {
		return
	}
	if ev&(syscall.EPOLLIN|evHangup) != 0 {
		u.pending = true
		u.hup = u.hup || ev&evHangup != 0
		if !u.paused {
			u.receive()
		}
	}
}

// send starts writing the client's request: the head as the plan has it
// and its body.
func (u *evUp) send() {
	c := u.c
	x := &c.x
	length := int64(-1)
	if x.Out.Body {
		length = c.bodySize()
	}
	u.out = h1.AppendRequestHead(u.out[:0], x.Out.Method, x.Out.Target, x.Out.Host, x.Out.Fields, length)
	switch {
	case !x.Out.Body: // an error page's request goes without the client's body
		u.bodyOff = c.buf.size
	case c.held != nil:
		u.out = append(u.out, c.held...)
		u.bodyOff = int64(len(c.held))
	default:
		u.bodyOff = 0
		u.fill()
	}
	u.started = u.l.now
	if u.reused {
		u.connected = true
		u.deadline = u.l.now.Add(x.Limits.SendTimeout)
	} else {
		u.deadline = u.l.now.Add(x.Limits.ConnectTimeout)
	}
	u.flush()
}

// fill adds the next part of a buffered body to out.
func (u *evUp) fill() {
	b := &u.c.buf
	if u.bodyOff >= b.size || len(u.out) >= 64<<10 {
		return
	}
	n := int(min(b.size-u.bodyOff, 64<<10))
	start := len(u.out)
	u.out = append(u.out, make([]byte, n)...)
	m, err := b.readAt(u.out[start:], u.bodyOff)
	u.out = u.out[:start+m]
	u.bodyOff += int64(m)
	if err != nil && m < n {
		u.l.s.log.Error("cannot read a buffered request body", "err", err)
		u.bodyOff = b.size // what is sent ends short; the endpoint answers it or not
	}
}

// flush writes the request. It reports false when that failed, the
// request then being dealt with.
func (u *evUp) flush() bool {
	l := u.l
	for len(u.out) > 0 {
		n, full, err := writeSome(u.fd, u.out)
		switch {
		case full:
			return true
		case err != nil:
			if !u.connected {
				if serr := sockError(u.fd); serr != nil {
					err = serr
				}
				u.c.upFailed(u, exchange.FailConnect)
				return false
			}
			// The endpoint closed: on a kept-alive connection, before it
			// read the request; or it answered before it took the whole
			// body (a 413, say). Reading tells which: what it said is
			// the client's answer, if it said it all.
			u.out = u.out[:0]
			u.deadline = l.now.Add(u.c.x.Limits.ReadTimeout)
			u.pending = true
			u.receive()
			return false
		}
		u.connected = true
		u.deadline = l.now.Add(u.c.x.Limits.SendTimeout)
		u.out = append(u.out[:0], u.out[n:]...)
		u.fill()
	}
	if !u.sent {
		u.sent = true
		u.deadline = l.now.Add(u.c.x.Limits.ReadTimeout)
	}
	return true
}

// up reports whether u still carries its client's request.
func (u *evUp) up() bool { return u.c != nil && u.c.up == u }

// receive reads the response and relays it as far as it came.
func (u *evUp) receive() {
	for u.pending && u.up() && !u.paused {
		if !u.read() {
			return
		}
		u.relay()
	}
}

// read reads from the endpoint. It reports false when the request ended
// with an error.
func (u *evUp) read() bool {
	if u.off == len(u.in) {
		u.in, u.off = u.in[:0], 0
	}
	// The head's bytes stay where they are until it is relayed: the
	// parsed head points into them.
	u.in, u.off = makeRoom(u.in, u.off, u.headDone, 4<<10)
	in, n, err := readMore(u.fd, u.in)
	switch {
	case err == syscall.EAGAIN:
		u.pending = false
		return true
	case err != nil:
		u.broken(false)
		return false
	case n == 0:
		u.pending, u.eof = false, true
		return true
	}
	u.got = true
	u.in = in
	// A short read emptied the socket, unless the endpoint's end came
	// with its last bytes: edge-triggered epoll tells of it only once.
	u.pending = len(u.in) == cap(u.in) || u.hup
	if !u.paused {
		u.deadline = u.l.now.Add(u.c.x.Limits.ReadTimeout)
	}
	return true
}

// broken handles an endpoint that broke the connection or went silent:
// before the response head went out, the attempt failed; after, the
// client's connection is cut, so that it sees a broken answer rather than
// a short one that looks whole.
func (u *evUp) broken(timeout bool) {
	c := u.c
	if !u.headDone {
		f := exchange.FailReset
		switch {
		case !u.connected:
			f = exchange.FailConnect
		case timeout:
			f = exchange.FailTimeout
		case u.reused && !u.got:
			f = exchange.FailStale
		}
		c.upFailed(u, f)
		return
	}
	c.x.BodyBroken()
	c.l.s.log.Debug("upstream body error", "endpoint", c.x.Record.Endpoint, "timeout", timeout)
	c.observe()
	c.close()
}

// relay takes the response head if it is in, then relays what came of
// the body.
func (u *evUp) relay() {
	c := u.c
	x := &c.x
	for !u.headDone {
		n, err := h1.ParseResponse(u.in[u.off:], maxResponseHeaderBytes, &u.res)
		switch {
		case err != nil:
			c.upFailed(u, exchange.FailInvalid)
			return
		case n == 0:
			if u.eof {
				u.broken(false)
			}
			return
		}
		u.off += n
		if u.res.Status < 200 && u.res.Status != 101 {
			// 1xx: the final answer follows, but not after any number.
			if !u.interim.more(n) {
				c.upFailed(u, exchange.FailInvalid)
				return
			}
			continue
		}
		if f := x.Judge(u.res.Status, u.res.Upgrade); f != 0 {
			c.upFailed(u, f)
			return
		}
		if u.intercepted() {
			return
		}
		if u.connected && !u.sent { // an early answer: neither side can go on
			u.res.Close = true
			x.Close = true
		}
		u.headDone = true
		x.Record.UpstreamTime = u.l.now.Sub(u.started)
		u.head()
	}
	for {
		p, n, err := u.body.Next(u.in[u.off:], u.eof)
		u.off += n
		if err != nil {
			u.broken(false)
			return
		}
		if p.Kind == h1.More {
			break
		}
		c.out = c.reply.piece(c.out, x, p)
		if p.Kind == h1.End {
			u.done()
			return
		}
	}
	if !c.flush() {
		return
	}
	if c.owed() > maxEvBacklog {
		u.paused = true
		u.deadline = time.Time{} // the client's send timeout runs
	}
}

// head writes the response head to the client and sets up the relay of
// its body.
func (u *evUp) head() {
	c := u.c
	res := &u.res
	c.out = c.reply.head(c.out, &c.x, res, u.l.s.closing.Load(), u.l.now)
	u.body.ResetResponse(c.req.Method, res)
}

// done: the response is relayed whole. The connection goes back to the
// idle list when it can carry another request.
func (u *evUp) done() {
	c := u.c
	c.up, u.c = nil, nil
	// Bytes past the end of the response (a body to HEAD, say) would be
	// read as the next request's answer: such a connection is not reused.
	if u.res.Close || u.off != len(u.in) || u.eof || !u.sent {
		u.l.closeUp(u)
	} else {
		u.l.putIdle(u)
	}
	c.finish()
}

// scan applies the connection's timeouts, or, idle, its keep-alive.
func (u *evUp) scan(closing bool) {
	l := u.l
	switch {
	case u.c != nil && !u.deadline.IsZero() && l.now.After(u.deadline):
		if !u.connected {
			u.c.upFailed(u, exchange.FailConnect)
			return
		}
		u.broken(true)
	case u.c == nil && (closing || l.now.Sub(u.lastUsed) >= l.s.pool.idleFor):
		l.dropIdle(u)
	}
}

// dial starts connecting to addr, ap parsed.
func (l *evloop) dial(addr string, ap netip.AddrPort) (*evUp, error) {
	if !ap.IsValid() {
		return nil, os.ErrInvalid // not an IP address and port
	}
	// Endpoint sockets count against MaxConnections (see Server.dial).
	if !l.s.reserve("endpoint") {
		return nil, errTooManyConnections
	}
	u, err := l.connect(addr, ap)
	if err != nil {
		l.s.closed()
	}
	return u, err
}

// connect opens a socket to ap and starts connecting.
func (l *evloop) connect(addr string, ap netip.AddrPort) (*evUp, error) {
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if a := ap.Addr(); a.Is4() {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	// As net.Dialer sets them: no Nagle, keep-alive probes after 30 s.
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 30)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 30)
	if err := syscall.Connect(fd, sa); err != nil && err != syscall.EINPROGRESS {
		syscall.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	u := &evUp{l: l, fd: fd, addr: addr, in: make([]byte, 0, 16<<10)}
	if err := l.register(fd, u); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return u, nil
}

// sockError is the pending error of the socket fd, if any.
func sockError(fd int) error {
	n, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if n != 0 {
		return os.NewSyscallError("connect", syscall.Errno(n))
	}
	return nil
}

// takeIdle returns an idle connection to addr, or nil. One that became
// readable while idle is closed, never reused. epoll tells the loop of
// most such connections (see evUp.event), but its readiness may still wait
// among the events of the batch at hand: so the kernel is asked, with one
// peek.
func (l *evloop) takeIdle(addr string) *evUp {
	h := l.idle[addr]
	if h == nil {
		return nil
	}
	for n := len(h.conns); n > 0; n = len(h.conns) {
		u := h.conns[n-1]
		h.conns[n-1] = nil
		h.conns = h.conns[:n-1]
		if l.fds[u.fd] != u { // closed meanwhile
			continue
		}
		if l.now.Sub(u.lastUsed) < l.s.pool.idleFor && u.quiet() {
			u.reset()
			return u
		}
		l.closeUp(u)
	}
	return nil
}

// quiet reports whether the endpoint has sent nothing, not even its end.
func (u *evUp) quiet() bool { return peekQuiet(u.fd) }

func (u *evUp) reset() {
	in := u.in[:0]
	if cap(in) > 64<<10 { // a large head's room is not kept
		in = make([]byte, 0, 16<<10)
	}
	*u = evUp{l: u.l, fd: u.fd, addr: u.addr, in: in, out: u.out[:0], res: h1.Response{Fields: u.res.Fields[:0]}, lastUsed: u.lastUsed, reused: true}
}

func (l *evloop) putIdle(u *evUp) {
	h := l.idle[u.addr]
	if h == nil {
		h = &evIdle{}
		l.idle[u.addr] = h
	}
	if len(h.conns) >= l.s.pool.maxIdle || l.s.closing.Load() {
		l.closeUp(u)
		return
	}
	u.lastUsed = l.now
	u.deadline = time.Time{}
	h.conns = append(h.conns, u)
}

// dropIdle closes an idle connection and takes it off its list.
func (l *evloop) dropIdle(u *evUp) {
	if h := l.idle[u.addr]; h != nil {
		for i, x := range h.conns {
			if x == u {
				h.conns = append(h.conns[:i], h.conns[i+1:]...)
				break
			}
		}
		if len(h.conns) == 0 {
			delete(l.idle, u.addr)
		}
	}
	l.closeUp(u)
}

func (l *evloop) closeUp(u *evUp) {
	if l.fds[u.fd] == u {
		l.forget(u.fd)
		syscall.Close(u.fd)
		l.s.closed()
	}
	u.c = nil
}
