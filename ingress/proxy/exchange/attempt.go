package exchange

import (
	"net/netip"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// The attempt plan: which endpoint a forwarded request goes to, and where
// after a failure. It follows ingress-nginx's defaults (proxy-next-upstream
// "error timeout", proxy-next-upstream-tries 3) and nginx's rule that a
// request that is not idempotent is never sent twice: the next endpoint
// after a failure to connect, whatever the request (nothing was sent);
// after a failure once it was sent, only for idempotent requests. A
// kept-alive connection that the endpoint had closed before answering
// anything gets one more try on a new connection to the same endpoint,
// again for idempotent requests only. The body is received whole before
// the first attempt, so a retried request carries all of it.

// attempt is the state of the plan.
type attempt struct {
	up        *Upstream
	first     int  // the endpoint of the first attempt
	cur       int  // the endpoint of the current attempt
	n         int  // attempts made before the current one
	tries     int  // attempts allowed, at most one per endpoint
	fresh     bool // the current attempt goes on a new connection
	freshUsed bool // the current endpoint had its extra try
	once      bool // the body streams: sent once, never again
	next      NextUpstream
}

// start plans the attempts at up from endpoint first, or from the round
// robin's pick when first is negative.
func (a *attempt) start(up *Upstream, max int, next NextUpstream, first int) {
	if first < 0 {
		first = up.pick()
	}
	*a = attempt{up: up, first: first, cur: first, tries: min(len(up.Addrs), max), next: next}
}

func (a *attempt) index() int { return a.cur }

// Endpoint returns the endpoint of the current attempt, as "ip:port" and
// parsed (the zero AddrPort when it is not an IP address and port).
func (x *Exchange) Endpoint() (string, netip.AddrPort) {
	i := x.attempt.index()
	return x.attempt.up.Addrs[i], x.attempt.up.AddrPorts[i]
}

// FreshConnection reports whether the current attempt must go on a new
// connection rather than on a kept-alive one.
func (x *Exchange) FreshConnection() bool { return x.attempt.fresh }

// SendOnce tells the plan that the request's body goes upstream as the
// client sends it (a gRPC stream), so that it cannot be sent twice: only a
// failure to connect, before anything was sent, is tried again.
func (x *Exchange) SendOnce() { x.attempt.once = true }

// Failure is how an attempt failed, before any of its answer went to the
// client.
type Failure uint8

const (
	// FailConnect: the endpoint could not be connected to in time.
	FailConnect Failure = iota + 1
	// FailStale: a kept-alive connection turned out closed by the endpoint
	// before it answered anything.
	FailStale
	// FailReset: the connection broke, or the endpoint closed it, before
	// the response head came.
	FailReset
	// FailTimeout: the request could not be sent within SendTimeout, or no
	// response head came within ReadTimeout.
	FailTimeout
	// FailInvalid: the response head was malformed or too large, or
	// switched protocols unasked.
	FailInvalid
	// FailStatus: the endpoint answered with a status the plan tries the
	// next endpoint after (Judge said so); its answer is not relayed.
	FailStatus
)

// Retry reports that the current attempt failed with f. It returns true
// when the request is to be tried again: on the next endpoint, or on the
// same one over a new connection when FreshConnection says so. Otherwise
// x becomes the client's answer (502, 504).
func (x *Exchange) Retry(f Failure) bool {
	a := &x.attempt
	idem := (idempotent(x.method) || a.next&NextNonIdempotent != 0) && !a.once
	if f == FailStale {
		if idem && !a.freshUsed {
			a.fresh, a.freshUsed = true, true
			return true
		}
		f = FailReset
	}
	next := a.next
	var again bool
	switch f {
	case FailConnect:
		again = next&(NextOnError|NextOnTimeout) != 0
	case FailReset:
		again = next&NextOnError != 0 && idem
	case FailTimeout:
		again = next&NextOnTimeout != 0 && idem
	case FailInvalid:
		again = next&NextOnInvalidHeader != 0 && idem
	case FailStatus:
		again = true // Judge checked the rest
	}
	if again && next&NextOff == 0 && a.n+1 < a.tries {
		a.n++
		failed := a.cur
		a.cur = (a.first + a.n) % len(a.up.Addrs)
		x.retrySticky(a, failed)
		a.fresh, a.freshUsed = false, false
		x.Record.Attempts++
		x.Record.Endpoint, _ = x.Endpoint()
		return true
	}
	x.fail(f)
	return false
}

// fail makes x the answer to a request no endpoint answered.
func (x *Exchange) fail(f Failure) {
	switch f {
	case FailConnect:
		x.answer(502, "no endpoint of the backend service accepted a connection")
		x.Record.UpstreamError = "connect"
	case FailTimeout:
		x.answer(504, "the backend service did not answer in time")
		x.Record.UpstreamError = "timeout"
	default:
		x.answer(502, "the backend service's answer was broken")
		x.Record.UpstreamError = "protocol"
	}
}

// idempotent methods may be sent again after a failure (RFC 9110, 9.2.2).
func idempotent(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE":
		return true
	}
	return false
}

// Judge checks the endpoint's final response head against the plan: a
// switch of protocols only to the one a tunnelled request asked for. It
// returns 0 when the response goes to the client, else how the attempt
// failed: FailInvalid, or FailStatus when the status is one the plan
// tries the next endpoint after (proxy-next-upstream http_*) and another
// attempt is allowed; the last attempt's answer is relayed whatever its
// status, as nginx does. A 1xx other than 101 is not final: a front-end
// skips it.
func (x *Exchange) Judge(status int, upgrade string) Failure {
	if status == 101 && (x.Outcome != Tunnel || !h1.Is(upgrade, x.Out.upgrade())) {
		return FailInvalid
	}
	a := &x.attempt
	if c := onStatus(status); c != 0 && a.next&c != 0 && a.next&NextOff == 0 && a.n+1 < a.tries &&
		(idempotent(x.method) || a.next&NextNonIdempotent != 0) && !a.once {
		x.Record.UpstreamStatus = status
		return FailStatus
	}
	x.Record.Status, x.Record.UpstreamStatus = status, status
	return 0
}

// upgrade is the protocol a tunnelled request asks for.
func (h *Head) upgrade() string {
	for i := len(h.Fields) - 1; i >= 0; i-- {
		if h1.Is(h.Fields[i].Name, "Upgrade") {
			return h.Fields[i].Value
		}
	}
	return ""
}
