package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// Server serves HTTP and HTTPS from the Config last stored.
type Server struct {
	opts    Options
	policy  *exchange.Policy
	cfg     atomic.Pointer[exchange.Config]
	pool    *pool
	std     *stdClients // the endpoints not spoken to in HTTP/1.1 in the clear
	auth    authClient  // the authentication services of auth-url (extauth.go)
	defCert *tls.Certificate
	log     *slog.Logger

	// h2 serves the connections that choose HTTP/2; h2base is the
	// http.Server whose Shutdown tells them to go away.
	h2     *http2.Server
	h2base *http.Server

	// The connections of the goroutine loop (HTTP/2 ones included), for
	// shutdown; connsWG counts the event loops' too.
	connsMu sync.Mutex
	conns   map[*h1conn]struct{}
	connsWG sync.WaitGroup
	closing atomic.Bool

	// open counts the connections held, clients' and endpoints', for
	// MaxConnections; refused those refused for it.
	open        atomic.Int64
	inLoops     atomic.Int64 // of them, those an event loop serves
	refused     atomic.Uint64
	tlsFailed   atomic.Uint64 // TLS handshakes with clients that failed
	refusedLogs atomic.Int64  // the second of the last log line about it
}

// New returns a Server that serves an empty Config (every request 404)
// until Store is called. logger may be nil.
func New(opts Options, logger *slog.Logger) (*Server, error) {
	opts.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, policy: exchange.NewPolicy(opts.Policy), log: logger, defCert: opts.DefaultCert, conns: map[*h1conn]struct{}{}}
	if s.defCert == nil {
		c, err := SelfSigned("portico default certificate")
		if err != nil {
			return nil, fmt.Errorf("generating the default certificate: %w", err)
		}
		s.defCert = c
	}
	s.pool = newPool(opts)
	s.std = newStdClients(s)
	s.h2 = &http2.Server{
		IdleTimeout:          opts.IdleTimeout,
		MaxConcurrentStreams: 128, // nginx's http2_max_concurrent_streams
		// The protocol's own default, as nginx reads: a larger frame is a
		// FRAME_SIZE_ERROR, not a request.
		MaxReadFrameSize: 16 << 10,
	}
	s.h2base = &http.Server{
		MaxHeaderBytes: opts.MaxHeaderBytes,
		IdleTimeout:    opts.IdleTimeout,
		// Hostile clients make the HTTP/2 server log: keep it at debug.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if err := http2.ConfigureServer(s.h2base, s.h2); err != nil {
		return nil, err
	}
	s.cfg.Store(&exchange.Config{})
	return s, nil
}

// Store makes c the Config of every request that starts from now on.
// c must not be modified afterwards.
func (s *Server) Store(c *exchange.Config) { s.cfg.Store(c) }

// Config returns the Config requests see now.
func (s *Server) Config() *exchange.Config { return s.cfg.Load() }

// Stats are the server's connection counts.
type Stats struct {
	// Open is the connections held now, clients' and endpoints'; Loop
	// the clients' an event loop serves.
	Open, Loop int64
	// Refused counts the connections refused because MaxConnections were
	// open: clients' closed as soon as accepted, endpoints' not opened.
	Refused uint64
	// TLSHandshakeErrors counts client handshakes that failed or timed out.
	TLSHandshakeErrors uint64
}

// Stats returns the connection counts.
func (s *Server) Stats() Stats {
	return Stats{Open: s.open.Load(), Loop: s.inLoops.Load(), Refused: s.refused.Load(), TLSHandshakeErrors: s.tlsFailed.Load()}
}

// TLSConfig returns the TLS settings of the HTTPS listener: TLS 1.2 or
// newer, HTTP/2 and HTTP/1.1 by ALPN, certificate chosen by SNI, a client
// certificate asked for where routes need one (clientcert.go).
func (s *Server) TLSConfig() *tls.Config {
	return s.withClientCerts(&tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: s.certificate,
	})
}

func (s *Server) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cfg.Load().Certificate(hello.ServerName); c != nil {
		return c, nil
	}
	return s.defCert, nil
}

// front serves one listener.
type front struct {
	s   *Server
	ln  net.Listener
	tls *tls.Config // nil: plain HTTP
	// ev are the event loops that serve plain HTTP (evloop_linux.go);
	// nil: the goroutine loop serves every connection.
	ev *evLoops
}

func (s *Server) newFront(ln net.Listener, tlsOn bool) *front {
	f := &front{s: s, ln: ln}
	if tlsOn {
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

// Serve serves plain HTTP on plain and HTTPS on secure (either may be nil)
// until ctx ends, then shuts down gracefully, giving in-flight requests up
// to grace to finish. A Server serves once: it stays shut afterwards.
func (s *Server) Serve(ctx context.Context, plain, secure net.Listener, grace time.Duration) error {
	var fronts []*front
	errc := make(chan error, 2)
	for _, l := range []struct {
		ln    net.Listener
		tlsOn bool
	}{{plain, false}, {secure, true}} {
		if l.ln == nil {
			continue
		}
		f := s.newFront(l.ln, l.tlsOn)
		fronts = append(fronts, f)
		go func() { errc <- f.serve() }()
	}
	janitor := time.NewTicker(30 * time.Second)
	defer janitor.Stop()
	var err error
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case err = <-errc:
			break wait
		case <-janitor.C:
			s.pool.closeIdle(false)
			s.std.closeIdle(false)
		}
	}
	for _, f := range fronts {
		_ = f.ln.Close()
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var loops []*evLoops
	for _, f := range fronts {
		if f.ev != nil {
			loops = append(loops, f.ev)
		}
	}
	s.shutdown(sctx, loops)
	for _, e := range loops {
		e.wait()
	}
	s.pool.closeIdle(true)
	s.std.closeIdle(true)
	s.authTransport().CloseIdleConnections()
	return err
}

// serve accepts connections until the listener is closed.
func (f *front) serve() error {
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
		if !f.s.admit(c) {
			continue
		}
		if f.s.policy.ProxyProtocolFrom(addrPort(c.RemoteAddr()).Addr()) {
			go f.serveProxied(c)
			continue
		}
		if f.ev != nil && f.ev.adopt(c) {
			continue
		}
		hc := f.s.track(c, f)
		if hc == nil { // shutting down
			f.s.closed()
			c.Close()
			continue
		}
		go hc.serve()
	}
}

// serveProxied reads a balancer's PROXY header, then serves the connection
// as the client it names, on the goroutine loop (the event loops read
// sockets themselves). A connection without a valid header is closed.
func (f *front) serveProxied(c net.Conn) {
	pc, err := readProxyHeader(c, f.s.opts.ReadHeaderTimeout)
	if err != nil {
		f.s.log.Debug("connection closed: no valid PROXY protocol header from a balancer", "peer", c.RemoteAddr().String(), "err", err)
		f.s.closed()
		_ = c.Close()
		return
	}
	hc := f.s.track(pc, f)
	if hc == nil { // shutting down
		f.s.closed()
		_ = c.Close()
		return
	}
	hc.serve()
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// admit counts a new connection in, or closes it when MaxConnections are
// open already, as nginx does when its worker_connections run out.
func (s *Server) admit(c net.Conn) bool {
	if s.reserve("client") {
		return true
	}
	_ = c.Close()
	return false
}

// reserve counts a connection in, a client's or an endpoint's (side). It
// reports false when MaxConnections are open already: the refusal is
// counted, and logged at most once a second.
func (s *Server) reserve(side string) bool {
	if s.open.Add(1) <= int64(s.opts.MaxConnections) {
		return true
	}
	s.open.Add(-1)
	s.refused.Add(1)
	if now := time.Now().Unix(); s.refusedLogs.Swap(now) != now {
		s.log.Warn("connection refused: the limit of open connections is reached", "side", side, "limit", s.opts.MaxConnections, "refusedSoFar", s.refused.Load())
	}
	return false
}

// closed counts a connection out.
func (s *Server) closed() { s.open.Add(-1) }

// shutdown tells HTTP/2 clients to go away, closes idle connections until
// none is left or ctx ends, then closes the rest. The event loops close
// their own.
func (s *Server) shutdown(ctx context.Context, loops []*evLoops) {
	s.connsMu.Lock()
	s.closing.Store(true)
	s.connsMu.Unlock()
	for _, e := range loops {
		e.stop(false)
	}
	go func() { _ = s.h2base.Shutdown(ctx) }() // GOAWAY to every HTTP/2 connection
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
				_ = hc.raw.Close()
			}
			s.connsMu.Unlock()
			s.pool.cut() // requests waiting on endpoints end too
			s.std.cutThem()
			<-done
			return
		}
	}
}

// hold counts an event loop's new connection in, for shutdown; it reports
// false when the server is shutting down.
func (s *Server) hold() bool {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.connsWG.Add(1)
	return true
}

// unhold counts an event loop's connection out: it is closed.
func (s *Server) unhold() {
	s.connsWG.Done()
	s.closed()
}

// resume starts the goroutine loop on a connection an event loop hands
// over, pending being what the loop read of it and did not serve: a
// request begun, served even if shutdown began. The connection keeps its
// place in connsWG.
func (s *Server) resume(c net.Conn, pending []byte, f *front) {
	s.connsMu.Lock()
	hc := s.register(c, f)
	s.connsMu.Unlock()
	hc.in = append(hc.in[:0], pending...)
	hc.resumed = len(pending) > 0
	hc.state.Store(connActive)
	go hc.serve()
}
