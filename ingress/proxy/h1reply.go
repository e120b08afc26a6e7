package proxy

import (
	"net/netip"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// What the two HTTP/1.x front-ends, the event loops and the goroutine
// loop, share of a client connection: the core's view of a parsed request,
// and how answers are framed for the client. Each loop only moves the
// bytes.

// h1Request is the core's view of a parsed HTTP/1.x request.
func h1Request(r *h1.Request, tls bool, serverName string, client, local netip.AddrPort) exchange.Request {
	proto := exchange.HTTP11
	if r.Minor == 0 {
		proto = exchange.HTTP10
	}
	length := r.Length
	if r.Chunked {
		length = -1
	}
	target := r.URI // an absolute-form target's origin part; its authority is Host
	if r.Form != h1.OriginForm && r.Form != h1.AbsoluteForm {
		target = r.Target
	}
	return exchange.Request{
		Method: r.Method, Target: target, Host: r.Host, Fields: r.Fields, Proto: proto,
		TLS: tls, ServerName: serverName, Client: client, Local: local,
		BodyLength: length, HasLength: r.HasLength, Upgrade: r.Upgrade, ConnNames: r.ConnNames, Continue: r.Continue,
	}
}

// h1Reply frames the answer to one request of an HTTP/1.x connection.
type h1Reply struct {
	req *h1.Request
	// closeAfter: the connection ends after this answer.
	closeAfter bool
	// chunked: the body being relayed goes out chunked; trailers: its
	// trailer section began.
	chunked, trailers bool
}

// start begins the answer to req: the connection ends after it when the
// client asked, or the server is closing.
func (r *h1Reply) start(req *h1.Request, closing bool) {
	*r = h1Reply{req: req, closeAfter: req.Close || closing}
}

// connection is the Connection option an answer's head ends with.
func (r *h1Reply) connection(x *exchange.Exchange, closing bool) string {
	if x.Close || closing {
		r.closeAfter = true
	}
	switch {
	case r.closeAfter:
		return h1.Close
	case r.req.Minor == 0:
		return h1.KeepAlive
	}
	return ""
}

// answer appends the exchange's answer of the proxy's own.
func (r *h1Reply) answer(out []byte, x *exchange.Exchange, closing bool, now time.Time) []byte {
	n := len(out)
	out = h1.AppendResponseHead(out, r.req.Minor, x.Status, h1.StatusText(x.Status), x.AnswerFields(now), int64(len(x.Body)), false, r.connection(x, closing))
	if r.req.Method != "HEAD" {
		out = append(out, x.Body...)
	}
	x.Record.BytesOut += int64(len(out) - n)
	return out
}

// head appends the head of the endpoint's answer res, and sets up how its
// body goes out: as it came when its length is known; chunked to HTTP/1.1
// when it is not; to HTTP/1.0, until the connection ends.
func (r *h1Reply) head(out []byte, x *exchange.Exchange, res *h1.Response, closing bool, now time.Time) []byte {
	unknown := !h1.NoBody(r.req.Method, res.Status) && res.Length < 0
	r.chunked = unknown && r.req.Minor == 1
	r.closeAfter = r.closeAfter || unknown && r.req.Minor == 0
	reason := res.Reason
	if reason == "" {
		reason = h1.StatusText(res.Status)
	}
	n := len(out)
	out = h1.AppendResponseHead(out, r.req.Minor, res.Status, reason, x.ResponseFields(res, now), res.SentLength(), r.chunked, r.connection(x, closing))
	x.Record.BytesOut += int64(len(out) - n)
	return out
}

// piece appends what the client gets of a piece of the endpoint's body.
func (r *h1Reply) piece(out []byte, x *exchange.Exchange, p h1.Piece) []byte {
	n := len(out)
	switch p.Kind {
	case h1.Data:
		if r.chunked {
			out = h1.AppendChunk(out, p.Data)
		} else {
			out = append(out, p.Data...)
		}
	case h1.Trailer:
		if r.chunked && exchange.ForwardTrailer(p.Field.Name) {
			if !r.trailers {
				out = append(out, "0\r\n"...)
				r.trailers = true
			}
			out = h1.AppendFields(out, []h1.Field{p.Field})
		}
	case h1.End:
		switch {
		case r.trailers:
			out = append(out, "\r\n"...)
		case r.chunked:
			out = h1.AppendLastChunk(out, nil)
		}
	}
	x.Record.BytesOut += int64(len(out) - n)
	return out
}
