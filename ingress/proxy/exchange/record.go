package exchange

import (
	crand "crypto/rand"
	"encoding/binary"
	"net/netip"
	"strings"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// Record describes one exchange, for access logs and metrics. The core
// fills what it decides; the front-ends add what they measure.
type Record struct {
	Start    time.Time
	Duration time.Duration
	Method   string
	Host     string
	// Path is the decoded path the request was routed by.
	Path   string
	Client string // the client's IP address
	Proto  string
	// Route is "namespace/name" of the Ingress that routed the request;
	// Target the Service port. Both empty when nothing matched.
	Route  string
	Target Target
	// Endpoint is the endpoint of the last attempt.
	Endpoint string
	// Status is the client's; UpstreamStatus the endpoint's, 0 when none
	// answered.
	Status, UpstreamStatus int
	// UpstreamError is a short class of what went wrong with the request:
	// "connect", "timeout", "protocol" (with the endpoints), "body" (the
	// endpoint's body broke off), "canceled" (the client left), "client"
	// (the client's body broke off), or empty.
	UpstreamError string
	// Attempts counts the endpoints tried (a retry on a fresh connection
	// to the same endpoint included in its attempt).
	Attempts int
	// UpstreamTime is from the first attempt to the last response head.
	UpstreamTime time.Duration
	// BytesIn is the request body's size, BytesOut what the client was
	// sent: head and body.
	BytesIn, BytesOut int64
	// RequestID is the X-Request-ID sent upstream.
	RequestID string
	// URI is the request-target as received; Referer and UserAgent the
	// fields of those names, for nginx's combined log format.
	URI, Referer, UserAgent string
}

// Finish ends x (see End) and its Record at now, and returns the Record with every string copied
// off the front-end's buffers, ready to outlive the request.
func (x *Exchange) Finish(now time.Time) Record {
	x.End()
	r := x.Record
	r.Duration = now.Sub(r.Start)
	if r.Host != x.lastHost {
		x.lastHost = strings.Clone(r.Host)
	}
	r.Host = x.lastHost
	r.Method = constant(r.Method)
	r.Path = strings.Clone(r.Path)
	r.RequestID = strings.Clone(r.RequestID)
	r.URI = strings.Clone(r.URI)
	r.Referer = strings.Clone(r.Referer)
	r.UserAgent = strings.Clone(r.UserAgent)
	return r
}

// constant returns the common methods as constants, others copied.
func constant(m string) string {
	for _, k := range [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		if m == k {
			return k
		}
	}
	return strings.Clone(m)
}

// Refuse makes x the answer to a request head the codec refused (e's
// status and reason); the connection ends after it. client is the peer.
func (p *Policy) Refuse(e *h1.Error, client netip.AddrPort, start time.Time, x *Exchange) {
	x.begin(p, &Request{Client: client, Proto: HTTP11}, start)
	x.answer(e.Status, e.Reason)
	x.Close = true
}

// BodyFailure is how a request's body failed to arrive whole.
type BodyFailure uint8

const (
	// BodyTimeout: the client stopped sending it (ClientBodyTimeout).
	BodyTimeout BodyFailure = iota + 1
	// BodyMalformed: its chunked framing is broken.
	BodyMalformed
	// BodyTooLarge: it outgrew MaxBodySize.
	BodyTooLarge
)

// BodyFailed makes x the answer to a request whose body did not arrive
// whole: 408, 400 or 413, and the connection ends after it. Nothing of the
// request went upstream.
func (x *Exchange) BodyFailed(f BodyFailure) {
	switch f {
	case BodyTimeout:
		x.answer(408, "the request body did not arrive in time")
	case BodyMalformed:
		x.answer(400, "the request body's chunked framing is malformed")
	case BodyTooLarge:
		x.answer(413, "the request body is larger than the limit")
	}
	x.Record.UpstreamError = "client"
	x.Close = true
}

// ClientGone records that the client left before its answer was complete:
// there is nobody to answer (499, as nginx logs it) unless the answer had
// begun.
func (x *Exchange) ClientGone() {
	if x.Record.Status == 0 || x.Outcome != Answer && x.Record.UpstreamStatus == 0 {
		x.Record.Status = 499
	}
	x.Record.UpstreamError = "canceled"
	x.Close = true
}

// BodyBroken records that the endpoint's body broke off after its head
// went to the client: the client's connection is cut.
func (x *Exchange) BodyBroken() {
	x.Record.UpstreamError = "body"
	x.Close = true
}

// seed fills s from the operating system's random source.
func seed(s *[4]uint64) {
	var b [32]byte
	_, _ = crand.Read(b[:]) // never fails on Linux (see crypto/rand.Read)
	for i := range s {
		s[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	if s[0]|s[1]|s[2]|s[3] == 0 {
		s[0] = 1
	}
}
