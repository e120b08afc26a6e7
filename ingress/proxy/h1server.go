package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The fast loop: the proxy's own HTTP/1.x server. One goroutine per
// connection reads a request head in place (h1parse.go), routes it,
// forwards it (h1forward.go) and relays the answer, with no per-request
// allocation on the common path. net/http's server, which allocates a
// Request, header maps, a response writer and a context per request and
// starts a background read for each, stays for what this loop leaves to
// it: HTTP/2 (chosen by ALPN, before a byte is read) and any connection
// from a request the loop does not serve on (see reqHead.handoff).
//
// Unlike net/http's server, the loop does not read from a client while
// its request is in flight (that costs a goroutine wake-up and two
// deadline changes per request). A client that leaves is noticed when its
// answer is written: an endpoint slow to start answering keeps its
// connection until it does or ResponseHeaderTimeout passes, and a stream
// ends at its next write.

// front serves one listener.
type front struct {
	s       *Server
	ln      net.Listener
	tls     *tls.Config // nil: plain HTTP
	hs      *http.Server
	handoff *handoff
	// ev are the event loops that serve plain HTTP (evloop_linux.go);
	// nil: the goroutine loop serves every connection.
	ev *evLoops
}

func (s *Server) newFront(ln net.Listener, tlsOn bool) *front {
	f := &front{s: s, ln: ln, hs: s.httpServer(tlsOn), handoff: newHandoff(ln.Addr())}
	if tlsOn {
		// A config of its own: the http.Server writes to its own when it
		// sets up HTTP/2.
		f.tls = s.TLSConfig()
	} else if !s.opts.GoroutineLoop {
		ev, err := newEvLoops(f)
		if err != nil {
			s.log.Warn("serving plain HTTP without event loops", "err", err)
		}
		f.ev = ev
	}
	return f
}

// serve accepts connections until the listener is closed; the http.Server
// serves the handed-off ones meanwhile.
func (f *front) serve() error {
	go func() { _ = f.hs.Serve(f.handoff) }()
	var backoff time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait, as
				// net/http does, rather than spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				f.s.log.Debug("accept failed, retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if f.ev != nil && f.ev.adopt(c) {
			continue
		}
		hc := f.s.track(c)
		if hc == nil { // shutting down
			c.Close()
			continue
		}
		go f.serveConn(hc, nil)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// h1conn is one client connection of the fast loop and what it keeps
// between requests: buffers, the head being served, deadlines.
type h1conn struct {
	s *Server
	// raw is the accepted connection; conn is what requests are read
	// from, raw or the TLS connection over it.
	raw    net.Conn
	conn   net.Conn
	tls    *tls.ConnectionState // nil over plain HTTP
	br     *bufio.Reader        // reads through h1conn.Read
	bw     *bufio.Writer
	head   []byte // the current request head's bytes; reqHead points here
	req    reqHead
	remote string // RemoteAddr
	client string // its IP, for X-Forwarded-For
	// trusted: the client is a trusted proxy (Options.TrustedProxies).
	trusted bool
	// bodyLeft is what is left unread of the request's body.
	bodyLeft int64
	// closeAfter: the connection ends after the response being written.
	closeAfter bool
	// lastHost is the last Host given to Observe, kept to give the same
	// string again without copying.
	lastHost string
	deadline lazyDeadline
	// idle is the idle list of the endpoint the request goes to.
	idle *idleConns
	// resumed: an event loop handed the connection over in the middle of
	// reading a request, which is served whatever comes (shutdown).
	resumed bool
	// state is connIdle between requests, connActive while serving one,
	// connClosing when shutdown closed it.
	state atomic.Int32
}

const (
	connActive = iota
	connIdle
	connClosing
	connEvLoop // an event loop serves it (evloop_linux.go)
)

// Read reads from the client. What the client is owed is flushed first,
// so responses go out in one write, and pipelined ones together, but
// never wait behind a read.
func (hc *h1conn) Read(p []byte) (int, error) {
	if hc.bw.Buffered() > 0 {
		if err := hc.bw.Flush(); err != nil {
			return 0, err
		}
	}
	if err := hc.deadline.apply(hc.conn); err != nil {
		return 0, err
	}
	return hc.conn.Read(p)
}

var connPool = sync.Pool{New: func() any {
	hc := &h1conn{}
	hc.br = bufio.NewReaderSize(hc, 4<<10)
	hc.bw = bufio.NewWriterSize(nil, 4<<10)
	return hc
}}

// track returns a new h1conn for c, registered for shutdown, or nil when
// the server is shutting down.
func (s *Server) track(c net.Conn) *h1conn { return s.trackAs(c, connIdle) }

// trackAs is track with the state the connection starts in: connEvLoop
// for one an event loop serves, which shutdown leaves to the loop.
func (s *Server) trackAs(c net.Conn, state int32) *h1conn {
	hc := connPool.Get().(*h1conn)
	hc.s, hc.raw, hc.conn = s, c, c
	hc.bw.Reset(c)
	hc.state.Store(state)
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if s.closing.Load() {
		hc.release()
		return nil
	}
	s.conns[hc] = struct{}{}
	s.connsWG.Add(1)
	return hc
}

// untrack forgets a connection that is closed or handed off.
func (s *Server) untrack(hc *h1conn) {
	s.connsMu.Lock()
	delete(s.conns, hc)
	s.connsMu.Unlock()
	s.connsWG.Done()
}

// release returns hc's buffers to the pool; big head buffers are dropped.
func (hc *h1conn) release() {
	hc.br.Reset(hc)
	hc.bw.Reset(nil)
	if cap(hc.head) > 8<<10 {
		hc.head = nil
	}
	clear(hc.req.fields[:cap(hc.req.fields)]) // they point into head buffers
	*hc = h1conn{br: hc.br, bw: hc.bw, head: hc.head[:0], req: reqHead{fields: hc.req.fields[:0]}}
	connPool.Put(hc)
}

// serveConn runs the fast loop on one connection until it closes or is
// handed off. A panic ends the connection, not the process. first, when
// set, runs before the loop and reports whether the connection goes on:
// it finishes a request an event loop began (evloop_linux.go).
func (f *front) serveConn(hc *h1conn, first func() bool) {
	handedOff := false
	defer func() {
		if p := recover(); p != nil {
			f.s.log.Error("panic serving a connection", "client", hc.remote, "panic", p, "stack", string(debug.Stack()))
		}
		if !handedOff {
			_ = hc.bw.Flush() // a last response may wait for a read that will not come
			_ = hc.conn.Close()
		}
		f.s.untrack(hc)
		hc.release()
	}()
	s := f.s
	if hc.remote == "" { // else an event loop knew the client
		hc.identify()
	}
	if f.tls != nil {
		tc := tls.Server(hc.conn, f.tls)
		hc.conn = tc
		hc.bw.Reset(tc)
		_ = tc.SetDeadline(time.Now().Add(s.opts.ReadHeaderTimeout))
		if err := tc.Handshake(); err != nil {
			s.log.Debug("TLS handshake failed", "client", hc.remote, "err", err)
			return
		}
		_ = tc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		hc.tls = &st
		if st.NegotiatedProtocol == "h2" {
			handedOff = f.handoff.give(tc) // as is: net/http knows a *tls.Conn
			return
		}
	}
	if first != nil && !first() {
		return
	}
	for {
		start, ok := hc.waitRequest()
		if !ok {
			return
		}
		hc.deadline.within(start, s.opts.ReadHeaderTimeout)
		head, err := readHead(hc.br, hc.head, s.opts.MaxHeaderBytes, &hc.req)
		hc.head = head
		if err != nil {
			hc.refuse(err)
			return
		}
		if hc.req.handoff {
			handedOff = f.handOff(hc)
			return
		}
		hc.deadline.none() // as net/http without a ReadTimeout: bodies take their time
		hc.bodyLeft = hc.req.length
		hc.closeAfter = hc.req.close || s.closing.Load()
		hc.serveRequest(start)
		if !hc.finish() {
			return
		}
	}
}

// waitRequest waits for the first byte of the next request, within the
// idle timeout, and returns when it came. It reports false when the
// connection is to end: closed, idle too long, or the server shutting
// down.
func (hc *h1conn) waitRequest() (time.Time, bool) {
	if hc.resumed { // an event loop read (some of) this request already
		hc.resumed = false
		return time.Now(), true
	}
	hc.state.Store(connIdle)
	if hc.s.closing.Load() {
		return time.Time{}, false
	}
	if hc.br.Buffered() == 0 {
		hc.deadline.within(time.Now(), hc.s.opts.IdleTimeout)
		if _, err := hc.br.Peek(1); err != nil {
			return time.Time{}, false
		}
	}
	if !hc.state.CompareAndSwap(connIdle, connActive) {
		return time.Time{}, false // shutdown closed it meanwhile
	}
	return time.Now(), true
}

// refuse answers a request head that could not be read and ends the
// connection.
func (hc *h1conn) refuse(err error) {
	var he *headError
	if !errors.As(err, &he) {
		return // closed, reset, timed out: nobody to tell
	}
	hc.s.log.Debug("refused a request", "client", hc.remote, "status", he.code, "reason", he.reason)
	hc.req.minor = 1
	hc.closeAfter = true
	hc.answer(time.Now(), he.code, he.reason)
	hc.lingerClose()
}

// lingerClose ends the connection after an answer to a request that was
// not read to its end. Closing a socket with unread input makes the kernel
// reset the connection, and the client may lose the answer with it: so
// the proxy sends its end, then reads what the client still sends, for a
// short while, before closing.
func (hc *h1conn) lingerClose() {
	if err := hc.bw.Flush(); err != nil {
		return
	}
	cw, ok := hc.conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = hc.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.CopyN(io.Discard, hc.conn, maxDiscard)
}

// handOff passes the connection, with the bytes read from it so far, to
// the http.Server.
func (f *front) handOff(hc *h1conn) bool {
	pending := make([]byte, 0, len(hc.head)+hc.br.Buffered())
	pending = append(pending, hc.head...)
	rest, _ := hc.br.Peek(hc.br.Buffered())
	pending = append(pending, rest...)
	_ = hc.bw.Flush()
	_ = hc.conn.SetReadDeadline(time.Time{})
	return f.handoff.give(&replayConn{Conn: hc.conn, pending: pending, tls: hc.tls})
}

// finish ends a request: it makes sure no unread body is taken for the
// next request, and flushes a connection that ends. It reports whether the
// connection goes on.
func (hc *h1conn) finish() bool {
	if hc.closeAfter {
		_ = hc.bw.Flush()
		return false
	}
	if hc.bodyLeft > 0 {
		// Only a body the proxy did not forward (its own answers) is left;
		// closeAfter is set when it is too large to read through.
		hc.deadline.within(time.Now(), hc.s.opts.IdleTimeout)
		if _, err := hc.br.Discard(int(hc.bodyLeft)); err != nil {
			return false
		}
	}
	return true
}

// maxDiscard is the largest unread body the loop reads through to keep a
// connection, as net/http does.
const maxDiscard = 256 << 10

// serveRequest answers the parsed request and calls Observe.
func (hc *h1conn) serveRequest(start time.Time) {
	rec := hc.record(start)
	rec.Status = hc.route(start, &rec)
	hc.observe(&rec)
}

// identify records who the client is, from its connection.
func (hc *h1conn) identify() {
	hc.remote = hc.conn.RemoteAddr().String()
	hc.client = clientIP(hc.remote)
	hc.trusted = hc.s.trusted(hc.client)
}

// record starts the Record of the parsed request.
func (hc *h1conn) record(start time.Time) Record {
	rec := Record{Start: start, Method: hc.req.method, Host: hc.req.host, Client: hc.remote, Proto: "HTTP/1.1"}
	if hc.req.minor == 0 {
		rec.Proto = "HTTP/1.0"
	}
	return rec
}

// observe gives the Record of an answered request to Options.Observe.
func (hc *h1conn) observe(rec *Record) {
	obs := hc.s.opts.Observe
	if obs == nil {
		return
	}
	// Host and Path point into the connection's buffer: copy them.
	if rec.Host != hc.lastHost {
		hc.lastHost = strings.Clone(rec.Host)
	}
	rec.Host = hc.lastHost
	if rec.Path == hc.req.path {
		rec.Path = strings.Clone(rec.Path)
	}
	rec.Duration = time.Since(rec.Start)
	obs(*rec)
}

// statusLine starts a response head: status line, Server, and Date unless
// the endpoint sent one.
func (hc *h1conn) statusLine(now time.Time, code int, reason string, date bool) {
	w := hc.bw
	if hc.req.minor == 0 {
		w.WriteString("HTTP/1.0 ")
	} else {
		w.WriteString("HTTP/1.1 ")
	}
	var b [3]byte
	w.Write(strconv.AppendInt(b[:0], int64(code), 10))
	w.WriteByte(' ')
	w.WriteString(reason)
	w.WriteString("\r\nServer: portico\r\n")
	if !date {
		w.WriteString(hc.s.dateLine(now))
	}
}

// endHead ends a response head, saying whether the connection goes on.
func (hc *h1conn) endHead() {
	if hc.s.closing.Load() {
		hc.closeAfter = true
	}
	switch {
	case hc.closeAfter:
		hc.bw.WriteString("Connection: close\r\n\r\n")
	case hc.req.minor == 0:
		hc.bw.WriteString("Connection: keep-alive\r\n\r\n")
	default:
		hc.bw.WriteString("\r\n")
	}
}

// answer writes a short plain-text response of the proxy's own, as answer
// does for net/http.
func (hc *h1conn) answer(now time.Time, code int, reason string) int {
	hc.keepUnlessBodyLarge()
	text := http.StatusText(code)
	hc.statusLine(now, code, text, false)
	w := hc.bw
	w.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: ")
	var b [20]byte
	w.Write(strconv.AppendInt(b[:0], int64(3+1+len(text)+2+len(reason)+1), 10))
	w.WriteString("\r\n")
	hc.endHead()
	w.Write(strconv.AppendInt(b[:0], int64(code), 10))
	w.WriteByte(' ')
	w.WriteString(text)
	w.WriteString(": ")
	w.WriteString(reason)
	w.WriteByte('\n')
	return code
}

// redirect sends a plain HTTP request to the same URL over HTTPS, as
// redirect does for net/http.
func (hc *h1conn) redirect(now time.Time) int {
	hc.keepUnlessBodyLarge()
	host := hc.req.host
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	hc.statusLine(now, http.StatusPermanentRedirect, "Permanent Redirect", false)
	w := hc.bw
	w.WriteString("Location: https://")
	w.WriteString(host)
	w.WriteString(hc.req.target)
	w.WriteString("\r\nContent-Length: 0\r\n")
	hc.endHead()
	return http.StatusPermanentRedirect
}

// keepUnlessBodyLarge: an answer of the proxy's own leaves the request's
// body unread; a large one is not worth reading through.
func (hc *h1conn) keepUnlessBodyLarge() {
	if hc.bodyLeft > maxDiscard {
		hc.closeAfter = true
	}
}

// dateValue is a formatted Date field and the second it is for.
type dateValue struct {
	sec  int64
	line string
}

// dateLine returns "Date: ...\r\n" for now, formatted once a second.
func (s *Server) dateLine(now time.Time) string {
	sec := now.Unix()
	if d := s.date.Load(); d != nil && d.sec == sec {
		return d.line
	}
	d := &dateValue{sec, "Date: " + now.UTC().Format(http.TimeFormat) + "\r\n"}
	s.date.Store(d)
	return d.line
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

// none lifts the deadline.
func (l *lazyDeadline) none() { l.want = time.Time{} }

// apply sets the wanted deadline on c if it is not set already.
func (l *lazyDeadline) apply(c net.Conn) error {
	if l.want.Equal(l.set) {
		return nil
	}
	if err := c.SetReadDeadline(l.want); err != nil {
		return err
	}
	l.set = l.want
	return nil
}

// shutdown closes idle fast-loop connections until none is left or ctx
// ends, then closes the rest. The event loops close their own.
func (s *Server) shutdown(ctx context.Context, loops []*evLoops) {
	s.connsMu.Lock()
	s.closing.Store(true)
	s.connsMu.Unlock()
	for _, e := range loops {
		e.stop(false)
	}
	done := make(chan struct{})
	go func() { s.connsWG.Wait(); close(done) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.connsMu.Lock()
		for hc := range s.conns {
			if hc.state.CompareAndSwap(connIdle, connClosing) {
				_ = hc.raw.Close()
			}
		}
		s.connsMu.Unlock()
		select {
		case <-done:
			return
		case <-tick.C:
		case <-ctx.Done():
			for _, e := range loops {
				e.stop(true)
			}
			s.connsMu.Lock()
			for hc := range s.conns {
				if hc.state.Load() != connEvLoop { // the loops close theirs
					_ = hc.raw.Close()
				}
			}
			s.connsMu.Unlock()
			<-done
			return
		}
	}
}
