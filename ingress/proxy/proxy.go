// Package proxy is the ingress data plane: an HTTP and HTTPS server that
// routes every request through the current Config and forwards it straight
// to a ready endpoint of the chosen Service.
//
// The package knows nothing of Kubernetes. The controller compiles Ingresses,
// Services, EndpointSlices and Secrets into a Config and hands it to
// (*Server).Store; the Config is never modified afterwards and requests read
// it through an atomic.Pointer, so a change never blocks or tears a request.
//
// What a request gets, in order:
//
//   - 400 when its path is not one a route can judge safely (see CheckPath);
//   - 404 when no route matches;
//   - 308 to https:// when it came over plain HTTP, its host has TLS and the
//     Ingress of the matched backend did not opt out;
//   - 503 when the backend is a resource backend or has no ready endpoint;
//   - otherwise it is forwarded over HTTP/1.1 with upstream keep-alive, round
//     robin over the endpoints; a connection failure is retried on another
//     endpoint for idempotent requests without a body; what is left of it
//     answers 502, a backend that does not answer in time 504.
//
// X-Forwarded-For: the proxy is the edge, so by default it replaces whatever
// the client sent with the client's address; a client with an address in
// Options.TrustedProxies (a load balancer in front) has its list appended
// to. X-Forwarded-Proto and X-Forwarded-Host are always set by the proxy.
// Every response carries "Server: portico" and a Date.
//
// Two servers share each listener. HTTP/1.0 and HTTP/1.1, plain or over
// TLS, are served by the proxy's own loop (h1server.go): requests are
// parsed in place, forwarded over the proxy's own upstream connections and
// answered with no allocation per request on the common path, which is
// where most of the proxy's speed comes from. Whatever that loop does not
// serve itself goes to net/http's server, which applies the same rules
// through ServeHTTP: connections that choose HTTP/2 by ALPN, and an
// HTTP/1.x connection from its first request with Upgrade (WebSocket),
// Expect, a chunked body, an unusual method, target or version, for the
// rest of its life, with the bytes already read replayed. Requests that
// either server refuses (malformed, smuggling shapes, headers over
// MaxHeaderBytes) get 400 or 431 and the connection closed.
//
// On Linux, plain-HTTP connections first go to event loops on epoll
// (evloop_linux.go), one per CPU, which serve them with that same loop's
// parsing, routing and header rules for as long as their requests are of
// the common kind, and hand them to it, bytes and all, at the first that
// is not.
package proxy

import (
	"crypto/tls"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/portico-lb/portico/ingress/route"
)

// Config is one immutable snapshot of everything the proxy serves.
type Config struct {
	// Routes picks the backend of each request and the Secret of each TLS
	// server name.
	Routes *route.Table
	// Upstreams holds the ready endpoints of every service backend the
	// routes name. A target missing here has no ready endpoint.
	Upstreams map[Target]*Upstream
	// Certs holds the certificates of the Secrets the routes name that
	// could be loaded. A Secret missing here (absent or broken) is served
	// with the default certificate, so other hosts are not affected.
	Certs map[route.SecretRef]*tls.Certificate
	// DefaultCert, when set, replaces the server's own default certificate.
	DefaultCert *tls.Certificate
}

// Target is a Service port as a route names it.
type Target struct {
	Namespace, Service string
	Port               route.Port
}

// TargetOf returns the target of a service backend.
func TargetOf(b route.Backend) Target {
	return Target{Namespace: b.Namespace, Service: b.Service, Port: b.Port}
}

// Upstream is the set of ready endpoints of one Target.
type Upstream struct {
	// Addrs are "ip:port" endpoint addresses, ready to dial.
	Addrs []string
	// next is the round-robin cursor, only ever advanced atomically.
	next atomic.Uint32
	// idle caches the proxy's idle connection list of each address; it
	// is filled as requests need it. With next, the only mutable fields
	// of a Config.
	idle []atomic.Pointer[idleConns]
}

// NewUpstream returns an Upstream over addrs. Its round robin starts at a
// random endpoint: every change compiles new Upstreams, and starting each
// at the first endpoint would send the first requests after every change
// to the same pod, in every replica.
func NewUpstream(addrs ...string) *Upstream {
	u := &Upstream{Addrs: addrs, idle: make([]atomic.Pointer[idleConns], len(addrs))}
	u.next.Store(rand.Uint32())
	return u
}

// pick returns the index of the endpoint to try first.
func (u *Upstream) pick() int {
	return int((u.next.Add(1) - 1) % uint32(len(u.Addrs)))
}

// Options tune the server. The zero value is a sane production setting.
type Options struct {
	// ReadHeaderTimeout bounds the time a client may take to send its
	// request headers (default 10s): slowloris defence.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes client keep-alive connections idle this long
	// (default 60s).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the size of request headers (default 32 KiB);
	// larger requests get 431.
	MaxHeaderBytes int
	// DialTimeout bounds connecting to an endpoint (default 5s).
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an endpoint's response
	// headers once the request is sent (default 60s); past it: 504.
	ResponseHeaderTimeout time.Duration
	// MaxIdleConnsPerHost is the upstream keep-alive pool size per
	// endpoint (default 512).
	MaxIdleConnsPerHost int
	// TrustedProxies are the client addresses whose X-Forwarded-For is
	// kept and appended to; everyone else's is replaced.
	TrustedProxies []netip.Prefix
	// DefaultCert is served to TLS clients whose server name has no
	// certificate in the Config. When nil, New generates a self-signed one.
	DefaultCert *tls.Certificate
	// GoroutineLoop serves plain HTTP with a goroutine per connection
	// alone. By default, on Linux, event loops on epoll serve plain-HTTP
	// connections while their requests are of the common kind (see
	// evloop_linux.go); TLS is always served by goroutines.
	GoroutineLoop bool
	// Observe, when set, is called once for every request after it is
	// answered (metrics, access log). It must be cheap. The Record is
	// passed by value so that it stays on the handler's stack.
	Observe func(r Record)
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ReadHeaderTimeout, 10*time.Second)
	def(&o.IdleTimeout, 60*time.Second)
	def(&o.DialTimeout, 5*time.Second)
	def(&o.ResponseHeaderTimeout, 60*time.Second)
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 32 << 10
	}
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 512
	}
}

// Record describes one answered request, for metrics and logs.
type Record struct {
	Start    time.Time
	Duration time.Duration
	Method   string
	Host     string
	Path     string
	Client   string // remote address
	Proto    string
	// Ingress and Target say where the request was routed; empty when
	// nothing matched.
	Ingress string
	Target  Target
	// Endpoint is the address that answered, when one did.
	Endpoint string
	Status   int
	// UpstreamError is a short class of what went wrong talking to the
	// endpoints ("connect", "timeout", "protocol"), or empty.
	UpstreamError string
	// Retries counts the endpoints tried after the first.
	Retries int
}
