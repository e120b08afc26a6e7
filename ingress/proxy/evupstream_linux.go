package proxy

import (
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
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
	in   []byte
	off  int
	out  appendBuf
	res  resHead
	// bodyLeft is what is left to relay of the response's body.
	bodyLeft int64
	deadline time.Time
	lastUsed time.Time
	reused   bool // it carried a request before this one
	wrote    bool // some of the request was written
	sent     bool // the whole request was written
	got      bool // some of a response came
	headDone bool // the response head went to the client
	paused   bool // the client's backlog is full
	pending  bool // the socket may hold input not read yet
	eof      bool
}

func (u *evUp) event(ev uint32) {
	if u.c == nil { // idle: anything but silence ends it
		if ev&(syscall.EPOLLIN|evHangup) != 0 {
			u.l.dropIdle(u)
		}
		return
	}
	if ev&syscall.EPOLLOUT != 0 && len(u.out) > 0 {
		if !u.flush() {
			return
		}
	}
	if ev&(syscall.EPOLLIN|evHangup) != 0 {
		u.pending = true
		if !u.paused {
			u.receive()
		}
	}
}

// flush writes the request. It reports false when that failed, the
// request then being dealt with.
func (u *evUp) flush() bool {
	for len(u.out) > 0 {
		n, full, err := writeSome(u.fd, u.out)
		switch {
		case full:
			return true
		case err != nil:
			if !u.wrote && !u.reused {
				if serr := sockError(u.fd); serr != nil {
					err = serr
				}
				u.c.upFailed(u, dialError(err))
				return false
			}
			// The endpoint closed: on a kept-alive connection, before it
			// read the request; or it answered before it took the whole
			// body (a 413, say). Reading tells which: what it said is
			// the client's answer, if it said it all.
			u.out, u.wrote = u.out[:0], true
			u.deadline = u.l.now.Add(u.l.s.opts.ResponseHeaderTimeout)
			u.pending = true
			u.receive()
			return false
		}
		if !u.wrote { // connected: from now on the endpoint has ResponseHeaderTimeout
			u.wrote = true
			u.deadline = u.l.now.Add(u.l.s.opts.ResponseHeaderTimeout)
		}
		if n < len(u.out) {
			u.out = append(u.out[:0], u.out[n:]...)
			continue
		}
		u.out = u.out[:0]
	}
	if !u.sent {
		u.sent = true
		u.deadline = u.l.now.Add(u.l.s.opts.ResponseHeaderTimeout)
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
		u.broken(os.NewSyscallError("read", err))
		return false
	case n == 0:
		u.pending, u.eof = false, true
		if !u.headDone || u.bodyLeft > 0 {
			err := io.ErrUnexpectedEOF
			if !u.got {
				err = io.EOF
			}
			u.broken(err)
			return false
		}
		return true
	}
	u.got = true
	u.in = in
	u.pending = len(u.in) == cap(u.in)
	return true
}

// broken handles a read error err: before the response head went out,
// the request fails or is tried again; after, the client's connection is
// cut, so that it sees a broken answer rather than a short one.
func (u *evUp) broken(err error) {
	c := u.c
	if !u.headDone {
		if !u.wrote && !u.reused {
			err = dialError(err) // it never connected
		} else {
			err = &net.OpError{Op: "read", Net: "tcp", Err: err}
		}
		c.upFailed(u, err)
		return
	}
	c.rec.UpstreamError = "body"
	c.l.s.log.Debug("upstream body error", "endpoint", c.rec.Endpoint, "err", err)
	c.hc.observe(&c.rec)
	c.close()
}

// relay takes the response head if it is in, then relays what came of
// the body.
func (u *evUp) relay() {
	c := u.c
	hc := c.hc
	for !u.headDone {
		b := u.in[u.off:]
		skip, end, st := findHead(b, maxResponseHeaderBytes)
		switch st {
		case headIncomplete:
			return
		case headTooLarge:
			c.upFailed(u, errHeadersTooLarge)
			return
		}
		if err := parseResponseHead(b[skip:end], &u.res); err != nil {
			c.upFailed(u, err)
			return
		}
		u.off += end
		switch {
		case u.res.status == 101:
			c.upFailed(u, errBadResponse("101 Switching Protocols to a request without Upgrade"))
			return
		case u.res.status < 200:
			continue // 1xx: the final answer follows
		}
		noBody := noResponseBody(hc.req.method, u.res.status)
		if !noBody && u.res.length < 0 {
			c.migrateResponse(u)
			return
		}
		if u.wrote && !u.sent { // an early answer: neither side can go on
			u.res.close = true
			hc.keepUnlessBodyLarge()
		}
		u.headDone = true
		u.deadline = time.Time{}
		hc.bw.Reset(&c.out)
		hc.responseHead(c.rec.Start, &u.res)
		_ = hc.bw.Flush()
		c.rec.Status = u.res.status
		if !noBody {
			u.bodyLeft = u.res.length
		}
	}
	if n := min(u.bodyLeft, int64(len(u.in)-u.off)); n > 0 {
		c.out = append(c.out, u.in[u.off:u.off+int(n)]...)
		u.off += int(n)
		u.bodyLeft -= n
	}
	if u.bodyLeft > 0 {
		if !c.flush() {
			return
		}
		if c.owed() > maxEvBacklog {
			u.paused = true
		}
		return
	}
	u.done()
}

// done: the response is relayed whole. The connection goes back to the
// idle list when it can carry another request.
func (u *evUp) done() {
	c := u.c
	c.up, u.c = nil, nil
	// Bytes past the end of the response (a body to HEAD, say) would be
	// read as the next request's answer: such a connection is not reused.
	if u.res.close || u.off != len(u.in) || u.eof || !u.sent {
		u.l.closeUp(u)
	} else {
		u.l.putIdle(u)
	}
	c.finish()
}

// sockaddrs returns the endpoint addresses of up, parsed once per
// Upstream, or nil when one is not an IP address and port, which the loop
// cannot dial without a resolver.
func (l *evloop) sockaddrs(up *Upstream) []syscall.Sockaddr {
	sas, ok := l.addrs[up]
	if ok {
		return sas
	}
	if len(l.addrs) >= 1024 { // every change of the routes makes new Upstreams
		clear(l.addrs)
	}
	sas = make([]syscall.Sockaddr, len(up.Addrs))
	for i, addr := range up.Addrs {
		ap, err := netip.ParseAddrPort(addr)
		a := ap.Addr()
		switch {
		case err != nil || a.Zone() != "":
			sas = nil
		case a.Is4() || a.Is4In6():
			sas[i] = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
		default:
			sas[i] = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
		}
		if sas == nil {
			break
		}
	}
	l.addrs[up] = sas
	return sas
}

// dial starts connecting to addr, whose parsed form is sa.
func (l *evloop) dial(addr string, sa syscall.Sockaddr) (*evUp, error) {
	family := syscall.AF_INET
	if _, v6 := sa.(*syscall.SockaddrInet6); v6 {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, dialError(os.NewSyscallError("socket", err))
	}
	// As net.Dialer sets them: no Nagle, keep-alive probes after 30 s.
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 30)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 30)
	if err := syscall.Connect(fd, sa); err != nil && err != syscall.EINPROGRESS {
		syscall.Close(fd)
		return nil, dialError(os.NewSyscallError("connect", err))
	}
	u := &evUp{l: l, fd: fd, addr: addr, in: make([]byte, 0, 16<<10)}
	if err := l.register(fd, u); err != nil {
		syscall.Close(fd)
		return nil, dialError(err)
	}
	return u, nil
}

// dialError is err as net.Dialer would report it: a connect error.
func dialError(err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: err}
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

// takeIdle returns an idle connection to addr, or nil. A request that
// cannot be sent again only goes on a connection the endpoint has not
// closed meanwhile.
func (l *evloop) takeIdle(addr string, replayable bool) *evUp {
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
		if l.now.Sub(u.lastUsed) < l.s.pool.idleFor && (replayable || u.alive()) {
			u.reset()
			return u
		}
		l.closeUp(u)
	}
	return nil
}

// alive reports whether the endpoint has sent nothing, not even its end.
func (u *evUp) alive() bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(u.fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == syscall.EAGAIN
}

func (u *evUp) reset() {
	*u = evUp{l: u.l, fd: u.fd, addr: u.addr, in: u.in[:0], out: u.out[:0], res: resHead{fields: u.res.fields[:0]}, lastUsed: u.lastUsed, reused: true}
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
	}
	u.c = nil
}
