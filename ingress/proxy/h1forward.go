package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// route answers one request of the fast loop, with the same rules and in
// the same order as serve does for net/http's requests, and returns the
// status.
func (hc *h1conn) route(now time.Time, rec *Record) int {
	up, code := hc.choose(now, rec)
	if up == nil {
		return code
	}
	return hc.forward(now, up, rec)
}

// choose applies the routing rules to the request. It returns the
// Upstream to forward it to, or nil and the status of the answer it wrote
// itself (404, 308 to HTTPS, 503, ...).
func (hc *h1conn) choose(now time.Time, rec *Record) (*Upstream, int) {
	req := &hc.req
	path := req.path
	if strings.IndexByte(path, '%') >= 0 {
		p, err := url.PathUnescape(path)
		if err != nil {
			return nil, hc.answer(now, http.StatusBadRequest, "invalid escape in the path")
		}
		path = p
	}
	rec.Path = path
	if err := CheckPath(path, req.path); err != nil {
		return nil, hc.answer(now, http.StatusBadRequest, err.Error())
	}
	cfg := hc.s.cfg.Load()
	be, ok := cfg.Routes.Match(req.host, path)
	if !ok {
		return nil, hc.answer(now, http.StatusNotFound, "no route for this host and path")
	}
	rec.Ingress = be.Ingress
	if hc.tls == nil && !be.NoSSLRedirect {
		if _, tlsOn := cfg.Routes.TLS(req.host); tlsOn {
			return nil, hc.redirect(now)
		}
	}
	if be.Resource != "" {
		return nil, hc.answer(now, http.StatusServiceUnavailable, "the backend is a resource backend, which Portico does not serve")
	}
	rec.Target = TargetOf(be)
	up := cfg.Upstreams[rec.Target]
	if up == nil || len(up.Addrs) == 0 {
		return nil, hc.answer(now, http.StatusServiceUnavailable, "the backend service has no ready endpoint")
	}
	return up, 0
}

// errClientBody: the client's request body could not be read.
var errClientBody = errors.New("reading the request body from the client")

// forward sends the request to an endpoint of up and relays the answer.
// Retries are those of the net/http path: the next endpoint after a
// connection failure for idempotent requests without a body, a new
// connection after a stale kept-alive one for those same requests.
func (hc *h1conn) forward(now time.Time, up *Upstream, rec *Record) int {
	replayable := hc.req.length == 0 && idempotent(hc.req.method)
	n := len(up.Addrs)
	first := up.pick()
	tries := 1
	if replayable {
		tries = min(n, 3)
	}
	var (
		c   *upConn
		err error
	)
	for i := range tries {
		addr := up.Addrs[(first+i)%n]
		rec.Endpoint, rec.Retries = addr, i
		hc.idle = hc.s.pool.list(up, (first+i)%n)
		if c, err = hc.exchange(now, addr, replayable); err == nil || !isConnectError(err) {
			break
		}
	}
	if err != nil {
		return hc.failed(now, err, rec)
	}
	return hc.respond(now, c, rec)
}

// exchange sends the request to addr and reads the response head, on a
// kept-alive connection when there is one.
func (hc *h1conn) exchange(now time.Time, addr string, replayable bool) (*upConn, error) {
	p := hc.s.pool
	c := p.get(hc.idle, now)
	if c != nil && !replayable && !c.alive() {
		// What cannot be sent again must not go on a connection the
		// endpoint has closed meanwhile.
		c.Close()
		c = nil
	}
	for {
		reused := c != nil
		if !reused {
			var err error
			if c, err = p.dial(context.Background(), addr); err != nil {
				return nil, err
			}
		}
		err := hc.send(c)
		if err == nil {
			err = hc.receive(now, c)
		} else if hc.early(now, c, err) {
			return c, nil
		}
		if err == nil {
			return c, nil
		}
		c.Close()
		if !reused || !replayable || !stale(err, c) {
			return nil, err
		}
		c = nil
	}
}

// early reports whether the endpoint answered before it took the whole
// body, sending failing with err: a 413 for an upload too large, a 401,
// then a close. That answer is the client's, not a 502. Neither
// connection can go on: the endpoint stopped reading, and what is left of
// the client's body is read through only when small.
func (hc *h1conn) early(now time.Time, c *upConn, err error) bool {
	if hc.req.length == 0 || errors.Is(err, errClientBody) || hc.receive(now, c) != nil {
		return false
	}
	c.res.close = true
	hc.keepUnlessBodyLarge()
	return true
}

// stale reports whether err on a kept-alive connection means the endpoint
// had closed it before it read the request.
func stale(err error, c *upConn) bool {
	return (errors.Is(err, errStaleWrite) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err)) && c.br.Buffered() == 0
}

// errStaleWrite: the request could not be written to the endpoint.
var errStaleWrite = errors.New("writing the request to the endpoint")

// send writes the request and its body, if any, to c.
func (hc *h1conn) send(c *upConn) error {
	hc.writeRequest(c.bw)
	for hc.bodyLeft > 0 {
		if hc.br.Buffered() == 0 {
			hc.deadline.within(time.Now(), hc.s.opts.IdleTimeout)
			if _, err := hc.br.Peek(1); err != nil {
				return errClientBody
			}
		}
		b, _ := hc.br.Peek(int(min(hc.bodyLeft, int64(hc.br.Buffered()))))
		if _, err := c.bw.Write(b); err != nil {
			return err
		}
		_, _ = hc.br.Discard(len(b))
		hc.bodyLeft -= int64(len(b))
	}
	if err := c.bw.Flush(); err != nil {
		return errors.Join(errStaleWrite, err)
	}
	return nil
}

// receive reads the response head from c within ResponseHeaderTimeout.
func (hc *h1conn) receive(now time.Time, c *upConn) error {
	c.deadline.within(now, hc.s.opts.ResponseHeaderTimeout)
	head, err := readResponseHead(c.br, c.head, &c.res)
	c.head = head
	if err != nil {
		return err
	}
	if c.res.status == http.StatusSwitchingProtocols {
		return errBadResponse("101 Switching Protocols to a request without Upgrade")
	}
	// The body may take its time: unless it is all here, no deadline.
	if !noResponseBody(hc.req.method, c.res.status) && (c.res.length < 0 || int64(c.br.Buffered()) < c.res.length) {
		c.deadline.none()
	}
	return nil
}

// writeRequest writes the request head as it goes upstream: the client's
// target byte for byte, its fields less hop-by-hop ones, and
// X-Forwarded-*, by the rules of outHeader.
func (hc *h1conn) writeRequest(w *bufio.Writer) {
	req := &hc.req
	w.WriteString(req.method)
	w.WriteByte(' ')
	w.WriteString(req.target)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(req.host)
	w.WriteString("\r\n")
	if req.hasLength {
		writeLength(w, req.length)
	}
	teTrailers, hasProto, hasHost := false, false, false
	for _, f := range req.fields {
		switch {
		case hopByHopField(f.name):
			if is(f.name, "Te") && listed([]string{f.value}, "trailers") {
				teTrailers = true
			}
			continue
		case req.connNames && namedIn(req.fields, f.name):
			continue
		case is(f.name, "X-Forwarded-For"):
			continue // written below
		case is(f.name, "X-Forwarded-Proto"):
			hasProto = true
		case is(f.name, "X-Forwarded-Host"):
			hasHost = true
		}
		if !hc.trusted && forwardingField(f.name) {
			continue
		}
		w.WriteString(f.name)
		w.WriteString(": ")
		w.WriteString(f.value)
		w.WriteString("\r\n")
	}
	if teTrailers {
		w.WriteString("Te: trailers\r\n")
	}
	w.WriteString("X-Forwarded-For: ")
	if hc.trusted {
		for _, f := range req.fields {
			if is(f.name, "X-Forwarded-For") {
				w.WriteString(f.value)
				w.WriteString(", ")
			}
		}
	}
	w.WriteString(hc.client)
	if !hc.trusted || !hasProto {
		if hc.tls != nil {
			w.WriteString("\r\nX-Forwarded-Proto: https")
		} else {
			w.WriteString("\r\nX-Forwarded-Proto: http")
		}
	}
	if !hc.trusted || !hasHost {
		w.WriteString("\r\nX-Forwarded-Host: ")
		w.WriteString(req.host)
	}
	w.WriteString("\r\n\r\n")
}

// writeLength writes a Content-Length field.
func writeLength(w *bufio.Writer, n int64) {
	var b [20]byte
	w.WriteString("Content-Length: ")
	w.Write(strconv.AppendInt(b[:0], n, 10))
	w.WriteString("\r\n")
}

// namedIn reports whether a Connection field of fields names name.
func namedIn(fields []field, name string) bool {
	for _, f := range fields {
		if is(f.name, "Connection") {
			for v := f.value; v != ""; {
				var t string
				t, v = cutComma(v)
				if is(t, name) {
					return true
				}
			}
		}
	}
	return false
}

// forwardingField is forwarding for a field name in any case.
func forwardingField(name string) bool {
	return is(name, "X-Forwarded-Proto") || is(name, "X-Forwarded-Host") || is(name, "Forwarded")
}

// respond relays the endpoint's response on c to the client and gives c
// back to the pool when it can carry another request.
func (hc *h1conn) respond(now time.Time, c *upConn, rec *Record) int {
	req, res := &hc.req, &c.res
	noBody := noResponseBody(req.method, res.status)
	chunkOut := hc.responseHead(now, res)

	r := relay{dst: hc.bw, src: c.br}
	var err error
	switch {
	case noBody:
	case res.chunked:
		err = r.copyChunked(chunkOut)
	case res.length >= 0:
		err = r.copyN(res.length)
	default:
		err = r.copyToEOF(chunkOut)
	}
	// Bytes past the end of the response (a body to HEAD, say) would be
	// read as the next request's answer: such a connection is not reused.
	if err == nil && !res.close && c.br.Buffered() == 0 {
		hc.s.pool.put(hc.idle, c, now)
	} else {
		c.Close()
	}
	if err != nil {
		// The status line is gone already: cut the client's connection so
		// that it sees a broken response, not a short one that looks whole.
		hc.closeAfter = true
		if err != errClientGone {
			rec.UpstreamError = "body"
			hc.s.log.Debug("upstream body error", "endpoint", rec.Endpoint, "err", err)
		}
		hc.bw.Reset(hc.conn) // drop what was not sent: the end must not look whole
	}
	return res.status
}

// responseHead writes the head of the endpoint's response res to the
// client and reports whether its body goes out chunked.
func (hc *h1conn) responseHead(now time.Time, res *resHead) (chunkOut bool) {
	unknown := !noResponseBody(hc.req.method, res.status) && res.length < 0 // chunked, or until the endpoint closes
	chunkOut = unknown && hc.req.minor == 1
	if unknown && hc.req.minor == 0 {
		hc.closeAfter = true // HTTP/1.0 has no other way to end the body
	}
	reason := res.reason
	if reason == "" {
		reason = http.StatusText(res.status)
	}
	hc.statusLine(now, res.status, reason, res.date)
	w := hc.bw
	for _, f := range res.fields {
		switch {
		case hopByHopField(f.name):
			if !chunkOut || !is(f.name, "Trailer") {
				continue
			}
		case res.connNames && namedIn(res.fields, f.name), is(f.name, "Server"):
			continue
		}
		w.WriteString(f.name)
		w.WriteString(": ")
		w.WriteString(f.value)
		w.WriteString("\r\n")
	}
	if res.length >= 0 {
		writeLength(w, res.length)
	}
	if chunkOut {
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	hc.endHead()
	return chunkOut
}

// failed answers a request no endpoint answered, as upstreamError does.
func (hc *h1conn) failed(now time.Time, err error, rec *Record) int {
	if errors.Is(err, errClientBody) {
		hc.closeAfter = true
		rec.UpstreamError = "canceled"
		return 499 // the client went away: nobody to answer
	}
	code, kind, reason := classify(err)
	rec.UpstreamError = kind
	if kind == "protocol" {
		hc.s.log.Debug("upstream error", "endpoint", rec.Endpoint, "err", err)
	}
	return hc.answer(now, code, reason)
}
