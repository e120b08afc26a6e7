package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP and HTTPS from the Config last stored.
type Server struct {
	opts      Options
	cfg       atomic.Pointer[Config]
	transport *http.Transport
	pool      *pool
	defCert   *tls.Certificate
	log       *slog.Logger
	date      atomic.Pointer[dateValue]

	// The connections of the fast loop, for shutdown.
	connsMu sync.Mutex
	conns   map[*h1conn]struct{}
	connsWG sync.WaitGroup
	closing atomic.Bool
}

// New returns a Server that serves an empty Config (every request 404)
// until Store is called. logger may be nil.
func New(opts Options, logger *slog.Logger) (*Server, error) {
	opts.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: logger, defCert: opts.DefaultCert, conns: map[*h1conn]struct{}{}}
	if s.defCert == nil {
		c, err := SelfSigned("portico default certificate")
		if err != nil {
			return nil, fmt.Errorf("generating the default certificate: %w", err)
		}
		s.defCert = c
	}
	s.transport = &http.Transport{
		Proxy: nil, // endpoints are dialled directly, whatever the environment says
		DialContext: (&net.Dialer{
			Timeout:   opts.DialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConnsPerHost:   opts.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: opts.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		// The client's Accept-Encoding goes through untouched, and so does
		// the body: no transparent gzip.
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
	}
	s.pool = newPool(opts)
	s.cfg.Store(&Config{})
	return s, nil
}

// Store makes c the Config of every request that starts from now on.
// c must not be modified afterwards.
func (s *Server) Store(c *Config) { s.cfg.Store(c) }

// Config returns the Config requests see now.
func (s *Server) Config() *Config { return s.cfg.Load() }

// TLSConfig returns the TLS settings of the HTTPS listener: TLS 1.2 or
// newer, HTTP/2 and HTTP/1.1 by ALPN, certificate chosen by SNI.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: s.certificate,
	}
}

// certificate picks the certificate for a handshake: the Secret the routes
// name for the server name when it loaded, else the default certificate.
func (s *Server) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cfg := s.cfg.Load()
	if hello.ServerName != "" {
		if ref, ok := cfg.Routes.TLS(hello.ServerName); ok && ref.Name != "" {
			if c := cfg.Certs[ref]; c != nil {
				return c, nil
			}
		}
	}
	if cfg.DefaultCert != nil {
		return cfg.DefaultCert, nil
	}
	return s.defCert, nil
}

// httpServer returns the http.Server that serves the connections the fast
// loop hands off on one listener, with the limits of the Options; tlsOn
// adds the TLS settings.
func (s *Server) httpServer(tlsOn bool) *http.Server {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		ConnContext:       connContext,
		// Hostile clients make net/http log (bad handshakes, ...): keep it
		// out of the error level.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if tlsOn {
		hs.TLSConfig = s.TLSConfig()
	}
	return hs
}

// Serve serves plain HTTP on plain and HTTPS on secure (either may be nil)
// until ctx ends, then shuts down gracefully, giving in-flight requests up to
// grace to finish. A Server serves once: it stays shut afterwards.
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
		}
	}
	for _, f := range fronts {
		_ = f.ln.Close()
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range fronts {
		wg.Go(func() { _ = f.hs.Shutdown(sctx) })
	}
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
	wg.Wait()
	s.transport.CloseIdleConnections()
	s.pool.closeIdle(true)
	return err
}

var (
	serverHeader = []string{"portico"}
	textPlain    = []string{"text/plain; charset=utf-8"}
	nosniff      = []string{"nosniff"}
)

// ServeHTTP routes and forwards one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestTLS(r)
	rec := Record{Start: time.Now(), Method: r.Method, Host: r.Host, Path: r.URL.Path, Client: r.RemoteAddr, Proto: r.Proto}
	w.Header()["Server"] = serverHeader
	rec.Status = s.serve(w, r, &rec)
	if s.opts.Observe != nil {
		rec.Duration = time.Since(rec.Start)
		s.opts.Observe(rec)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, rec *Record) int {
	if r.Method == http.MethodConnect {
		return answer(w, http.StatusMethodNotAllowed, "CONNECT is not supported")
	}
	rawPath := requestPath(r)
	if err := CheckPath(r.URL.Path, rawPath); err != nil {
		return answer(w, http.StatusBadRequest, err.Error())
	}
	cfg := s.cfg.Load()
	be, ok := cfg.Routes.Match(r.Host, r.URL.Path)
	if !ok {
		return answer(w, http.StatusNotFound, "no route for this host and path")
	}
	rec.Ingress = be.Ingress
	if r.TLS == nil && !be.NoSSLRedirect {
		if _, tlsOn := cfg.Routes.TLS(r.Host); tlsOn {
			return redirect(w, r)
		}
	}
	if be.Resource != "" {
		return answer(w, http.StatusServiceUnavailable, "the backend is a resource backend, which Portico does not serve")
	}
	rec.Target = TargetOf(be)
	up := cfg.Upstreams[rec.Target]
	if up == nil || len(up.Addrs) == 0 {
		return answer(w, http.StatusServiceUnavailable, "the backend service has no ready endpoint")
	}
	if bodyless(r) && idempotent(r.Method) && upgradeType(r.Header) == "" {
		return s.fastForward(w, r, up, rec)
	}
	return s.forward(w, r, rawPath, up, rec)
}

// requestPath returns the path of the request as the client sent it,
// escapes and all.
func requestPath(r *http.Request) string {
	uri := r.RequestURI
	if uri == "" || uri[0] != '/' { // absolute form, or not from a server
		return r.URL.EscapedPath()
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	return uri
}

// answer writes a short plain-text response of the proxy's own.
func answer(w http.ResponseWriter, code int, reason string) int {
	h := w.Header()
	h["Content-Type"] = textPlain
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, "%d %s: %s\n", code, http.StatusText(code), reason)
	return code
}

// redirect sends a plain HTTP request to the same URL over HTTPS. The host
// has TLS in the routes, so it is a DNS name; its port (the plain one) is
// dropped.
func redirect(w http.ResponseWriter, r *http.Request) int {
	host := r.Host
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	w.Header()["Location"] = []string{"https://" + host + r.URL.RequestURI()}
	w.WriteHeader(http.StatusPermanentRedirect)
	return http.StatusPermanentRedirect
}
