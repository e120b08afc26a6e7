package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// External authentication's I/O (the decision is the core's, see
// exchange/extauth.go): when a request's Outcome is Authorize, the
// goroutine loop and the HTTP/2 adapter send the subrequest the core
// wrote to the route's authentication service with Go's client and give
// its answer back to the core; the event loops hand such requests to the
// goroutine loop. One Transport serves every service: its host is
// resolved by Go's resolver (cluster DNS names in a cluster), its
// connections count against MaxConnections and are kept alive between
// subrequests.
//
// As nginx's auth_request: no redirect is followed, the service's body is
// read and dropped, and an https service's certificate is not verified
// (ingress-nginx's proxy_ssl_verify off), its name sent as SNI.

// authClient is the Transport of the authentication services, made on
// first use.
type authClient struct {
	once sync.Once
	t    *http.Transport
}

// authDialKey carries a subrequest's connect timeout to dialAuth.
type authDialKey struct{}

// maxAuthBody bounds the service's body read to keep its connection; a
// longer one closes it.
const maxAuthBody = 64 << 10

func (s *Server) authTransport() *http.Transport {
	s.auth.once.Do(func() {
		s.auth.t = &http.Transport{
			DialContext:            s.dialAuth,
			TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}, //nolint:gosec // as nginx's proxy_ssl_verify off
			MaxIdleConnsPerHost:    s.opts.MaxIdleConnsPerHost,
			IdleConnTimeout:        90 * time.Second,
			DisableCompression:     true,
			MaxResponseHeaderBytes: maxResponseHeaderBytes,
		}
	})
	return s.auth.t
}

// dialAuth connects to an authentication service within the subrequest's
// connect timeout; the connection counts against MaxConnections.
func (s *Server) dialAuth(ctx context.Context, network, addr string) (net.Conn, error) {
	timeout, _ := ctx.Value(authDialKey{}).(time.Duration)
	if !s.reserve("auth") {
		return nil, errTooManyConnections
	}
	nd := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	nc, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		s.closed()
		return nil, err
	}
	return &countedConn{Conn: nc, s: s}, nil
}

// authorize sends x's subrequest to its authentication service and gives
// the answer to the core. As nginx's proxy timeouts: connecting within the
// request's ConnectTimeout, the subrequest written within SendTimeout,
// the answer within ReadTimeout of that; ctx is the client's.
func (s *Server) authorize(ctx context.Context, x *exchange.Exchange) {
	start := time.Now()
	lim := &x.Limits
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.std.cut, cancel) // a forced shutdown ends it
	defer stop()
	w := newWatchdog(cancel)
	defer w.stop()
	w.kick(lim.ConnectTimeout + lim.SendTimeout)
	read := lim.ReadTimeout // the trace may run on Go's client's goroutine
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { w.kick(read) }})
	ctx = context.WithValue(ctx, authDialKey{}, lim.ConnectTimeout)
	status, fields, err := s.askAuth(ctx, x)
	if err != nil {
		s.log.Debug("authentication service did not answer", "url", x.AuthURL().Redacted(), "route", x.Record.Route, "err", err, "after", time.Since(start))
	}
	x.Authorized(status, fields)
}

// askAuth makes the subrequest: the service's status and fields, or an
// error.
func (s *Server) askAuth(ctx context.Context, x *exchange.Exchange) (int, []h1.Field, error) {
	out := &x.AuthOut
	u := *x.AuthURL()
	// The head's strings may be views of the front-end's buffers, and Go's
	// client may still be writing when the answer came: it gets copies.
	req := &http.Request{
		Method: strings.Clone(out.Method), URL: &u, Host: out.Host, Header: make(http.Header, len(out.Fields)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody,
	}
	req = req.WithContext(ctx)
	for _, f := range out.Fields {
		k := strings.Clone(http.CanonicalHeaderKey(f.Name))
		req.Header[k] = append(req.Header[k], strings.Clone(f.Value))
	}
	res, err := s.authTransport().RoundTrip(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var fields []h1.Field
	for k, vv := range res.Header {
		for _, v := range vv {
			fields = append(fields, h1.Field{Name: k, Value: v})
		}
	}
	// Read through a short body so that the connection is kept.
	if _, err := io.CopyN(io.Discard, res.Body, maxAuthBody); err != nil && !errors.Is(err, io.EOF) {
		s.log.Debug("authentication service's body broke off", "url", u.Redacted(), "err", err)
	}
	return res.StatusCode, fields, nil
}
