package exchange

import (
	"slices"
	"strconv"

	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// Error pages, as ingress-nginx's custom-http-errors, default-backend and
// disable-proxy-intercept-errors make them:
//
//   - a request whose route's Service has no ready endpoint goes to the
//     error backend instead, as it is (method, path, body), with X-Code:
//     503 and the other fields below;
//   - an answer with one of Codes, the endpoint's own (unless NoIntercept)
//     or the proxy's after every attempt failed (502, 504), is dropped, and
//     the request goes to the error backend instead: GET (HEAD stays HEAD)
//     for "/", without its body, with X-Code (the status), X-Format (the
//     client's Accept), X-Original-URI, X-Namespace, X-Ingress-Name,
//     X-Service-Name, X-Service-Port and the X-Request-ID the route's
//     endpoint got. Its answer goes to the client as it comes, status
//     included: as with ingress-nginx, the error backend says the status
//     (X-Code, usually).
//
// An exchange goes to the error backend at most once: what the error
// backend answers, whatever it is, is the client's. gRPC and other HTTP/2
// endpoints are left alone (ingress-nginx sets no grpc_intercept_errors),
// and so are WebSocket handshakes.

// ErrorPages are a route's error pages.
type ErrorPages struct {
	// Codes are the statuses that go to Backend (custom-http-errors).
	Codes []int
	// Backend is the error backend (default-backend): a Service of the
	// Ingress's namespace, its first TCP port, spoken to in HTTP/1.1.
	Backend Target
	// NoIntercept: the endpoints' own answers reach the client whatever
	// their status; only the proxy's own failures go to Backend
	// (disable-proxy-intercept-errors).
	NoIntercept bool
}

// errorPlan is what an exchange keeps to go to the error backend.
type errorPlan struct {
	pages *ErrorPages
	up    *Upstream // Backend's endpoints
	// from is the route's target, ingress its Ingress ("namespace/name").
	from    Target
	ingress string
	// accept and uri are the request's Accept and request-target; host its
	// Host, which the error backend gets.
	accept, uri, host string
	tries             int
	next              NextUpstream
	// used: the exchange went to the error backend already.
	used bool
}

// armErrors readies x to go to r's error backend later, when it has
// endpoints: the request was planned toward to.
func (x *Exchange) armErrors(cfg *Config, r *Rules, req *Request, to route.Backend, tries int, next NextUpstream) bool {
	if r == nil || r.Errors == nil {
		return false
	}
	up := cfg.Upstreams[r.Errors.Backend]
	if up == nil || len(up.Addrs) == 0 {
		return false
	}
	x.errors = errorPlan{
		pages: r.Errors, up: up, from: TargetOf(to), ingress: to.Ingress,
		accept: fieldValue(req.Fields, "Accept"), uri: req.Target, host: req.Host,
		tries: tries, next: next,
	}
	return true
}

// fallback sends a request whose target has no ready endpoint to the
// error backend, when the route has one with endpoints, and returns that
// Upstream; nil otherwise.
func (x *Exchange) fallback(cfg *Config, r *Rules, req *Request, to route.Backend, tries int, next NextUpstream) *Upstream {
	if !x.armErrors(cfg, r, req, to, tries, next) {
		return nil
	}
	x.errors.used = true
	x.Target = r.Errors.Backend
	x.Record.Target = x.Target
	x.BackendTLS = nil
	return x.errors.up
}

// Intercept is called by a front-end when the endpoint's final response
// head came with status (after Judge), or when the plan failed and x is
// the proxy's own answer (after Retry returned false), status then being
// x.Status. It returns true when the answer is not the client's: the
// front-end drops it (the response, its connection with it) and carries
// out x's new plan, as for a first attempt: a request to the error
// backend, without a body.
func (x *Exchange) Intercept(status int) bool {
	e := &x.errors
	if e.pages == nil || e.used || !slices.Contains(e.pages.Codes, status) {
		return false
	}
	own := x.Outcome == Answer
	if !own && e.pages.NoIntercept || own && x.Record.UpstreamError == "canceled" {
		return false
	}
	e.used = true
	x.Outcome, x.Status, x.Body = Forward, 0, ""
	x.fields = x.fields[:0]
	x.Target = e.pages.Backend
	x.Record.Target = x.Target
	x.BackendTLS, x.Continue = nil, false
	x.Upstream = e.up
	x.cors, x.corsOK = nil, "" // the error backend's answer is not the route's
	x.sticky = sticky{}
	out := &x.Out
	if out.Method != "HEAD" {
		out.Method = "GET"
	}
	out.Target, out.Host, out.Body = "/", e.host, false
	x.errorFields(status)
	x.attempt.start(e.up, e.tries, e.next, -1)
	x.Record.Attempts++
	x.Record.Endpoint, _ = x.Endpoint()
	return true
}

// errorFields sets, in x.Out, the fields that tell the error backend what
// happened; a client's fields of the same names are dropped.
func (x *Exchange) errorFields(status int) {
	e := &x.errors
	fs := x.Out.Fields[:0]
	for _, f := range x.Out.Fields {
		if !errorField(f.Name) {
			fs = append(fs, f)
		}
	}
	add := func(name, value string) {
		if value != "" { // as nginx, which sends no field with an empty value
			fs = append(fs, h1.Field{Name: name, Value: value})
		}
	}
	start := len(x.scratch)
	x.scratch = strconv.AppendInt(x.scratch, int64(status), 10)
	add("X-Code", view(x.scratch[start:]))
	add("X-Format", e.accept)
	add("X-Original-URI", e.uri)
	add("X-Namespace", e.from.Namespace)
	ns := len(e.from.Namespace) + 1
	if len(e.ingress) > ns {
		add("X-Ingress-Name", e.ingress[ns:])
	}
	add("X-Service-Name", e.from.Service)
	port := e.from.Port.Name
	if port == "" {
		start = len(x.scratch)
		x.scratch = strconv.AppendInt(x.scratch, int64(e.from.Port.Number), 10)
		port = view(x.scratch[start:])
	}
	add("X-Service-Port", port)
	x.Out.Fields = fs
}

// errorField reports the fields the error backend is told by the proxy,
// never by the client (X-Request-ID apart: the header policy keeps it).
func errorField(name string) bool {
	for _, n := range [...]string{"X-Code", "X-Format", "X-Original-URI", "X-Namespace", "X-Ingress-Name", "X-Service-Name", "X-Service-Port"} {
		if h1.Is(name, n) {
			return true
		}
	}
	return false
}
