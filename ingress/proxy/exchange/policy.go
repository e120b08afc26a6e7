// Package exchange is the proxy's core. For every request, whatever
// protocol and front-end brought it, it decides what happens: a local
// answer, a redirect, or a plan to forward it upstream; and it keeps the
// Record of the exchange that access logs and metrics read.
//
// It does no I/O and starts no goroutine. The front-ends (the epoll loops,
// the goroutine loop, the net/http adapter for HTTP/2) parse a request,
// call Decide, and carry out what it says: they move bytes, and come back
// to the Exchange when something happens that calls for a decision (an
// attempt failed, the client's body broke off, the endpoint answered).
// Every policy lives here, once: which requests are refused, route
// matching, the redirect to HTTPS, the header policy both ways
// (hop-by-hop fields, X-Forwarded-*, X-Real-IP, X-Request-ID), which
// failures are retried and where, timeouts and limits, and the proxy's own
// answers. Its model is net/http/httputil's ReverseProxy, whose Rewrite
// step is pure and whose transport does the I/O.
package exchange

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// Settings are the proxy-wide policies. The zero value is a sane
// production setting, nginx's defaults where nginx has one.
type Settings struct {
	// ProxyProtocol are the addresses of balancers in front that send the
	// PROXY protocol (v1 or v2): their connections must start with it, and
	// are served as the client it names. Other peers are clients as they
	// are.
	ProxyProtocol []netip.Prefix
	// TrustedProxies are the client addresses whose X-Forwarded-For is
	// appended to and whose X-Forwarded-Proto, -Host, -Port, Forwarded and
	// X-Real-IP are kept; everyone else's are replaced or dropped.
	TrustedProxies []netip.Prefix
	// UnderscoresInHeaders keeps request fields whose names hold '_'
	// (nginx's underscores_in_headers). By default they are dropped: a
	// backend that reads X_Real_IP as X-Real-IP (CGI does) could be fooled
	// by a client.
	UnderscoresInHeaders bool
	// Limits are the timeouts and the body limit of every request.
	Limits Limits
	// Tries bounds the endpoints one request is tried on (ingress-nginx's
	// proxy-next-upstream-tries, default 3).
	Tries int
	// NextUpstream says which failures send a request to the next
	// endpoint (ingress-nginx's proxy-next-upstream, default "error
	// timeout").
	NextUpstream NextUpstream
	// LimitStatus answers a request over a rate limit (ingress-nginx's
	// limit-req-status-code, default 503; 429 is the other usual one).
	LimitStatus int
}

// Limits are one request's timeouts and body limit.
type Limits struct {
	// ConnectTimeout bounds connecting to an endpoint (default 5 s, as
	// ingress-nginx's proxy-connect-timeout; nginx's own is 60 s).
	ConnectTimeout time.Duration
	// SendTimeout bounds the time between two writes of the request to
	// the endpoint (proxy_send_timeout, 60 s).
	SendTimeout time.Duration
	// ReadTimeout bounds the time between two reads from the endpoint,
	// for the response head and the body (proxy_read_timeout, 60 s).
	ReadTimeout time.Duration
	// ClientBodyTimeout bounds the time between two reads of the
	// request's body from the client (client_body_timeout, 60 s): past it
	// the client gets 408.
	ClientBodyTimeout time.Duration
	// ClientSendTimeout bounds the time between two writes of the answer
	// to the client (send_timeout, 60 s): past it the connection ends.
	ClientSendTimeout time.Duration
	// TunnelIdleTimeout ends an upgraded connection (WebSocket) on which
	// neither side sent anything for this long (60 s, as nginx's
	// proxy_read_timeout does for tunnels).
	TunnelIdleTimeout time.Duration
	// MaxBodySize is the largest request body (client_max_body_size,
	// default 1 MiB); larger bodies get 413 before anything goes
	// upstream. Negative: no limit.
	MaxBodySize int64
}

// NextUpstream is a set of failures after which a request goes to the
// next endpoint.
type NextUpstream uint16

const (
	// NextOnError: the connection failed, or broke before the response
	// head came ("error").
	NextOnError NextUpstream = 1 << iota
	// NextOnTimeout: the endpoint did not connect or answer in time
	// ("timeout").
	NextOnTimeout
	// NextOnInvalidHeader: the endpoint's response head was malformed
	// ("invalid_header").
	NextOnInvalidHeader
	// NextOff: no failure is retried on another endpoint ("off").
	NextOff
	// NextOn500 … NextOn429: the endpoint answered with that status
	// ("http_500" …); the answer of the last attempt is the client's.
	NextOn500
	NextOn502
	NextOn503
	NextOn504
	NextOn403
	NextOn404
	NextOn429
	// NextNonIdempotent: requests that are not idempotent (POST, PATCH)
	// are tried again too, after a failure once sent ("non_idempotent").
	NextNonIdempotent
)

// onStatus is the condition of an endpoint's status, or 0.
func onStatus(status int) NextUpstream {
	switch status {
	case 500:
		return NextOn500
	case 502:
		return NextOn502
	case 503:
		return NextOn503
	case 504:
		return NextOn504
	case 403:
		return NextOn403
	case 404:
		return NextOn404
	case 429:
		return NextOn429
	}
	return 0
}

func (s *Settings) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	l := &s.Limits
	def(&l.ConnectTimeout, 5*time.Second)
	def(&l.SendTimeout, 60*time.Second)
	def(&l.ReadTimeout, 60*time.Second)
	def(&l.ClientBodyTimeout, 60*time.Second)
	def(&l.ClientSendTimeout, 60*time.Second)
	def(&l.TunnelIdleTimeout, 60*time.Second)
	if l.MaxBodySize == 0 {
		l.MaxBodySize = 1 << 20
	}
	if s.Tries == 0 {
		s.Tries = 3
	}
	if s.NextUpstream == 0 {
		s.NextUpstream = NextOnError | NextOnTimeout
	}
	if s.LimitStatus == 0 {
		s.LimitStatus = 503
	}
}

// Policy decides every exchange by its Settings. It is safe for
// concurrent use.
type Policy struct {
	s    Settings
	date atomic.Pointer[dateValue]
}

// NewPolicy returns the Policy of s, defaults filled in.
func NewPolicy(s Settings) *Policy {
	s.setDefaults()
	return &Policy{s: s}
}

// Settings returns the settings in force, defaults filled in.
func (p *Policy) Settings() Settings { return p.s }

// trusted reports whether a client is a trusted proxy.
func (p *Policy) trusted(a netip.Addr) bool { return in(p.s.TrustedProxies, a.Unmap()) }

// ProxyProtocolFrom reports whether a peer is a balancer that sends the
// PROXY protocol (Settings.ProxyProtocol).
func (p *Policy) ProxyProtocolFrom(peer netip.Addr) bool {
	return in(p.s.ProxyProtocol, peer.Unmap())
}

// in reports whether a is in one of ps.
func in(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// dateValue is a formatted Date value and the second it is for.
type dateValue struct {
	sec   int64
	value string
}

// Date returns the value of a Date field for now, formatted once a second.
func (p *Policy) Date(now time.Time) string {
	sec := now.Unix()
	if d := p.date.Load(); d != nil && d.sec == sec {
		return d.value
	}
	d := &dateValue{sec, now.UTC().Format(timeFormat)}
	p.date.Store(d)
	return d.value
}

const timeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// serverField is the Server field of every answer.
var serverField = h1.Field{Name: "Server", Value: "portico"}
