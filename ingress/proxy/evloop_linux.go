package proxy

import (
	"net"
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
// loops on epoll, one per CPU, as nginx's workers serve them. A goroutine
// per connection, however cheap, costs a park and a wake-up per read that
// has to wait, each with scheduler work and, often, an empty read first; a
// loop learns from epoll which sockets have something, reads each once,
// and writes each once.
//
// A loop serves every request the same way the goroutine loop does, with
// the same codec and the same core; only the I/O differs. A WebSocket
// upgrade is the exception: the connection goes to the goroutine loop,
// bytes and all, which tunnels it (evclient_linux.go, migrate).
//
// Unlike the goroutine loop, a loop notices a client that leaves while its
// request waits for the endpoint (epoll reports the client's end): the
// endpoint's connection is closed and the request recorded as 499.

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
	if !s.hold() { // shutting down
		syscall.Close(fd)
		s.closed()
		c.Close()
		return true
	}
	client, local := addrPort(c.RemoteAddr()), addrPort(c.LocalAddr())
	c.Close()
	l := e.loops[e.next%len(e.loops)]
	e.next++
	l.add(&evClient{l: l, fd: fd, client: client, local: local})
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
	bufs    [][]byte // free client input buffers
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
	l := &evloop{s: f.s, f: f, ep: ep, wake: int(r), idle: map[string]*evIdle{}}
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
	c.l.s.unhold()
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
		n, err := l.poll()
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

// poll waits for events, or for scanEvery. What is ready already is
// taken without telling the runtime, as a read or write is (see rawRead);
// only a wait that may block goes through the scheduler, which lets
// another goroutine have the P meanwhile.
func (l *evloop) poll() (int, error) {
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
		l.s.inLoops.Add(1)
		c.rdeadline = l.now.Add(l.s.opts.IdleTimeout)
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
			x.scan(closing, force)
		case *evUp:
			x.scan(closing)
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

// wait waits for the loops to end, which they do once the server has shut
// down and their clients are gone.
func (e *evLoops) wait() {
	e.wg.Wait()
	for _, l := range e.loops {
		syscall.Close(l.wake)
	}
	releaseProcs(len(e.loops))
}
