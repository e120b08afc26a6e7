package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The proxy talks HTTP/1.1 to endpoints itself, on the goroutine of the
// request, over a per-endpoint idle pool: the fast loop for everything it
// serves (h1forward.go), and fastForward below for the idempotent requests
// without a body that net/http serves (HTTP/2, handed-off connections).
// http.Transport, kept for net/http's requests with bodies and for
// upgrades, spends two goroutine hand-offs and a request clone on every
// request; measured, doing without them roughly doubles the proxy's
// requests per second.

// pool keeps idle keep-alive connections to endpoints. Each endpoint has
// its own idle list and lock: requests to different endpoints never wait
// for each other. The lists are found by address in a map, and cached in
// the Upstreams of the Config, so that a request finds its list with no
// lookup at all.
type pool struct {
	dialer  net.Dialer
	maxIdle int
	idleFor time.Duration

	hosts sync.Map // endpoint address → *idleConns
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

type upConn struct {
	net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	lastUsed time.Time
	deadline lazyDeadline
	// head and res are the last response head read by the fast loop.
	head []byte
	res  resHead
	// budget is what the next reads from the endpoint may bring: bounded
	// while response headers are read, so that an endpoint sending
	// endless headers cannot make the proxy buffer them all.
	budget int64
}

// maxResponseHeaderBytes bounds an endpoint's response headers, as
// http.Transport's MaxResponseHeaderBytes does for the other path.
const maxResponseHeaderBytes = 1 << 20

var errHeadersTooLarge = errors.New("the endpoint's response headers are larger than 1 MiB")

// Read reads from the endpoint within the budget.
func (c *upConn) Read(p []byte) (int, error) {
	if c.budget <= 0 {
		return 0, errHeadersTooLarge
	}
	if int64(len(p)) > c.budget {
		p = p[:c.budget]
	}
	if err := c.deadline.apply(c.Conn); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	c.budget -= int64(n)
	return n, err
}

func newPool(opts Options) *pool {
	return &pool{
		dialer:  net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second},
		maxIdle: opts.MaxIdleConnsPerHost,
		idleFor: 90 * time.Second,
	}
}

// list returns the idle list of endpoint i of up.
func (p *pool) list(up *Upstream, i int) *idleConns {
	if i < len(up.idle) {
		if h := up.idle[i].Load(); h != nil && !h.gone.Load() {
			return h
		}
	}
	h := p.lookup(up.Addrs[i])
	if i < len(up.idle) {
		up.idle[i].Store(h)
	}
	return h
}

// lookup returns the idle list of addr, made when missing.
func (p *pool) lookup(addr string) *idleConns {
	v, ok := p.hosts.Load(addr)
	if !ok {
		v, _ = p.hosts.LoadOrStore(addr, &idleConns{addr: addr})
	}
	return v.(*idleConns)
}

// get returns an idle connection from h, or nil. now is the start of the
// request: clocks are read once per request, not per step.
func (p *pool) get(h *idleConns, now time.Time) *upConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.conns) > 0 {
		c := h.conns[len(h.conns)-1]
		h.conns[len(h.conns)-1] = nil
		h.conns = h.conns[:len(h.conns)-1]
		if now.Sub(c.lastUsed) < p.idleFor {
			return c
		}
		c.Close()
	}
	return nil
}

func (p *pool) dial(ctx context.Context, addr string) (*upConn, error) {
	c, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	u := &upConn{Conn: c, bw: bufio.NewWriterSize(c, 8<<10), budget: math.MaxInt64}
	u.br = bufio.NewReaderSize(u, 16<<10)
	return u, nil
}

// alive reports whether an idle connection is still open: the endpoint
// has neither closed it nor sent anything unasked. It costs a system call,
// spent only on requests that cannot be sent again.
func (c *upConn) alive() bool {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = rerr == syscall.EAGAIN // nothing to read: neither data nor EOF
		return true
	})
	return err == nil && open
}

// put returns a connection whose last response was read to its end to
// h; now is the start of that request, which counts as the connection's
// last use.
func (p *pool) put(h *idleConns, c *upConn, now time.Time) {
	c.lastUsed = now
	for {
		h.mu.Lock()
		if h.gone.Load() { // closeIdle just dropped it: take the new list
			h.mu.Unlock()
			h = p.lookup(h.addr)
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
// and so do the entries of endpoints left with none.
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

// errStale: a pooled connection turned out closed by the endpoint before
// it answered; the request can go again on a new connection.
var errStale = errors.New("idle upstream connection was closed")

// roundTrip sends a request without a body on c and reads the response
// headers. The response body reads from c.
func (s *Server) roundTrip(c *upConn, r *http.Request, reused bool) (*http.Response, error) {
	s.writeRequest(c.bw, r)
	if err := c.bw.Flush(); err != nil {
		if reused {
			return nil, errStale
		}
		return nil, err
	}
	c.deadline.within(time.Now(), s.opts.ResponseHeaderTimeout)
	c.budget = maxResponseHeaderBytes
	defer func() { c.budget = math.MaxInt64 }()
	for {
		res, err := http.ReadResponse(c.br, requestFor(r.Method))
		if err != nil {
			if reused && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err)) && c.br.Buffered() == 0 {
				return nil, errStale
			}
			return nil, err
		}
		if res.StatusCode >= 100 && res.StatusCode < 200 && res.StatusCode != http.StatusSwitchingProtocols {
			continue // 103 Early Hints and the like: informational only
		}
		// The body may take its time. Unless it is all buffered already
		// (small answers: no more reads, and the next request sets its own
		// deadline), lift the header deadline.
		if res.ContentLength < 0 || int64(c.br.Buffered()) < res.ContentLength {
			c.deadline.none()
		}
		return res, nil
	}
}

// isReset reports a read error other than a timeout: a timeout means the
// endpoint is slow, not that the connection was stale, and must not be
// waited out twice.
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "read" && !op.Timeout()
}

var (
	getRequest  = &http.Request{Method: http.MethodGet}
	headRequest = &http.Request{Method: http.MethodHead}
)

// requestFor gives http.ReadResponse the method it needs to know whether a
// body follows.
func requestFor(method string) *http.Request {
	switch method {
	case http.MethodGet:
		return getRequest
	case http.MethodHead:
		return headRequest
	}
	return &http.Request{Method: method}
}

// writeRequest writes r's request line and headers as they go upstream:
// the client's target byte for byte, the client's headers less hop-by-hop
// ones, and X-Forwarded-*.
func (s *Server) writeRequest(w *bufio.Writer, r *http.Request) {
	uri := r.RequestURI
	if uri == "" || uri[0] != '/' {
		uri = r.URL.RequestURI()
	}
	w.WriteString(r.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(r.Host)
	w.WriteString("\r\n")

	client := clientIP(r.RemoteAddr)
	trusted := s.trusted(client)
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if hopByHop(k) || (len(conn) > 0 && listed(conn, k)) || k == "Host" {
			continue
		}
		if k == "X-Forwarded-For" || (!trusted && forwarding(k)) {
			continue
		}
		for _, v := range vv {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	if te := r.Header["Te"]; len(te) > 0 && listed(te, "trailers") {
		w.WriteString("Te: trailers\r\n")
	}
	w.WriteString("X-Forwarded-For: ")
	if prior := r.Header["X-Forwarded-For"]; trusted && len(prior) > 0 {
		for _, v := range prior {
			w.WriteString(v)
			w.WriteString(", ")
		}
	}
	w.WriteString(client)
	if _, ok := r.Header["X-Forwarded-Proto"]; !trusted || !ok {
		if r.TLS != nil {
			w.WriteString("\r\nX-Forwarded-Proto: https")
		} else {
			w.WriteString("\r\nX-Forwarded-Proto: http")
		}
	}
	if _, ok := r.Header["X-Forwarded-Host"]; !trusted || !ok {
		w.WriteString("\r\nX-Forwarded-Host: ")
		w.WriteString(r.Host)
	}
	w.WriteString("\r\n\r\n")
}

// fastForward is forward for idempotent requests without a body: see the
// comment at the top of this file.
func (s *Server) fastForward(w http.ResponseWriter, r *http.Request, up *Upstream, rec *Record) int {
	n := len(up.Addrs)
	first := up.pick()
	tries := min(n, 3)
	var (
		res *http.Response
		c   *upConn
		err error
	)
	var idle *idleConns
	for i := range tries {
		addr := up.Addrs[(first+i)%n]
		rec.Endpoint, rec.Retries = addr, i
		idle = s.pool.list(up, (first+i)%n)
		if c = s.pool.get(idle, rec.Start); c != nil {
			if res, err = s.roundTrip(c, r, true); err == errStale {
				c.Close()
				c = nil
			}
		}
		if c == nil {
			if c, err = s.pool.dial(r.Context(), addr); err != nil {
				if isConnectError(err) && r.Context().Err() == nil {
					continue // the next endpoint
				}
				break
			}
			res, err = s.roundTrip(c, r, false)
		}
		if err != nil {
			c.Close()
		}
		break
	}
	if err != nil {
		return s.upstreamError(w, r, err, rec)
	}

	dst := w.Header()
	copyHeader(dst, res.Header)
	dst["Server"] = serverHeader
	if len(res.Trailer) > 0 {
		announceTrailers(dst, res.Trailer)
	}
	// A client that goes away must not keep the endpoint's connection: a
	// body of unknown length has no read deadline, so unblock the read.
	gone := context.AfterFunc(r.Context(), func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	w.WriteHeader(res.StatusCode)
	berr := copyBody(w, res, r.Method)
	left := !gone() // the deadline was clobbered: the connection is spent
	if left && berr != nil {
		berr = context.Canceled
	}
	if berr == nil && !res.Close && !left && c.br.Buffered() == 0 { // see respond
		s.pool.put(idle, c, rec.Start) // the body was read to its end: reusable
	} else {
		c.Close()
	}
	if berr != nil && !errors.Is(berr, context.Canceled) {
		rec.UpstreamError = "body"
		panic(http.ErrAbortHandler)
	}
	for k, vv := range res.Trailer {
		dst[http.TrailerPrefix+k] = vv
	}
	return res.StatusCode
}
