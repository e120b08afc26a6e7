package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The event loops: on Linux, plain-HTTP connections are served by a few
// loops on epoll, one per CPU, as nginx's workers serve them, for as long
// as their requests are of the common kind: a complete head the parser
// accepts and would not hand off, a body of at most maxEvBody bytes (or
// none), and an answer framed by Content-Length (or without a body). A
// goroutine per connection, however cheap, costs a park and a wake-up per
// read that has to wait, each with scheduler work and, often, an empty
// read first; a loop learns from epoll which sockets have something, reads
// each once, and writes each once.
//
// Everything else goes to the goroutine loop (h1server.go), connection and
// all, for the rest of the connection's life: a request the loop does not
// take is handed over with the bytes read so far, to be read again there;
// an answer it does not relay (chunked, or ending with the connection) is
// handed over together with the endpoint's connection, head parsed, to be
// relayed there. The rules are the goroutine loop's own: routing,
// answers, forwarded fields and the response head are written by the same
// h1conn methods, into the loop's buffers instead of a socket's.
//
// Unlike the goroutine loop, a loop notices a client that leaves while its
// request waits for the endpoint (epoll reports the client's end): the
// endpoint's connection is closed and the request recorded as 499, as
// net/http cancels a request whose client went away.

// maxEvBody is the largest request body a loop reads whole before
// forwarding; larger bodies are streamed by the goroutine loop.
const maxEvBody = 64 << 10

// maxEvBacklog is how much of an answer a loop keeps for a client that
// reads slower than the endpoint sends: past it, the endpoint is not read
// until the client has taken what it is owed.
const maxEvBacklog = 256 << 10

// scanEvery is how often a loop looks for timeouts: timeouts are honoured
// within it, late.
const scanEvery = 100 * time.Millisecond

const (
	epollET    = 1 << 31
	evInterest = syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET
	evHangup   = syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR
)

// evLoops are the event loops of one plain-HTTP front.
type evLoops struct {
	f     *front
	loops []*evloop
	next  int
	wg    sync.WaitGroup
}

// newEvLoops starts a loop per CPU the process may use for f.
//
// Each loop keeps its P (runtime.GOMAXPROCS) while it works, and its
// reads and writes do not give it up (see rawRead); so that the rest of
// the process (TLS connections, the controller, the garbage collector)
// always finds a P, one more is added per loop while the loops run. That
// spare P also spares the loops the runtime's own overhead: with none
// idle, the system monitor takes the P of a loop waiting in epoll_wait
// away after 20 µs, and hands it back on its return, thousands of times
// a second.
func newEvLoops(f *front) (*evLoops, error) {
	n := reserveProcs()
	e := &evLoops{f: f}
	for range n {
		l, err := newEvloop(f)
		if err != nil {
			e.stop(true)
			e.wait()
			releaseProcs(n - len(e.loops))
			return nil, err
		}
		e.loops = append(e.loops, l)
		e.wg.Go(l.run)
	}
	if short := n - len(e.loops); short > 0 {
		releaseProcs(short)
	}
	return e, nil
}

// procs counts the Ps added for event loops, over base, the GOMAXPROCS
// the process had before.
var procs struct {
	sync.Mutex
	base, added int
}

// reserveProcs adds as many Ps as the process had before any loop, and
// returns that number: the number of loops to run.
func reserveProcs() int {
	procs.Lock()
	defer procs.Unlock()
	if procs.added == 0 {
		procs.base = runtime.GOMAXPROCS(0)
	}
	n := procs.base
	procs.added += n
	runtime.GOMAXPROCS(procs.base + procs.added)
	return n
}

// releaseProcs takes back n Ps reserveProcs added.
func releaseProcs(n int) {
	procs.Lock()
	defer procs.Unlock()
	procs.added -= n
	if procs.added == 0 && os.Getenv("GOMAXPROCS") == "" {
		// Back to the runtime's own, which follows the CPU limit.
		runtime.SetDefaultGOMAXPROCS()
		return
	}
	runtime.GOMAXPROCS(procs.base + procs.added)
}

// adopt gives the accepted connection c to a loop. It reports false when c
// is not a TCP connection a loop can take; c is then the caller's.
func (e *evLoops) adopt(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	if cerr := rc.Control(func(p uintptr) {
		// A descriptor of the loop's own: closing c then takes the
		// socket out of the runtime's poller, not out of the process.
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, p, syscall.F_DUPFD_CLOEXEC, 0)
		if errno == 0 {
			fd = int(r)
		}
	}); cerr != nil || fd < 0 {
		return false
	}
	s := e.f.s
	hc := s.trackAs(c, connEvLoop)
	if hc == nil { // shutting down
		syscall.Close(fd)
		c.Close()
		return true
	}
	hc.identify()
	hc.raw, hc.conn = nil, nil
	c.Close()
	l := e.loops[e.next%len(e.loops)]
	e.next++
	l.add(&evClient{l: l, fd: fd, hc: hc})
	return true
}

// stop makes every loop look at the server's state now, not at its next
// scan: shutdown has begun; with force, the loops close every connection.
func (e *evLoops) stop(force bool) {
	for _, l := range e.loops {
		if force {
			l.force.Store(true)
		}
		l.poke()
	}
}

// evloop is one event loop. Everything but adds and force is its own.
type evloop struct {
	s    *Server
	f    *front
	ep   int
	wake int // an eventfd: new connections, shutdown

	mu    sync.Mutex
	adds  []*evClient
	done  bool // the loop has ended: adds are refused
	force atomic.Bool

	fds     []evHandler // by descriptor
	clients int
	idle    map[string]*evIdle
	// addrs are the endpoint addresses of Upstreams, parsed; nil when
	// one is not an IP address and port.
	addrs   map[*Upstream][]syscall.Sockaddr
	bufs    [][]byte      // free client input buffers
	ubw     *bufio.Writer // writes requests into an endpoint connection's out
	now     time.Time
	scanned time.Time
	events  [128]syscall.EpollEvent
	n, at   int       // events[at:n] are still to be handled
	cur     evHandler // the handler of events[at]
}

type evHandler interface{ event(ev uint32) }

// evIdle are a loop's idle connections to one endpoint, most recent last.
type evIdle struct{ conns []*evUp }

func newEvloop(f *front) (*evloop, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	r, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		syscall.Close(ep)
		return nil, os.NewSyscallError("eventfd2", errno)
	}
	l := &evloop{s: f.s, f: f, ep: ep, wake: int(r), idle: map[string]*evIdle{}, addrs: map[*Upstream][]syscall.Sockaddr{}}
	l.ubw = bufio.NewWriterSize(nil, 4<<10)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.wake)}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, l.wake, &ev); err != nil {
		syscall.Close(ep)
		syscall.Close(l.wake)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return l, nil
}

// add hands a new client to the loop.
func (l *evloop) add(c *evClient) {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		c.drop()
		return
	}
	l.adds = append(l.adds, c)
	l.mu.Unlock()
	l.poke()
}

// drop closes a client the loop never took.
func (c *evClient) drop() {
	syscall.Close(c.fd)
	c.l.s.untrack(c.hc)
	c.hc.release()
}

func (l *evloop) poke() {
	one := [8]byte{1}
	_, _ = syscall.Write(l.wake, one[:])
}

// run serves until the server has shut down and no client is left.
func (l *evloop) run() {
	defer l.exit()
	for !l.loop() {
	}
}

// loop runs the loop until it is done, and reports true; or until a
// panic, which ends only the connection it came from, and reports false:
// run starts it again where it was.
func (l *evloop) loop() (done bool) {
	defer func() {
		if p := recover(); p != nil {
			l.s.log.Error("panic in an event loop", "panic", p, "stack", string(debug.Stack()))
			l.fault(l.cur)
		}
	}()
	for {
		for ; l.at < l.n; l.at++ {
			ev := l.events[l.at]
			fd := int(ev.Fd)
			switch {
			case fd == l.wake:
				l.cur = nil
				l.takeNew()
			case fd < len(l.fds) && l.fds[fd] != nil:
				l.cur = l.fds[fd]
				l.cur.event(ev.Events)
			}
		}
		l.cur = nil
		if l.now.Sub(l.scanned) >= scanEvery || l.s.closing.Load() {
			l.scanned = l.now
			if l.scan() && l.end() {
				return true
			}
		}
		n, err := l.wait()
		if err != nil && err != syscall.EINTR {
			l.s.log.Error("event loop stopped", "err", os.NewSyscallError("epoll_wait", err))
			l.closeAll()
			for !l.end() {
				l.takeNew()
				l.closeAll()
			}
			return true
		}
		l.n, l.at = max(n, 0), 0
		l.now = time.Now()
	}
}

// wait waits for events, or for scanEvery. What is ready already is
// taken without telling the runtime, as a read or write is (see rawRead);
// only a wait that may block goes through the scheduler, which lets
// another goroutine have the P meanwhile.
func (l *evloop) wait() (int, error) {
	r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	if r > 0 {
		return int(r), nil
	}
	return syscall.EpollWait(l.ep, l.events[:], int(scanEvery/time.Millisecond))
}

// rawRead and rawWrite read and write a non-blocking socket without
// telling the scheduler that a system call is under way: it never waits,
// and telling costs more than it (entering and leaving the call, and the
// system monitor handing the P to another thread when a write to a
// loopback peer, which runs the peer's TCP input, takes a while).
func rawRead(fd int, p []byte) (int, error) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// fault ends the connection whose event panicked, and its peer.
func (l *evloop) fault(h evHandler) {
	l.at++ // the event that panicked is not handled again
	defer func() {
		if p := recover(); p != nil {
			l.s.log.Error("panic closing a connection after a panic", "panic", p)
		}
	}()
	switch x := h.(type) {
	case *evClient:
		x.close()
	case *evUp:
		if x.last != nil {
			x.last.close()
		}
		l.dropIdle(x) // it may be on an idle list already
	}
}

// end ends the loop unless a client is on its way to it.
func (l *evloop) end() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = len(l.adds) == 0
	return l.done
}

// takeNew registers the clients add handed over.
func (l *evloop) takeNew() {
	var b [8]byte
	_, _ = syscall.Read(l.wake, b[:])
	l.mu.Lock()
	adds := l.adds
	l.adds = nil
	l.mu.Unlock()
	for _, c := range adds {
		if err := l.register(c.fd, c); err != nil {
			l.s.log.Error("event loop cannot take a connection", "err", err)
			c.drop()
			continue
		}
		l.clients++
		c.deadline = l.now.Add(l.s.opts.IdleTimeout)
	}
}

func (l *evloop) register(fd int, h evHandler) error {
	for fd >= len(l.fds) {
		l.fds = append(l.fds, make([]evHandler, len(l.fds)+64)...)
	}
	ev := syscall.EpollEvent{Events: evInterest, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	l.fds[fd] = h
	return nil
}

// forget takes fd out of the loop without closing it.
func (l *evloop) forget(fd int) {
	_ = syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_DEL, fd, nil)
	l.fds[fd] = nil
}

// scan applies timeouts and shutdown. It reports whether the loop is done.
func (l *evloop) scan() bool {
	closing, force := l.s.closing.Load(), l.force.Load()
	for _, h := range l.fds {
		l.cur = h
		switch x := h.(type) {
		case *evClient:
			switch {
			case force:
				x.close()
			case x.up != nil || len(x.out) > 0:
			case closing && x.off == len(x.in), !x.deadline.IsZero() && l.now.After(x.deadline):
				x.close()
			}
		case *evUp:
			switch {
			case x.c != nil && !x.deadline.IsZero() && l.now.After(x.deadline):
				err := error(os.ErrDeadlineExceeded)
				if !x.sent {
					err = dialError(os.ErrDeadlineExceeded)
				}
				x.c.upFailed(x, err)
			case x.c == nil && (closing || l.now.Sub(x.lastUsed) >= l.s.pool.idleFor):
				l.dropIdle(x)
			}
		}
	}
	l.cur = nil
	return (closing || force) && l.clients == 0
}

func (l *evloop) closeAll() {
	for _, h := range l.fds {
		switch x := h.(type) {
		case *evClient:
			x.close()
		case *evUp:
			if x.c == nil {
				l.dropIdle(x)
			}
		}
	}
}

// exit closes what the loop has. Its eventfd stays open until evLoops
// has waited for every loop: stop may still write to it, and a closed
// descriptor's number may be another's by then.
func (l *evloop) exit() {
	l.closeAll()
	syscall.Close(l.ep)
}

// buffer returns a client input buffer.
func (l *evloop) buffer() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b
	}
	return make([]byte, 0, 4<<10)
}

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
	if cap(c.in)-len(c.in) < 1<<10 {
		if c.off > 0 {
			c.in = c.in[:copy(c.in, c.in[c.off:])]
			c.off = 0
		}
		if cap(c.in)-len(c.in) < 1<<10 {
			b := make([]byte, len(c.in), 2*cap(c.in))
			copy(b, c.in)
			c.in = b
		}
	}
	for {
		n, err := rawRead(c.fd, c.in[len(c.in):cap(c.in)])
		switch {
		case err == syscall.EINTR:
			continue
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
			c.in = c.in[:len(c.in)+n]
			// A short read emptied the socket: epoll says when more comes.
			c.pending = len(c.in) == cap(c.in)
		}
		return true
	}
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
	if c.l.sockaddrs(up) == nil {
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
			if u, err = l.dial(addr, l.sockaddrs(up)[i]); err != nil {
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
		n, err := rawWrite(c.fd, c.out[c.sent:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
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
		n, err := rawWrite(u.fd, u.out)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
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
		u.wrote = true
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
	if cap(u.in)-len(u.in) < 4<<10 {
		if u.off > 0 && u.headDone {
			u.in = u.in[:copy(u.in, u.in[u.off:])]
			u.off = 0
		}
		if cap(u.in)-len(u.in) < 4<<10 {
			if !u.headDone && len(u.in) >= maxResponseHeaderBytes {
				u.c.upFailed(u, errHeadersTooLarge)
				return false
			}
			b := make([]byte, len(u.in), max(2*cap(u.in), 16<<10))
			copy(b, u.in)
			u.in = b
		}
	}
	for {
		n, err := rawRead(u.fd, u.in[len(u.in):cap(u.in)])
		switch {
		case err == syscall.EINTR:
			continue
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
		u.in = u.in[:len(u.in)+n]
		u.pending = len(u.in) == cap(u.in)
		return true
	}
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

// wait waits for the loops to end, which they do once the server has shut
// down and their clients are gone.
func (e *evLoops) wait() {
	e.wg.Wait()
	for _, l := range e.loops {
		syscall.Close(l.wake)
	}
	releaseProcs(len(e.loops))
}
