package exchange

import (
	"encoding/hex"
	"strings"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// The header policy, both ways, for every protocol.
//
// Upstream, a request carries the client's fields less the hop-by-hop ones
// (RFC 9110, 7.6.1, and those its Connection names), less Expect (the proxy
// answers 100 Continue itself and sends the body whole), Proxy (httpoxy)
// and, by default, names with '_'. The proxy is the edge: a client's
// X-Forwarded-For is replaced by the client's address, its
// X-Forwarded-Proto, -Host, -Port, Forwarded and X-Real-IP dropped and set
// anew; a trusted proxy's list is appended to and its fields kept. Every
// request carries an X-Request-ID: the client's when it sent a sane one,
// else a new random one.
//
// Downstream, an answer carries the endpoint's fields less the hop-by-hop
// ones, "Server: portico" instead of the endpoint's Server, and a Date.

// hopByHop reports the request fields that belong to one connection, or
// that the proxy consumes.
func hopByHop(name string) bool {
	switch len(name) {
	case 2:
		return h1.Is(name, "Te")
	case 5:
		return h1.Is(name, "Proxy")
	case 6:
		return h1.Is(name, "Expect")
	case 7:
		return h1.Is(name, "Trailer") || h1.Is(name, "Upgrade")
	case 10:
		return h1.Is(name, "Connection") || h1.Is(name, "Keep-Alive")
	case 14:
		return h1.Is(name, "HTTP2-Settings")
	case 16:
		return h1.Is(name, "Proxy-Connection")
	case 17:
		return h1.Is(name, "Transfer-Encoding")
	case 18:
		return h1.Is(name, "Proxy-Authenticate")
	case 19:
		return h1.Is(name, "Proxy-Authorization")
	}
	return false
}

// forwarded says which fields the proxy sets about the client, and
// whether a trusted proxy sent them already.
type forwarded struct{ proto, host, port, realIP bool }

// note notes that a trusted proxy sent the forwarding field name.
func (f *forwarded) note(name string) {
	switch {
	case h1.Is(name, "X-Forwarded-Proto"):
		f.proto = true
	case h1.Is(name, "X-Forwarded-Host"):
		f.host = true
	case h1.Is(name, "X-Forwarded-Port"):
		f.port = true
	case h1.Is(name, "X-Real-Ip"):
		f.realIP = true
	}
}

// forwarding reports the fields in which a proxy tells what it saw of the
// client (X-Forwarded-For apart: it is appended to).
func forwarding(name string) bool {
	switch len(name) {
	case 9:
		return h1.Is(name, "Forwarded") || h1.Is(name, "X-Real-Ip")
	case 16:
		return h1.Is(name, "X-Forwarded-Host") || h1.Is(name, "X-Forwarded-Port")
	case 17:
		return h1.Is(name, "X-Forwarded-Proto")
	}
	return false
}

// forwardHead writes x.Out, the request head as it goes upstream.
func (p *Policy) forwardHead(req *Request, x *Exchange) {
	out := &x.Out
	out.Method, out.Target, out.Host = req.Method, req.Target, req.Host
	out.Body = req.BodyLength != 0 || req.HasLength
	trusted := x.client.trusted
	var seen forwarded
	teTrailers, id := false, ""
	xff := -1 // where the trusted proxies' X-Forwarded-For starts in scratch
	cookies := 0
	for _, f := range req.Fields {
		switch {
		case hopByHop(f.Name):
			teTrailers = teTrailers || h1.Is(f.Name, "Te") && h1.HasToken(f.Value, "trailers")
			continue
		case req.ConnNames && h1.Listed(req.Fields, "Connection", f.Name):
			continue
		case !p.s.UnderscoresInHeaders && strings.IndexByte(f.Name, '_') >= 0:
			continue
		case clientCertField(f.Name): // only the proxy says what it verified
			continue
		case h1.Is(f.Name, "X-Forwarded-For"):
			if trusted {
				if xff < 0 {
					xff = len(x.scratch)
				}
				x.scratch = append(x.scratch, f.Value...)
				x.scratch = append(x.scratch, ", "...)
			}
			continue
		case forwarding(f.Name):
			if !trusted {
				continue
			}
			seen.note(f.Name)
		case h1.Is(f.Name, "X-Request-Id"):
			if id != "" || !validID(f.Value) {
				continue
			}
			id = f.Value
		case h1.Is(f.Name, "Cookie"):
			cookies++
		}
		out.Fields = append(out.Fields, f)
	}
	if req.Proto == HTTP2 && cookies > 1 {
		x.joinCookies() // HTTP/2 splits them; HTTP/1.1 wants one (RFC 9113, 8.2.3)
	}
	add := func(name, value string) { out.Fields = append(out.Fields, h1.Field{Name: name, Value: value}) }
	// gRPC servers require "TE: trailers"; nginx's grpc_pass sends it
	// whatever the client did.
	if teTrailers || x.Target.Protocol.GRPC() {
		add("Te", "trailers")
	}
	if x.Outcome == Tunnel {
		add("Connection", "Upgrade")
		add("Upgrade", req.Upgrade)
	}
	if xff < 0 {
		xff = len(x.scratch)
	}
	x.scratch = append(x.scratch, x.client.ip...)
	add("X-Forwarded-For", view(x.scratch[xff:]))
	if !seen.proto {
		add("X-Forwarded-Proto", scheme(req.TLS))
	}
	if !seen.host {
		add("X-Forwarded-Host", req.Host)
	}
	if !seen.port {
		add("X-Forwarded-Port", port(req.Host, req.TLS))
	}
	if !seen.realIP {
		add("X-Real-IP", x.client.ip)
	}
	if id == "" {
		start := len(x.scratch)
		x.scratch = x.ids.append(x.scratch)
		id = view(x.scratch[start:])
		add("X-Request-ID", id)
	}
	x.Record.RequestID = id
}

// joinCookies makes the Cookie fields of x.Out one, their values joined
// by "; ", where the first was.
func (x *Exchange) joinCookies() {
	start := len(x.scratch)
	first := -1
	kept := x.Out.Fields[:0]
	for i, f := range x.Out.Fields {
		if h1.Is(f.Name, "Cookie") {
			if first >= 0 {
				x.scratch = append(x.scratch, "; "...)
			} else {
				first = len(kept)
				kept = append(kept, f)
			}
			x.scratch = append(x.scratch, f.Value...)
			continue
		}
		kept = append(kept, x.Out.Fields[i])
	}
	kept[first].Value = view(x.scratch[start:])
	x.Out.Fields = kept
}

func scheme(tls bool) string {
	if tls {
		return "https"
	}
	return "http"
}

// port is the port the client asked for: the Host's, else the scheme's.
func port(host string, tls bool) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") && i+1 < len(host) {
		return host[i+1:]
	}
	if tls {
		return "443"
	}
	return "80"
}

// validID reports whether a client's X-Request-ID is kept: 1 to 128
// visible ASCII characters, none of them a comma.
func validID(v string) bool {
	if v == "" || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f || c == ',' {
			return false
		}
	}
	return true
}

// ForwardTrailer reports whether a trailer field of an endpoint's answer
// is passed on: not one that belongs to a connection, nor one RFC 9110
// (6.5.1) forbids in trailers because clients act on it in the head only
// or would read it there (framing, routing, authentication, caching,
// cookies, the content's type and coding): a backend must not set a
// cookie, or change what the answer is, after the head.
func ForwardTrailer(name string) bool {
	if hopByHop(name) {
		return false
	}
	for _, f := range trailerForbidden {
		if len(f) == len(name) && h1.Is(name, f) {
			return false
		}
	}
	return true
}

var trailerForbidden = []string{
	"Content-Length", "Content-Type", "Content-Encoding", "Content-Range", "Trailer", "Host",
	"Authorization", "WWW-Authenticate", "Proxy-Authenticate", "Set-Cookie", "Cookie",
	"Cache-Control", "Expires", "Age", "Date", "Vary", "Location", "Retry-After",
}

// responseHopByHop reports the response fields that belong to one
// connection.
func responseHopByHop(name string) bool {
	return hopByHop(name) && !h1.Is(name, "Expect") && !h1.Is(name, "Proxy")
}

// ResponseFields returns the fields of the client's answer for the
// endpoint's response head res: the endpoint's fields less the hop-by-hop
// ones and those its Connection names, "Server: portico" first, and a
// Date when it sent none. A chunked answer keeps its Trailer field (the
// trailers follow it), a switch to WebSocket its Connection and Upgrade.
// A front-end adds the framing.
func (x *Exchange) ResponseFields(res *h1.Response, now time.Time) []h1.Field {
	x.fields = append(x.fields[:0], serverField)
	for _, f := range res.Fields {
		switch {
		case h1.Is(f.Name, "Server"):
			continue
		case h1.Is(f.Name, "Trailer"):
			if !res.Chunked {
				continue
			}
		case responseHopByHop(f.Name):
			continue
		case res.ConnNames && h1.Listed(res.Fields, "Connection", f.Name):
			continue
		case x.cors != nil && corsField(f.Name):
			continue // the route's policy replaces the endpoint's
		}
		x.fields = append(x.fields, f)
	}
	if x.cors != nil {
		x.fields = x.cors.fields(x.fields, x.corsOK, false)
	}
	x.fields = x.setCookie(x.fields, now)
	if !res.Date {
		x.fields = append(x.fields, h1.Field{Name: "Date", Value: x.policy.Date(now)})
	}
	if res.Status == 101 {
		x.fields = append(x.fields, h1.Field{Name: "Connection", Value: "Upgrade"}, h1.Field{Name: "Upgrade", Value: res.Upgrade})
	}
	return x.fields
}

// idSource makes request IDs: 128 random bits as 32 hex digits.
type idSource struct {
	state [4]uint64
	ready bool
}

func (s *idSource) append(b []byte) []byte {
	if !s.ready {
		seed(&s.state)
		s.ready = true
	}
	var raw [16]byte
	for i := range 2 {
		v := s.next()
		for j := range 8 {
			raw[i*8+j] = byte(v >> (8 * j))
		}
	}
	return hex.AppendEncode(b, raw[:])
}

// next is xoshiro256**: fast, and unique enough for IDs once seeded from
// the operating system.
func (s *idSource) next() uint64 {
	st := &s.state
	r := rotl(st[1]*5, 7) * 9
	t := st[1] << 17
	st[2] ^= st[0]
	st[3] ^= st[1]
	st[1] ^= st[2]
	st[0] ^= st[3]
	st[2] ^= t
	st[3] = rotl(st[3], 45)
	return r
}

func rotl(x uint64, k uint) uint64 { return x<<k | x>>(64-k) }
