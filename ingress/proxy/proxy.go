// Package proxy is the ingress data plane: the front-ends that take
// HTTP and HTTPS connections and carry out, for every request, what the
// exchange core decides.
//
// One request takes one path through the code, whatever its protocol:
//
//	bytes → front-end → codec (h1) → exchange.Decide → answer │ redirect │ plan
//	      → the front-end carries out the plan (receive the body, dial,
//	        send, retry as the plan says, relay the answer) → Record
//
// The core (package exchange) owns every policy: route match, target
// checks, the header policy, which failures are retried and where,
// timeouts and limits, and the proxy's own answers. The codec (package h1)
// owns HTTP/1.x framing. The front-ends here own only I/O:
//
//   - the event loops (evloop_linux.go): on Linux, plain-HTTP connections
//     are served by one epoll loop per CPU, as nginx's workers serve them;
//   - the goroutine loop (h1conn.go): HTTP/1.x over TLS, WebSocket
//     tunnels (which an event loop hands over, connection and all), and
//     plain HTTP where there are no event loops (Options.GoroutineLoop);
//   - the HTTP/2 adapter (h2.go): connections that choose h2 by ALPN are
//     served by golang.org/x/net/http2, whose handler hands each stream's
//     request to the core like any other.
//
// Every front-end receives a request's body whole before it takes an
// upstream connection (in memory up to Options.BodyBufferSize, the rest
// in an unlinked temporary file), as nginx buffers bodies: a slow upload
// never holds an endpoint's connection, a malformed chunked body never
// reaches one, and a retried request carries all of its body. Upstream,
// every request is HTTP/1.1 with keep-alive; a pooled connection that
// became readable while idle (bytes past a response, or its end) is
// closed, never reused.
//
// The package knows nothing of Kubernetes. The controller compiles
// Ingresses, Services, EndpointSlices and Secrets into an exchange.Config
// and hands it to (*Server).Store; the Config is never modified afterwards
// and requests read it through an atomic.Pointer, so a change never blocks
// or tears a request.
package proxy

import (
	"crypto/tls"
	"os"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// Options tune the server. The zero value is a sane production setting.
type Options struct {
	// Policy is the core's: trusted proxies, timeouts, the body limit,
	// retries (see exchange.Settings).
	Policy exchange.Settings
	// ReadHeaderTimeout bounds the time a client may take to send its
	// request head (default 10 s; nginx's client_header_timeout is 60 s,
	// and a slow head is the slowloris attack).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes client keep-alive connections idle this long
	// (default 60 s).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request head (default 32 KiB, as nginx's
	// large_client_header_buffers 4 8k); larger ones get 431.
	MaxHeaderBytes int
	// MaxConnections bounds the connections the server holds at once,
	// clients' and endpoints', as nginx's worker_connections does
	// (default 16384): one client more is closed as soon as it is
	// accepted, one endpoint more is an attempt that failed to connect;
	// either is logged at most once a second and counted (see Stats).
	MaxConnections int
	// BodyBufferSize is how much of a request body is kept in memory
	// (default 8 KiB, as nginx's client_body_buffer_size on x86-64); the
	// rest goes to an unlinked file in BodyTempDir (default os.TempDir())
	// until the body is whole.
	BodyBufferSize int
	BodyTempDir    string
	// MaxIdleConnsPerHost is the upstream keep-alive pool size per
	// endpoint (default 512).
	MaxIdleConnsPerHost int
	// DefaultCert is served to TLS clients whose server name has no
	// certificate in the Config. When nil, New generates a self-signed one.
	DefaultCert *tls.Certificate
	// GoroutineLoop serves plain HTTP with a goroutine per connection
	// alone, without the event loops.
	GoroutineLoop bool
	// Observe, when set, is called once for every exchange after it ends
	// (metrics, access log). It must be cheap.
	Observe func(r exchange.Record)
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ReadHeaderTimeout, 10*time.Second)
	def(&o.IdleTimeout, 60*time.Second)
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 32 << 10
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = 16384
	}
	if o.BodyBufferSize == 0 {
		o.BodyBufferSize = 8 << 10
	}
	if o.BodyTempDir == "" {
		o.BodyTempDir = os.TempDir()
	}
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 512
	}
}
