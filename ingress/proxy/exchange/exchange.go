package exchange

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// Proto is the protocol a request came by.
type Proto uint8

const (
	HTTP10 Proto = iota
	HTTP11
	HTTP2
)

func (p Proto) String() string {
	switch p {
	case HTTP10:
		return "HTTP/1.0"
	case HTTP11:
		return "HTTP/1.1"
	}
	return "HTTP/2.0"
}

// Request is a parsed request head as the core sees it, whatever its
// protocol. Its strings may point into a front-end's buffers: they are
// read during Decide and while the exchange lasts, never kept after.
type Request struct {
	Method string
	// Target is the request-target in origin form ("/path?query") as
	// received, "*", or CONNECT's authority. An HTTP/1.x front-end gives
	// an absolute-form target's origin part, and its authority as Host.
	Target string
	// Host is the authority: the Host field or HTTP/2's :authority.
	Host string
	// Fields are the header fields, framing fields (Host,
	// Content-Length, Transfer-Encoding) left out.
	Fields []h1.Field
	Proto  Proto
	// TLS: the request came over TLS; ServerName is the SNI it asked for.
	TLS        bool
	ServerName string
	// Peer is what the TLS handshake received of the client's
	// certificates; nil when it sent none.
	Peer *Peer
	// Client is the peer's address; Local the listener's.
	Client, Local netip.AddrPort
	// BodyLength is the body's announced length: 0 for none, -1 when it
	// is not known before its end (chunked, an HTTP/2 stream).
	// HasLength: the length was stated (Content-Length: 0 included).
	BodyLength int64
	HasLength  bool
	// Upgrade is the protocol an HTTP/1.1 request asks to switch to
	// (Upgrade with Connection: upgrade).
	Upgrade string
	// ConnNames: a Connection field names other fields, hop-by-hop too.
	ConnNames bool
	// Continue: the client waits for 100 Continue before its body.
	Continue bool
	// Handed: another front-end decided this request already and handed
	// it over to be carried out (an event loop, for a tunnel or an
	// endpoint spoken to by Go's client); its rate limits were charged.
	Handed bool
}

// Outcome is what Decide made of a request.
type Outcome uint8

const (
	// Answer: the proxy answers itself (Status, AnswerFields, Body).
	Answer Outcome = iota + 1
	// Forward: the request goes to the Upstream as Out says; its body,
	// if any, is received whole first.
	Forward
	// Tunnel: a WebSocket upgrade: Out goes to the Upstream, and on a
	// 101 both connections are joined.
	Tunnel
	// Authorize: the route's authentication service is asked first
	// (AuthOut, to AuthURL); its answer goes to Authorized, which makes
	// the Outcome one of the others (extauth.go).
	Authorize
)

// Exchange is one request's decision, plan and record. A front-end keeps
// one per connection (or stream) and reuses it: its buffers are kept
// from request to request, so that a decision allocates nothing.
type Exchange struct {
	Outcome Outcome

	// The proxy's own answer, when Outcome is Answer or after a failure:
	// the status, its fields (Content-Type, Location, Allow, ... but not
	// Server and Date, see AnswerFields), and a text body.
	Status int
	Body   string
	// Close: the connection must end after this exchange (the request's
	// framing cannot be trusted, or its body was left unread).
	Close bool

	// The plan of a forwarded request.
	Target   Target
	Upstream *Upstream
	// BackendTLS is how the endpoints are spoken to over TLS, when the
	// Target's Protocol says TLS and its Ingress sets how; nil: nginx's
	// defaults (see BackendTLS).
	BackendTLS *BackendTLS
	// Out is the request head to send.
	Out Head
	// AuthOut is the subrequest to the authentication service, when
	// Outcome is Authorize.
	AuthOut Head
	// Limits are this request's timeouts and body limit.
	Limits Limits
	// Continue: send the client 100 Continue before reading its body.
	Continue bool

	Record Record

	policy   *Policy
	method   string
	fields   []h1.Field // the answer's fields, or the response's
	cors     *CORS      // the route's CORS policy, when the request's origin is allowed
	corsOK   string     // its Access-Control-Allow-Origin
	scratch  []byte     // values the core writes: X-Forwarded-For, X-Request-ID, a decoded path
	attempt  attempt
	client   clientCache
	lastHost string // the last Host given to a Record, copied
	ids      idSource
	sticky   sticky     // affinity.go
	held     *ConnLimit // the limit x's request is counted in, until End
	heldBy   netip.Addr
	peer     *peerCheck // the client's certificate, told upstream (clientcert.go)
	errors   errorPlan  // errorpage.go
	auth     authStep   // extauth.go
}

// Head is a request head to send upstream. Fields are the header fields
// but Host and Content-Length; Body says whether a Content-Length of the
// received body goes with it (also when it is 0).
type Head struct {
	Method, Target, Host string
	Fields               []h1.Field
	Body                 bool
}

// clientCache holds what the core derived from the last client address
// seen by this Exchange: a connection's requests all come from one.
type clientCache struct {
	addr    netip.AddrPort
	ip      string
	trusted bool
}

// Decide decides what becomes of req under cfg, into x. start is when the
// request began, for its Record.
func (p *Policy) Decide(cfg *Config, req *Request, start time.Time, x *Exchange) {
	x.begin(p, req, start)
	p.decide(cfg, req, x)
	if x.auth.ext != nil {
		p.authorize(req, x) // what was decided waits for the service's word
	}
	if x.Outcome == Answer && req.BodyLength != 0 && (req.BodyLength < 0 || req.BodyLength > MaxDiscard || req.Continue) {
		// The body is not forwarded. One of known, small length is read
		// through to keep the connection; any other ends it (and a
		// client waiting for 100 Continue may not send it at all).
		x.Close = true
	}
}

func (p *Policy) decide(cfg *Config, req *Request, x *Exchange) {
	// A method or a Host that is not one could read otherwise upstream,
	// whatever protocol brought it (HTTP/2 carries any bytes in them).
	if !h1.ValidToken(req.Method) {
		x.answer(400, "the method is not a token")
		return
	}
	if !h1.ValidHost(req.Host) {
		x.answer(400, "invalid Host")
		return
	}
	switch req.Method {
	case "CONNECT":
		x.answer(405, "CONNECT is not supported", allowField)
		return
	case "TRACE":
		x.answer(405, "TRACE is not allowed", allowField) // as nginx: it would echo credentials
		return
	}
	if req.Target == "*" {
		if req.Method == "OPTIONS" {
			x.answer(200, "", allowField)
		} else {
			x.answer(400, "\"*\" is a target for OPTIONS only")
		}
		return
	}
	path, err := x.checkTarget(req.Target)
	if err != "" {
		x.answer(400, err)
		return
	}
	x.Record.Path = path
	if p.fromToWWW(cfg, req, path, x) {
		return
	}
	be, ok := cfg.Routes.Match(req.Host, path)
	if !ok {
		x.answer(404, "no route for this host and path")
		return
	}
	x.Record.Route = be.Ingress
	next, tries := p.s.NextUpstream, p.s.Tries
	r := cfg.Rules[be.Ingress]
	if r != nil && r.ClientAuth != nil && req.TLS && !x.clientCert(cfg, r.ClientAuth, req) {
		return // first, as nginx checks the handshake's certificate before anything
	}
	if r != nil {
		// Access first: a refused client learns nothing of the route,
		// not even where it redirects.
		who := p.clientOf(req, x)
		if why := r.admit(who); why != "" {
			x.answer(403, why)
			return
		}
		if !req.Handed && r.limited(who, x.Record.Start) {
			x.answer(p.s.LimitStatus, "too many requests from this address")
			return
		}
		if !r.admitConn(who, x) {
			x.answer(p.s.LimitStatus, "too many requests in flight from this address")
			return
		}
		if r.RedirectCode != 0 {
			x.answer(r.RedirectCode, "", h1.Field{Name: "Location", Value: r.RedirectURL})
			return
		}
		r.apply(&x.Limits)
		over(&next, r.NextUpstream)
		over(&tries, r.Tries)
	}
	if p.toHTTPS(cfg, req, be, r, x) {
		x.redirect(308, "https", req.Target)
		return
	}
	if r != nil && r.ClientAuth != nil && !req.TLS && !x.clientCert(cfg, r.ClientAuth, req) {
		return // plain HTTP that was not redirected carries no certificate
	}
	if r != nil && r.AppRoot != "" && path == "/" {
		x.redirect(302, x.scheme(req), r.AppRoot)
		return
	}
	if r != nil && r.CORS != nil {
		if allow := r.CORS.allows(fieldValue(req.Fields, "Origin")); allow != "" {
			if req.Method == "OPTIONS" { // a preflight, answered here as ingress-nginx does
				x.answer(204, "", r.CORS.fields(nil, allow, true)...)
				return
			}
			x.cors, x.corsOK = r.CORS, allow
		}
	}
	if r != nil && r.Auth != nil && !p.authenticate(r.Auth, req, x) {
		return
	}
	if r != nil && r.ExternalAuth != nil {
		x.auth.ext = r.ExternalAuth // what follows is held back until it says yes
	}
	to := be
	if c := be.Canary; c != nil && chooseCanary(req, c) {
		// The canary takes the request's endpoints only: the route's
		// own settings (access, rewrite, limits) still apply.
		to = c.Backend
		x.Record.Route = to.Ingress
	}
	if to.Resource != "" {
		x.answer(503, "the backend is a resource backend, which Portico does not serve")
		return
	}
	x.Target = TargetOf(to)
	x.Record.Target = x.Target
	if tr := cfg.Rules[to.Ingress]; tr != nil && to.Protocol.TLS() {
		x.BackendTLS = tr.BackendTLS
	}
	up := cfg.Upstreams[x.Target]
	if up == nil || len(up.Addrs) == 0 {
		if up = x.fallback(cfg, r, req, to, tries, next); up == nil {
			x.answer(503, "the backend service has no ready endpoint")
			return
		}
	}
	if max := x.Limits.MaxBodySize; max >= 0 && req.BodyLength > max {
		x.answer(413, "the request body is larger than the limit")
		return
	}
	var rewritten string
	if be.Rewrite != "" {
		var ok bool
		if rewritten, ok = x.rewrite(be, path, req.Target); !ok {
			x.answer(400, "the rewritten path holds a dot segment")
			return
		}
	}
	x.Outcome = Forward
	// Only a WebSocket handshake is tunnelled: a GET-like request with no
	// body (RFC 6455, 4.1). Any other upgrade is served as a plain request.
	if req.Upgrade != "" && req.Proto == HTTP11 && h1.Is(req.Upgrade, "websocket") && req.BodyLength == 0 {
		if to.Protocol != route.HTTP {
			x.answer(501, "WebSocket to a backend spoken to over TLS or HTTP/2 is not supported yet")
			return
		}
		x.Outcome = Tunnel
	}
	x.Upstream = up
	x.Continue = req.Continue && req.BodyLength != 0 && req.Proto != HTTP2
	p.forwardHead(req, x)
	x.addClientCertFields()
	if rewritten != "" {
		x.Out.Target = rewritten
	}
	if r != nil {
		r.adjustHead(&x.Out)
	}
	switch {
	case x.errors.used: // the route has no endpoint: the error backend answers
		x.errorFields(503)
	case x.Outcome == Forward && !to.Protocol.HTTP2():
		x.armErrors(cfg, r, req, to, tries, next)
	}
	first := -1
	if r != nil && !x.errors.used {
		first = x.choose(r, req, up, be.RulePath)
	}
	x.attempt.start(up, tries, next, first)
	x.Record.Attempts = 1
	x.Record.Endpoint = up.Addrs[x.attempt.index()]
}

// begin resets x for req.
func (x *Exchange) begin(p *Policy, req *Request, start time.Time) {
	x.End()
	x.Outcome, x.Status, x.Body, x.Close = 0, 0, "", false
	x.Target, x.Upstream, x.BackendTLS, x.Continue = Target{}, nil, nil, false
	x.Limits = p.s.Limits
	x.Out = Head{Fields: x.Out.Fields[:0]}
	x.AuthOut = Head{}
	x.auth = authStep{fields: x.auth.fields[:0]}
	x.fields = x.fields[:0]
	x.cors, x.corsOK = nil, ""
	x.sticky = sticky{}
	x.peer = nil
	x.errors = errorPlan{}
	x.scratch = x.scratch[:0]
	x.policy, x.method = p, req.Method
	if req.Client != x.client.addr || x.client.ip == "" {
		x.client = clientCache{addr: req.Client, ip: req.Client.Addr().Unmap().String(), trusted: p.trusted(req.Client.Addr())}
	}
	x.Record = Record{Start: start, Method: req.Method, Host: req.Host, Path: req.Target, URI: req.Target, Client: x.client.ip, Proto: req.Proto.String()}
	for _, f := range req.Fields {
		switch {
		case len(f.Name) == 7 && h1.Is(f.Name, "Referer"):
			x.Record.Referer = f.Value
		case len(f.Name) == 10 && h1.Is(f.Name, "User-Agent"):
			x.Record.UserAgent = f.Value
		}
	}
}

// Method returns the method of the request being decided.
func (x *Exchange) Method() string { return x.method }

var allowField = h1.Field{Name: "Allow", Value: "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"}

// answer makes x a local answer: code, a one-line text body saying why
// (none when reason is empty), and extra fields.
func (x *Exchange) answer(code int, reason string, extra ...h1.Field) {
	x.Outcome, x.Status = Answer, code
	x.Record.Status = code
	x.fields = append(x.fields[:0], extra...)
	x.Body = ""
	if reason != "" {
		x.fields = append(x.fields, textPlain, nosniff)
		start := len(x.scratch)
		x.scratch = strconv.AppendInt(x.scratch, int64(code), 10)
		x.scratch = append(x.scratch, ' ')
		x.scratch = append(x.scratch, h1.StatusText(code)...)
		x.scratch = append(x.scratch, ": "...)
		x.scratch = append(x.scratch, reason...)
		x.scratch = append(x.scratch, '\n')
		x.Body = view(x.scratch[start:])
	}
}

var (
	textPlain = h1.Field{Name: "Content-Type", Value: "text/plain; charset=utf-8"}
	nosniff   = h1.Field{Name: "X-Content-Type-Options", Value: "nosniff"}
)

// clientOf returns the address the allowlists and rate limits judge: the
// peer, or, when the peer is a trusted proxy, the address its
// X-Forwarded-For says it got the request from (the last one in the list
// that is not a trusted proxy itself, as nginx's real_ip_recursive).
func (p *Policy) clientOf(req *Request, x *Exchange) netip.Addr {
	peer := req.Client.Addr()
	if !x.client.trusted {
		return peer
	}
	who := peer
	for i := len(req.Fields) - 1; i >= 0; i-- { // the last field is the nearest hop's
		f := req.Fields[i]
		if !h1.Is(f.Name, "X-Forwarded-For") {
			continue
		}
		list := f.Value
		for list != "" {
			var hop string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				hop, list = list[j+1:], list[:j]
			} else {
				hop, list = list, ""
			}
			a, err := netip.ParseAddr(strings.TrimSpace(hop))
			if err != nil {
				return netip.Addr{} // a list that cannot be read names no one: refused where a list is set
			}
			who = a
			if !p.trusted(a) {
				return a
			}
		}
	}
	return who
}

// fieldValue returns the value of the first field called name, or "".
func fieldValue(fields []h1.Field, name string) string {
	for _, f := range fields {
		if h1.Is(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// acmePath is where ACME HTTP-01 challenges are served (cert-manager's
// solver): never redirected to HTTPS, which is what they are for.
const acmePath = "/.well-known/acme-challenge/"

// toHTTPS reports whether a plain-HTTP request goes to HTTPS instead: its
// host has TLS in the routes (unless ssl-redirect is off), or its Ingress
// forces it. A request a trusted proxy says came over HTTPS is not plain.
func (p *Policy) toHTTPS(cfg *Config, req *Request, be route.Backend, r *Rules, x *Exchange) bool {
	if req.TLS || strings.HasPrefix(x.Record.Path, acmePath) {
		return false
	}
	force := r != nil && r.ForceSSLRedirect
	if !force {
		if be.NoSSLRedirect {
			return false
		}
		if _, tlsOn := cfg.Routes.TLS(req.Host); !tlsOn {
			return false
		}
	}
	return x.scheme(req) != "https"
}

// scheme is the request's scheme as the client used it: a trusted proxy's
// X-Forwarded-Proto, else the connection's.
func (x *Exchange) scheme(req *Request) string {
	if x.client.trusted {
		for _, f := range req.Fields {
			if h1.Is(f.Name, "X-Forwarded-Proto") {
				if h1.Is(f.Value, "https") {
					return "https"
				}
				return "http"
			}
		}
	}
	return scheme(req.TLS)
}

// redirect answers with code and Location scheme://host + target. The
// host is the request's, without its port (the one of the other scheme
// would be wrong); routed hosts are DNS names or addresses.
func (x *Exchange) redirect(code int, scheme, target string) {
	start := len(x.scratch)
	x.scratch = append(x.scratch, scheme...)
	x.scratch = append(x.scratch, "://"...)
	x.scratch = append(x.scratch, hostOnly(x.Record.Host)...)
	x.scratch = append(x.scratch, target...)
	x.answer(code, "", h1.Field{Name: "Location", Value: view(x.scratch[start:])})
}

// MaxDiscard is the largest request body a front-end reads through, to
// keep the connection, when the proxy answers without forwarding it (as
// net/http does); a larger one, or one of unknown length, ends the
// connection after the answer.
const MaxDiscard = 256 << 10

// AnswerFields returns the fields of the proxy's own answer, Server and
// Date first. A front-end adds the framing (Content-Length, Connection).
func (x *Exchange) AnswerFields(now time.Time) []h1.Field {
	extra := len(x.fields)
	x.fields = append(x.fields, serverField, h1.Field{Name: "Date", Value: x.policy.Date(now)})
	x.fields = append(x.fields, x.fields[:extra]...)
	return x.fields[extra:]
}

// hostOnly is a Host value without its port.
func hostOnly(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i >= 0 {
			return host[:i+1]
		}
		return host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		return host[:i]
	}
	return host
}

// view returns b as a string without copying. The core only views bytes
// of its scratch buffer, which it does not overwrite before the next
// request (see Exchange).
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
