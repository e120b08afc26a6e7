package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
)

var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
	noValue    = []string{""}
	upgradeHdr = []string{"Upgrade"}
	trailers   = []string{"trailers"}
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// idempotent methods may be sent again to another endpoint when the first
// could not be connected to (RFC 9110, 9.2.2).
func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// forward sends r to the endpoints of up and copies the answer back.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, rawPath string, up *Upstream, rec *Record) int {
	out := &http.Request{
		Method:     r.Method,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     s.outHeader(r),
		Host:       r.Host,
	}
	u := url.URL{Scheme: "http", RawQuery: r.URL.RawQuery}
	if strings.HasPrefix(rawPath, "//") {
		// As Opaque it would read as an authority; let net/url escape it.
		u.Path, u.RawPath = r.URL.Path, r.URL.RawPath
	} else {
		u.Opaque = rawPath // byte for byte what the client sent
	}
	upgrade := upgradeType(r.Header)
	if upgrade != "" {
		out.Header["Connection"] = upgradeHdr
		out.Header["Upgrade"] = []string{upgrade}
	}
	retry := false
	if bodyless(r) {
		retry = idempotent(r.Method) // nothing to resend but headers
	} else {
		out.Body, out.ContentLength = r.Body, r.ContentLength
	}
	out = out.WithContext(r.Context())

	n := len(up.Addrs)
	first := up.pick()
	tries := 1
	if retry {
		tries = min(n, 3)
	}
	var res *http.Response
	var err error
	for i := range tries {
		addr := up.Addrs[(first+i)%n]
		uu := u
		uu.Host = addr
		out.URL = &uu
		rec.Endpoint, rec.Retries = addr, i
		if res, err = s.transport.RoundTrip(out); err == nil || !isConnectError(err) || r.Context().Err() != nil {
			break
		}
	}
	if err != nil {
		return s.upstreamError(w, r, err, rec)
	}
	defer res.Body.Close()

	if res.StatusCode == http.StatusSwitchingProtocols {
		return s.switchProtocols(w, r, res, upgrade, rec)
	}
	dst := w.Header()
	copyHeader(dst, res.Header)
	dst["Server"] = serverHeader
	if len(res.Trailer) > 0 {
		announceTrailers(dst, res.Trailer)
	}
	w.WriteHeader(res.StatusCode)
	if err := copyBody(w, res, r.Method); err != nil && !errors.Is(err, context.Canceled) {
		// The status line is gone already: cut the client's connection so
		// that it sees a broken response, not a short one that looks whole.
		rec.UpstreamError = "body"
		panic(http.ErrAbortHandler)
	}
	for k, vv := range res.Trailer {
		dst[http.TrailerPrefix+k] = vv
	}
	return res.StatusCode
}

// announceTrailers tells the client which trailers follow the body.
func announceTrailers(dst, trailer http.Header) {
	names := make([]string, 0, len(trailer))
	for k := range trailer {
		names = append(names, k)
	}
	dst["Trailer"] = []string{strings.Join(names, ", ")}
}

// bodyless reports whether r has no body to send.
func bodyless(r *http.Request) bool {
	return r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 && len(r.TransferEncoding) == 0
}

// copyBody copies the response body; a body of unknown length (streams,
// server-sent events) is flushed as it comes.
func copyBody(w http.ResponseWriter, res *http.Response, method string) error {
	if method == http.MethodHead {
		return nil
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	stream := res.ContentLength < 0
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return context.Canceled // the client went away; nothing to tell it
			}
			if stream {
				_ = http.NewResponseController(w).Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// outHeader returns the headers to send upstream: the client's, less the
// hop-by-hop ones, plus X-Forwarded-*. Value slices are shared with r, which
// neither side modifies.
func (s *Server) outHeader(r *http.Request) http.Header {
	h := make(http.Header, len(r.Header)+4)
	client := clientIP(r.RemoteAddr)
	trusted := s.trusted(client)
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if hopByHop(k) || (len(conn) > 0 && listed(conn, k)) || (!trusted && forwarding(k)) {
			continue
		}
		h[k] = vv
	}
	if te := r.Header["Te"]; len(te) > 0 && listed(te, "trailers") {
		h["Te"] = trailers
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = noValue // else Go would send its own
	}

	if prior := r.Header["X-Forwarded-For"]; trusted && len(prior) > 0 {
		h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + client}
	} else {
		h["X-Forwarded-For"] = []string{client}
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		if r.TLS != nil {
			h["X-Forwarded-Proto"] = protoHTTPS
		} else {
			h["X-Forwarded-Proto"] = protoHTTP
		}
	}
	if _, ok := h["X-Forwarded-Host"]; !ok {
		h["X-Forwarded-Host"] = []string{r.Host}
	}
	return h
}

// forwarding reports the headers in which a client tells what a proxy in
// front of it saw: kept from trusted proxies, dropped from anyone else
// (X-Forwarded-For is handled apart: it is appended to, or replaced).
func forwarding(k string) bool {
	return k == "X-Forwarded-Proto" || k == "X-Forwarded-Host" || k == "Forwarded"
}

func (s *Server) trusted(ip string) bool {
	if len(s.opts.TrustedProxies) == 0 {
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP is the address part of a RemoteAddr, without brackets.
func clientIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

// hopByHop reports the headers that belong to one connection (RFC 9110,
// 7.6.1) and are not forwarded.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// listed reports whether the comma-separated header values hold token.
func listed(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func copyHeader(dst, src http.Header) {
	conn := src["Connection"]
	for k, vv := range src {
		if hopByHop(k) || (len(conn) > 0 && listed(conn, k)) {
			continue
		}
		dst[k] = vv
	}
}

// upgradeType returns the protocol a request or response asks to switch
// to, or "".
func upgradeType(h http.Header) string {
	if !listed(h["Connection"], "upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (s *Server) upstreamError(w http.ResponseWriter, r *http.Request, err error, rec *Record) int {
	if r.Context().Err() != nil {
		rec.UpstreamError = "canceled"
		return 499 // the client went away: nobody to answer
	}
	code, kind, reason := classify(err)
	rec.UpstreamError = kind
	if kind == "protocol" {
		s.log.Debug("upstream error", "endpoint", rec.Endpoint, "err", err)
	}
	return answer(w, code, reason)
}

// classify sorts a failure to get an answer from the endpoints into the
// status the client gets, the kind Record.UpstreamError names, and the
// reason the answer gives.
func classify(err error) (code int, kind, reason string) {
	var ne net.Error
	switch {
	case isConnectError(err):
		return http.StatusBadGateway, "connect", "no endpoint of the backend service accepted a connection"
	case errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout, "timeout", "the backend service did not answer in time"
	default:
		return http.StatusBadGateway, "protocol", "the backend service's answer was broken"
	}
}

// switchProtocols completes an Upgrade (WebSocket and the like): it sends
// the endpoint's 101 to the client and then copies bytes both ways until
// either side closes.
func (s *Server) switchProtocols(w http.ResponseWriter, r *http.Request, res *http.Response, asked string, rec *Record) int {
	got := upgradeType(res.Header)
	back, ok := res.Body.(io.ReadWriteCloser)
	if asked == "" || !strings.EqualFold(asked, got) || !ok {
		rec.UpstreamError = "protocol"
		return answer(w, http.StatusBadGateway, "the backend service switched to a protocol the client did not ask for")
	}
	defer back.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil { // HTTP/2 has no Upgrade
		return answer(w, http.StatusBadGateway, "cannot switch protocols on this connection")
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{})

	h := make(http.Header, len(res.Header)+1)
	copyHeader(h, res.Header)
	h["Connection"] = upgradeHdr
	h["Upgrade"] = []string{got}
	h["Server"] = serverHeader
	_, _ = io.WriteString(brw, "HTTP/1.1 101 Switching Protocols\r\n")
	_ = h.Write(brw)
	_, _ = io.WriteString(brw, "\r\n")
	if err := brw.Flush(); err != nil {
		return http.StatusSwitchingProtocols
	}

	done := make(chan struct{}, 2)
	go func() { // client → endpoint, starting with what the server already buffered
		_, _ = io.Copy(back, brw.Reader)
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(conn, back)
		done <- struct{}{}
	}()
	<-done
	// One side is finished: closing both (deferred) ends the other copy.
	_ = conn.Close()
	_ = back.Close()
	<-done
	return http.StatusSwitchingProtocols
}
