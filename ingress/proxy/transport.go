package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// Endpoints that are not spoken to in HTTP/1.1 in the clear — HTTPS,
// HTTP/2 in the clear (h2c) and gRPC, with TLS or without
// (backend-protocol) — are spoken to by Go's own clients, never a
// hand-written one: net/http's Transport for HTTPS (HTTP/1.1), and
// x/net's HTTP/2 Transport, with the connection pool of h2pool.go, for
// the others. The exchange's plan is carried out as for the other
// endpoints: the same head (the core's header policy), the same attempts
// and retries, the same timeouts, and the answer relayed by the same
// front-end code, piece by piece, trailers included.
//
// One client, with its own connections, serves each protocol and set of
// TLS settings (exchange.BackendTLS.Key); the event loops hand such
// requests to the goroutine loop, which blocks on them.

// stdClients are the clients, by protocol and TLS settings.
type stdClients struct {
	s  *Server
	mu sync.Mutex
	m  map[stdKey]*stdClient
	// cut ends every request in flight on a forced shutdown.
	cut     context.Context
	cutThem context.CancelFunc
}

type stdKey struct {
	proto route.Protocol
	tls   string // exchange.BackendTLS.Key
	// name is the name the endpoints are verified for, or sent as SNI:
	// connections are pooled by address, and one made for a name must
	// not carry the requests of another target at the same address.
	name string
}

type stdClient struct {
	rt        http.RoundTripper
	closeIdle func()       // closes the connections that carry no request
	used      atomic.Int64 // when it last carried a request, Unix seconds
}

func newStdClients(s *Server) *stdClients {
	ctx, cancel := context.WithCancel(context.Background())
	return &stdClients{s: s, m: map[stdKey]*stdClient{}, cut: ctx, cutThem: cancel}
}

// client returns the client for x's target, made when missing.
func (cs *stdClients) client(x *exchange.Exchange) http.RoundTripper {
	k := stdKey{proto: x.Target.Protocol}
	if b := x.BackendTLS; b != nil {
		k.tls = b.Key
		if b.Verify || b.SNI {
			k.name = b.ServerName(x.Target)
		}
	}
	cs.mu.Lock()
	c := cs.m[k]
	if c == nil {
		c = cs.s.newStdClient(k.proto)
		cs.m[k] = c
	}
	cs.mu.Unlock()
	c.used.Store(time.Now().Unix())
	return c.rt
}

// closeIdle closes the idle connections of every client, and forgets
// the clients no request used for ten minutes (TLS settings that
// changed, Ingresses that went away), or all of them.
func (cs *stdClients) closeIdle(all bool) {
	old := time.Now().Add(-10 * time.Minute).Unix()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for k, c := range cs.m {
		c.closeIdle()
		if all || c.used.Load() < old {
			delete(cs.m, k)
		}
	}
}

// newStdClient returns a client that speaks proto. Connections are made
// by dialStd, which reads from the request's context which endpoint and
// TLS settings they are for.
func (s *Server) newStdClient(proto route.Protocol) *stdClient {
	if proto != route.HTTPS {
		p := s.newH2Pool()
		return &stdClient{rt: p.t, closeIdle: p.closeIdle}
	}
	t := &http.Transport{
		DialContext:            s.dialStd,
		DialTLSContext:         s.dialStd,
		MaxIdleConnsPerHost:    s.opts.MaxIdleConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true, // bodies are relayed as they come
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		Protocols:              new(http.Protocols),
	}
	t.Protocols.SetHTTP1(true) // as nginx's proxy_pass https://
	return &stdClient{rt: t, closeIdle: t.CloseIdleConnections}
}

// stdDial is what a request's context tells dialStd.
type stdDial struct {
	timeout time.Duration
	proto   route.Protocol
	tls     *exchange.BackendTLS
	name    string // exchange.BackendTLS.ServerName of the target
}

type stdDialKey struct{}

// dialError marks a failure to connect: nothing of the request was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dialStd connects to addr as the request's context says: within its
// connect timeout, over TLS for the TLS protocols. The connection counts
// against MaxConnections like any endpoint's.
func (s *Server) dialStd(ctx context.Context, network, addr string) (net.Conn, error) {
	d, _ := ctx.Value(stdDialKey{}).(*stdDial)
	if d == nil {
		return nil, &dialError{errors.New("no endpoint plan for this connection")}
	}
	if !s.reserve("endpoint") {
		return nil, &dialError{errTooManyConnections}
	}
	nd := net.Dialer{Timeout: d.timeout, KeepAlive: 30 * time.Second}
	nc, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		s.closed()
		return nil, &dialError{err}
	}
	c := &countedConn{Conn: nc, s: s}
	if !d.proto.TLS() {
		return c, nil
	}
	tc := tls.Client(c, backendTLSConfig(d))
	hctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = tc.Close()
		return nil, &dialError{fmt.Errorf("TLS handshake with %s: %w", addr, err)}
	}
	return tc, nil
}

// backendTLSConfig is the TLS client configuration of a dial. Without
// verification, as nginx's proxy_ssl_verify off, any certificate is
// taken; with it, the chain and the name are checked whether or not the
// name is sent (proxy_ssl_server_name).
func backendTLSConfig(d *stdDial) *tls.Config {
	b := d.tls
	if b == nil {
		b = &exchange.BackendTLS{}
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}
	if d.proto == route.GRPCS {
		c.NextProtos = []string{"h2"}
	}
	if b.SNI {
		c.ServerName = d.name
	}
	if b.Cert != nil {
		cert := b.Cert
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	if b.Verify {
		roots, name := b.Roots, d.name
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the endpoint sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name})
			return err
		}
	}
	return c
}

// countedConn counts itself out of MaxConnections when closed, once.
type countedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(c.s.closed)
	return c.Conn.Close()
}

// stdBody gives a request's body to Go's client, one reader per attempt.
type stdBody interface {
	// reader returns the body from its start, or nil when it cannot be
	// sent again (a stream already read from).
	reader() io.ReadCloser
	// length is the body's length, -1 when not known before its end.
	length() int64
}

// bufferedBody is a body received whole.
type bufferedBody struct{ b *reqBody }

func (b bufferedBody) reader() io.ReadCloser {
	if b.b == nil || b.b.size == 0 {
		return http.NoBody
	}
	return &bufferedReader{r: io.NewSectionReader(readerAt(b.b.readAt), 0, b.b.size), closed: make(chan struct{})}
}

// bufferedReader reads a body received whole. Go's client may close it
// from another goroutine while a read of it is under way: Close waits for
// that read, later reads fail, and closed says when the body's buffers are
// the front-end's again (see stdReply.done).
type bufferedReader struct {
	mu     sync.Mutex
	r      io.Reader
	done   bool
	closed chan struct{}
}

func (b *bufferedReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, io.ErrClosedPipe
	}
	return b.r.Read(p)
}

func (b *bufferedReader) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.done = true
		close(b.closed)
	}
	return nil
}

func (b bufferedBody) length() int64 {
	if b.b == nil {
		return 0
	}
	return b.b.size
}

type readerAt func(p []byte, off int64) (int, error)

func (f readerAt) ReadAt(p []byte, off int64) (int, error) { return f(p, off) }

// roundTripStd carries out x's plan with Go's client: attempt after
// attempt as the plan says, each within its timeouts. It returns the
// endpoint's answer, or nil when none answered: x then holds the client's
// answer. ctx is the client's: when it ends, so does the request upstream
// (an HTTP/2 stream reset, which gRPC reads as a cancellation).
func (s *Server) roundTripStd(ctx context.Context, x *exchange.Exchange, body stdBody) *stdReply {
	start := time.Now()
	defer func() { x.Record.UpstreamTime = time.Since(start) }()
	rt := s.std.client(x)
	for {
		r, f := s.tryStd(ctx, rt, x, body)
		if f == 0 {
			return r
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

// tryStd makes one attempt of x's plan.
func (s *Server) tryStd(ctx context.Context, rt http.RoundTripper, x *exchange.Exchange, body stdBody) (*stdReply, exchange.Failure) {
	addr, _ := x.Endpoint()
	lim := &x.Limits
	rctx, cancel := context.WithCancel(context.WithValue(ctx, stdDialKey{}, &stdDial{
		timeout: lim.ConnectTimeout, proto: x.Target.Protocol, tls: x.BackendTLS, name: x.BackendTLS.ServerName(x.Target),
	}))
	stopCut := context.AfterFunc(s.std.cut, cancel)
	w := newWatchdog(cancel)
	r := &stdReply{cancel: cancel, stopCut: stopCut, w: w}
	req, err := stdRequest(rctx, x, addr, body, r)
	if err != nil {
		r.done(s, false, time.Time{})
		return nil, exchange.FailInvalid
	}
	// The head must come within ReadTimeout of the request, or of the
	// last bytes of a body still being sent.
	w.kick(lim.ReadTimeout)
	res, err := rt.RoundTrip(req)
	if err != nil {
		r.done(s, false, time.Time{})
		var de *dialError
		switch {
		case errors.As(err, &de):
			return nil, exchange.FailConnect
		case w.fired.Load():
			return nil, exchange.FailTimeout
		}
		s.log.Debug("endpoint request failed", "endpoint", addr, "err", err)
		return nil, exchange.FailReset
	}
	r.res = res
	if f := x.Judge(res.StatusCode, ""); f != 0 {
		r.done(s, false, time.Time{})
		return nil, f
	}
	r.head = h1.Response{Status: res.StatusCode, Minor: 1, Length: res.ContentLength}
	for k, vv := range res.Header {
		switch k {
		case "Content-Length", "Transfer-Encoding":
			continue // framing is the front-end's
		case "Date":
			r.head.Date = true
		case "Connection":
			r.head.ConnNames = true
		}
		for _, v := range vv {
			r.head.Fields = append(r.head.Fields, h1.Field{Name: k, Value: v})
		}
	}
	r.head.Chunked = r.head.Length < 0 // trailers may follow
	return r, 0
}

// stdRequest makes the request of one attempt.
func stdRequest(ctx context.Context, x *exchange.Exchange, addr string, body stdBody, r *stdReply) (*http.Request, error) {
	scheme := "http"
	if x.Target.Protocol.TLS() {
		scheme = "https"
	}
	// The head's strings may be views of buffers the front-end and the
	// core reuse for the next request, and Go's client keeps some (HPACK's
	// table does): it gets copies.
	path, query, _ := strings.Cut(strings.Clone(x.Out.Target), "?")
	u := &url.URL{Scheme: scheme, Host: addr, Opaque: path, RawQuery: query}
	if strings.HasPrefix(path, "//") {
		// As Opaque, Go's client would write it in absolute form,
		// "https://evil.example/admin": the endpoint would take its
		// Host and its path from that, not from the core's head. As
		// RawPath it goes as it is (the core checked its escapes).
		p, err := url.PathUnescape(path)
		if err != nil {
			return nil, err
		}
		u.Opaque, u.Path, u.RawPath = "", p, path
	}
	req := &http.Request{
		Method: strings.Clone(x.Out.Method), URL: u, Host: strings.Clone(x.Out.Host), Header: make(http.Header, len(x.Out.Fields)+1),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody,
	}
	req = req.WithContext(ctx)
	for _, f := range x.Out.Fields {
		k := http.CanonicalHeaderKey(f.Name) // a copy unless already canonical, when it may be a view
		if k == f.Name {
			k = strings.Clone(k)
		}
		req.Header[k] = append(req.Header[k], strings.Clone(f.Value))
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = nil // Go's client would add its own
	}
	if x.Out.Body {
		rd := body.reader()
		if rd == nil {
			return nil, errors.New("the body was sent already")
		}
		if req.ContentLength = body.length(); req.ContentLength != 0 {
			req.Body = &kickReader{ReadCloser: rd, w: r.w, send: x.Limits.SendTimeout, read: x.Limits.ReadTimeout}
			if b, ok := rd.(*bufferedReader); ok {
				r.sent = b.closed // see stdReply.done; a stream guards itself
			}
		}
	}
	return req, nil
}

// watchdog cancels a request that made no progress for a while: no bytes
// of the response (ReadTimeout), nor of the body being sent (SendTimeout),
// as nginx's proxy timeouts count between two reads or two writes. The
// two are kept apart: SendTimeout counts only while bytes of the body are
// waiting to go out, so that a short one does not cut short the wait for
// the answer, nor a long one lengthen it.
type watchdog struct {
	mu sync.Mutex
	t  *time.Timer
	// read is when the answer's next bytes are due; send, when the body's
	// bytes handed to Go's client are due out (zero: none are waiting).
	read, send time.Time
	stopped    bool
	fired      atomic.Bool
}

func newWatchdog(cancel context.CancelFunc) *watchdog {
	w := &watchdog{}
	w.t = time.AfterFunc(time.Hour, func() {
		w.fired.Store(true)
		cancel()
	})
	w.t.Stop()
	return w
}

// kick gives the answer d more.
func (w *watchdog) kick(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.read = time.Now().Add(d)
	w.arm()
}

// sending: bytes of the body were handed to Go's client, due out within
// send; the answer is due within read of them. With send 0: the bytes
// handed over before went out.
func (w *watchdog) sending(send, read time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if send == 0 {
		w.send = time.Time{}
	} else {
		now := time.Now()
		w.send, w.read = now.Add(send), now.Add(read)
	}
	w.arm()
}

// arm sets the timer to the earlier deadline. w.mu is held.
func (w *watchdog) arm() {
	if w.stopped { // Go's client may touch the body after the request ended
		return
	}
	at := w.read
	if !w.send.IsZero() && w.send.Before(at) {
		at = w.send
	}
	w.t.Reset(time.Until(at))
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.t.Stop()
}

// kickReader tells the watchdog of the body's progress.
type kickReader struct {
	io.ReadCloser
	w          *watchdog
	send, read time.Duration // SendTimeout, ReadTimeout
}

func (k *kickReader) Close() error {
	k.w.sending(0, 0)
	return k.ReadCloser.Close()
}

func (k *kickReader) Read(p []byte) (int, error) {
	k.w.sending(0, 0) // asking for more: what it had went out
	n, err := k.ReadCloser.Read(p)
	if n > 0 {
		k.w.sending(k.send, k.read)
	}
	return n, err
}

// stdReply is an endpoint's answer from Go's client, read piece by piece
// as a front-end relays it.
type stdReply struct {
	res     *http.Response
	head    h1.Response
	cancel  context.CancelFunc
	stopCut func() bool
	w       *watchdog
	// sent is closed once Go's client is done with the request's body.
	sent  <-chan struct{}
	buf   []byte
	reads int
	ended bool
	// trailers are the trailer fields still to give, once the body ended.
	trailers []h1.Field
}

func (r *stdReply) response() *h1.Response { return &r.head }

// next returns the next piece of the body, each read within timeout.
// Before a read that may wait, flush gives the client what it is owed: a
// gRPC stream's messages reach it as they come.
func (r *stdReply) next(timeout time.Duration, flush func() error) (h1.Piece, error) {
	for !r.ended {
		// Not before the first read: the head goes out with the first
		// bytes of the body (gRPC's first message), in one write.
		if r.reads > 0 {
			if err := flush(); err != nil {
				return h1.Piece{}, errClientGone
			}
		}
		r.reads++
		if r.buf == nil {
			r.buf = make([]byte, 32<<10)
		}
		r.w.kick(timeout)
		n, err := r.res.Body.Read(r.buf)
		if n > 0 {
			return h1.Piece{Kind: h1.Data, Data: r.buf[:n]}, nil
		}
		switch {
		case err == io.EOF:
			r.ended = true
			for k, vv := range r.res.Trailer {
				for _, v := range vv {
					r.trailers = append(r.trailers, h1.Field{Name: k, Value: v})
				}
			}
		case err != nil && r.w.fired.Load():
			return h1.Piece{}, fmt.Errorf("no bytes from the endpoint in %v: %w", timeout, err)
		case err != nil:
			return h1.Piece{}, err
		}
	}
	if len(r.trailers) > 0 {
		f := r.trailers[0]
		r.trailers = r.trailers[1:]
		return h1.Piece{Kind: h1.Trailer, Field: f}, nil
	}
	return h1.Piece{Kind: h1.End}, nil
}

// cutOn: the request ends with ctx already (see roundTripStd).
func (r *stdReply) cutOn(ctx context.Context) func() bool {
	return func() bool { return ctx.Err() == nil }
}

// done ends the request: its connection goes back to its Transport's
// pool when the answer was read whole, and an HTTP/2 stream is reset
// when it was not.
func (r *stdReply) done(*Server, bool, time.Time) {
	r.w.stop()
	if r.res != nil {
		_ = r.res.Body.Close()
	}
	r.stopCut()
	r.cancel()
	if r.sent != nil {
		<-r.sent // the body's buffers are the front-end's again
	}
}
