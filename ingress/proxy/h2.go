package proxy

import (
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// The HTTP/2 adapter: golang.org/x/net/http2 serves the connections that
// choose h2 by ALPN (see h1conn.handshake), and hands each stream's
// request to ServeHTTP below, which has the core decide it and carries the
// decision out like the other front-ends: the body received whole, the
// request sent over HTTP/1.1 by the blocking upstream client, the answer
// relayed as it comes.

// http2Handler serves the streams of HTTP/2 connections.
type http2Handler struct{ s *Server }

// h2stream is what one stream's exchange keeps, reused from stream to
// stream.
type h2stream struct {
	req    exchange.Request
	x      exchange.Exchange
	fields []h1.Field
	body   reqBody
	buf    []byte
}

var h2streams = sync.Pool{New: func() any { return new(h2stream) }}

func (h http2Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	// Streams run on goroutines of their own: shutdown waits for them as
	// for connections (their connection holds a count meanwhile).
	s.connsWG.Add(1)
	defer s.connsWG.Done()
	st := h2streams.Get().(*h2stream)
	defer func() {
		st.x.End() // also when the stream ends in a panic
		st.body.reset()
		h2streams.Put(st)
	}()
	start := time.Now()
	st.request(r)
	x := &st.x
	s.policy.Decide(s.cfg.Load(), &st.req, start, x)
	if x.Outcome == exchange.Authorize {
		s.authorize(r.Context(), x)
	}
	rc := http.NewResponseController(w)
	switch x.Outcome {
	case exchange.Forward:
		if x.Target.Protocol.HTTP2() {
			st.stream(s, w, rc, r)
			break
		}
		if !st.receiveBody(s, r, rc) {
			if x.Outcome == exchange.Answer {
				writeAnswer(w, x, r.Method)
			}
			break
		}
		var a upAnswer
		if x.Target.Protocol == route.HTTP {
			c := s.roundTrip(r.Context(), x, &st.body)
			st.body.reset()
			if c != nil {
				a = c
			}
		} else if rep := s.roundTripStd(r.Context(), x, bufferedBody{&st.body}); rep != nil {
			a = rep
		}
		a = s.errorPage(r.Context(), x, a)
		if a == nil {
			writeAnswer(w, x, r.Method)
			break
		}
		st.relay(s, w, rc, r, a)
	default: // an answer; the core tunnels HTTP/1.1 only
		writeAnswer(w, x, r.Method)
	}
	if obs := s.opts.Observe; obs != nil {
		obs(x.Finish(time.Now()))
	}
}

// h2conn is what the adapter knows of an HTTP/2 stream's connection,
// which the request does not say: x/net/http2 sets Request.TLS only when
// the client's :scheme says https.
type h2conn struct {
	serverName string
	local      netip.AddrPort
	peer       *exchange.Peer
}

type h2connKey struct{}

// request fills the core's view of an HTTP/2 request.
func (st *h2stream) request(r *http.Request) {
	st.fields = st.fields[:0]
	hasLength := false
	for k, vv := range r.Header {
		switch k {
		case "Content-Length": // framing is the adapter's
			hasLength = true
			continue
		case "Host": // the request is routed by its authority, the one Host upstream
			continue
		}
		for _, v := range vv {
			st.fields = append(st.fields, h1.Field{Name: k, Value: v})
		}
	}
	client, _ := netip.ParseAddrPort(r.RemoteAddr)
	length := r.ContentLength
	if r.Body == nil || r.Body == http.NoBody {
		length = 0
	}
	conn, _ := r.Context().Value(h2connKey{}).(*h2conn)
	if conn == nil {
		conn = &h2conn{}
	}
	st.req = exchange.Request{
		Method: r.Method, Target: r.RequestURI, Host: r.Host, Fields: st.fields, Proto: exchange.HTTP2,
		TLS: true, ServerName: conn.serverName, Peer: conn.peer, Client: client, Local: conn.local,
		BodyLength: length, HasLength: hasLength && length >= 0,
	}
}

// receiveBody reads the stream's body whole. It reports false when it did
// not arrive whole: the exchange then holds the answer, or the client left.
func (st *h2stream) receiveBody(s *Server, r *http.Request, rc *http.ResponseController) bool {
	x := &st.x
	st.body.start(s.opts.BodyBufferSize, s.opts.BodyTempDir)
	if st.req.BodyLength == 0 {
		return true
	}
	if cap(st.buf) == 0 {
		st.buf = make([]byte, 16<<10)
	}
	max := x.Limits.MaxBodySize
	for {
		_ = rc.SetReadDeadline(time.Now().Add(x.Limits.ClientBodyTimeout))
		n, err := r.Body.Read(st.buf[:cap(st.buf)])
		if n > 0 {
			if werr := st.body.write(st.buf[:n]); werr != nil {
				s.log.Error("cannot buffer a request body", "err", werr)
				x.BodyFailed(exchange.BodyTooLarge)
				return false
			}
			if max >= 0 && st.body.size > max {
				x.BodyFailed(exchange.BodyTooLarge)
				return false
			}
		}
		switch {
		case err == io.EOF:
			x.Record.BytesIn = st.body.size
			return true
		case err == nil:
		case isTimeout(err):
			x.BodyFailed(exchange.BodyTimeout)
			return false
		case r.Context().Err() != nil:
			x.ClientGone()
			return false
		default: // the stream's body broke its own framing (a wrong content-length)
			x.BodyFailed(exchange.BodyMalformed)
			return false
		}
	}
}

// stream carries out a plan whose endpoints speak HTTP/2 (gRPC, h2c):
// the body goes upstream as it comes, as nginx's grpc_pass sends it, so
// that both directions of a gRPC stream flow at once.
func (st *h2stream) stream(s *Server, w http.ResponseWriter, rc *http.ResponseController, r *http.Request) {
	x := &st.x
	x.SendOnce()
	body := &streamBody{r: r.Body, rc: rc, x: x, size: st.req.BodyLength}
	if st.req.BodyLength == 0 {
		body.r = http.NoBody
	}
	defer body.stop()
	a := s.roundTripStd(r.Context(), x, body)
	if a == nil {
		if body.failed != 0 {
			x.BodyFailed(body.failed)
		}
		if x.Outcome == exchange.Answer && r.Context().Err() == nil {
			writeAnswer(w, x, r.Method)
		}
		return
	}
	st.relay(s, w, rc, r, a)
}

// streamBody is a request body sent upstream as the client sends it:
// each read within ClientBodyTimeout, the whole within MaxBodySize. Go's
// client may still read it after the answer ended, when the stream is
// gone: stop ends that, and it is called before the handler returns.
type streamBody struct {
	r      io.Reader
	rc     *http.ResponseController
	x      *exchange.Exchange
	size   int64 // -1: not known before its end
	read   int64
	taken  bool
	failed exchange.BodyFailure
	// mu is held by a read; stopped: no read touches the stream any more.
	mu      sync.Mutex
	stopped bool
}

func (b *streamBody) reader() io.ReadCloser {
	if b.taken {
		return nil
	}
	b.taken = true
	return b
}

func (b *streamBody) length() int64 { return b.size }

func (b *streamBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return 0, io.ErrClosedPipe
	}
	lim := &b.x.Limits
	_ = b.rc.SetReadDeadline(time.Now().Add(lim.ClientBodyTimeout))
	n, err := b.r.Read(p)
	b.read += int64(n)
	switch {
	case lim.MaxBodySize >= 0 && b.read > lim.MaxBodySize:
		b.failed = exchange.BodyTooLarge
		return 0, errBodyTooLarge
	case err != nil && isTimeout(err):
		b.failed = exchange.BodyTimeout
	case err == io.EOF:
		b.x.Record.BytesIn = b.read
	}
	return n, err
}

// Close leaves the client's stream as it is: the handler's return ends it.
func (b *streamBody) Close() error { return nil }

// stop ends a read waiting on the client, and every later one.
func (b *streamBody) stop() {
	_ = b.rc.SetReadDeadline(time.Unix(1, 0))
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
}

var errBodyTooLarge = errors.New("the request body is larger than the limit")

// relay writes the endpoint's answer a to the stream.
func (st *h2stream) relay(s *Server, w http.ResponseWriter, rc *http.ResponseController, r *http.Request, a upAnswer) {
	x := &st.x
	res := a.response()
	h := w.Header()
	for _, f := range x.ResponseFields(res, time.Now()) {
		k := http.CanonicalHeaderKey(f.Name)
		h[k] = append(h[k], f.Value)
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // relayed as it came: no sniffing
	}
	if n := res.SentLength(); n >= 0 {
		h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
	}
	// A client that goes away must not keep the endpoint's connection.
	stop := a.cutOn(r.Context())
	w.WriteHeader(res.Status)
	flush := func() error {
		_ = rc.SetWriteDeadline(time.Now().Add(x.Limits.ClientSendTimeout))
		return rc.Flush()
	}
	var err error
	for err == nil {
		var p h1.Piece
		p, err = a.next(x.Limits.ReadTimeout, flush)
		if err != nil {
			break
		}
		switch p.Kind {
		case h1.Data:
			_ = rc.SetWriteDeadline(time.Now().Add(x.Limits.ClientSendTimeout))
			n, werr := w.Write(p.Data)
			x.Record.BytesOut += int64(n)
			if werr != nil {
				err = errClientGone
			}
		case h1.Trailer:
			if exchange.ForwardTrailer(p.Field.Name) {
				k := http.TrailerPrefix + http.CanonicalHeaderKey(p.Field.Name)
				h[k] = append(h[k], p.Field.Value)
			}
		case h1.End:
			if !stop() { // the client left as the body ended
				err = errClientGone
				break
			}
			a.done(s, true, x.Record.Start)
			return
		}
	}
	stop()
	a.done(s, false, x.Record.Start)
	if err == errClientGone || r.Context().Err() != nil {
		x.ClientGone()
		return
	}
	x.BodyBroken()
	panic(http.ErrAbortHandler) // a reset stream, not an answer that looks whole
}

// writeAnswer writes the proxy's own answer to an HTTP/2 stream.
func writeAnswer(w http.ResponseWriter, x *exchange.Exchange, method string) {
	h := w.Header()
	for _, f := range x.AnswerFields(time.Now()) {
		h[f.Name] = append(h[f.Name], f.Value)
	}
	h["Content-Length"] = []string{strconv.Itoa(len(x.Body))}
	w.WriteHeader(x.Status)
	if method != "HEAD" {
		n, _ := io.WriteString(w, x.Body)
		x.Record.BytesOut += int64(n)
	}
}
