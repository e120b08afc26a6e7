package exchange

import (
	"cmp"
	"strconv"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// Affinity is an Ingress's cookie session affinity (ingress-nginx's
// affinity: cookie and session-cookie-*): a client's requests go to the
// endpoint its cookie names while that endpoint is ready, and a response
// that chose an endpoint afresh sets the cookie.
//
// In persistent mode the cookie holds a hash of the endpoint's address,
// never the address itself, and a new session goes where the round robin
// says. In balanced mode (ingress-nginx's default) it holds a random
// session key, which consistent hashing maps onto the endpoints, so that
// when the Service scales up some sessions move to the new endpoints.
type Affinity struct {
	// Cookie is the cookie's name (session-cookie-name, INGRESSCOOKIE).
	Cookie string
	// Path is the cookie's Path (session-cookie-path); empty for the
	// path of the route's rule, as ingress-nginx.
	Path string
	// MaxAge and Expires, in seconds, set Max-Age and Expires when not
	// zero (session-cookie-max-age, session-cookie-expires).
	MaxAge, Expires int
	// SameSite, when set, is the cookie's SameSite: None, Lax or Strict.
	SameSite string
	// Secure: the cookie is Secure (session-cookie-secure) when SecureSet,
	// else when the request came over TLS.
	Secure, SecureSet bool
	// Persistent: affinity-mode persistent, not balanced.
	Persistent bool
	// ChangeOnFailure: after a failed attempt, the retry goes to another
	// endpoint and the cookie is set to name it
	// (session-cookie-change-on-failure); without it the retry goes to
	// the session's endpoint again, as ingress-nginx's.
	ChangeOnFailure bool
}

// sticky is an exchange's affinity state.
type sticky struct {
	a *Affinity
	// key is the balanced session key the request goes by.
	key string
	// set: the response sets the cookie (the endpoint was chosen afresh).
	set    bool
	path   string
	secure bool
	// tried has bit i set when endpoint i was tried (i < 64).
	tried uint64
}

// choose returns the endpoint index of up a request goes to first under
// r's affinity or upstream-hash-by, or -1 for the round robin.
func (x *Exchange) choose(r *Rules, req *Request, up *Upstream, rulePath string) int {
	if a := r.Affinity; a != nil {
		s := &x.sticky
		*s = sticky{a: a, path: cmp.Or(a.Path, rulePath, "/"), secure: a.Secure || !a.SecureSet && req.TLS}
		v, _ := cookie(req.Fields, a.Cookie)
		if a.Persistent {
			if i := up.byKey(v); v != "" && i >= 0 {
				return i
			}
			s.set = true
			return -1
		}
		if v == "" || len(v) > 64 {
			v, s.set = x.newKey(), true
		}
		s.key = v
		return up.choose(hashString(v))
	}
	if r.HashBy != nil {
		start := len(x.scratch)
		x.scratch = r.HashBy.append(x.scratch, req, x.Record.Path, x)
		return up.choose(hashString(view(x.scratch[start:])))
	}
	return -1
}

// newKey returns a new random balanced session key.
func (x *Exchange) newKey() string {
	start := len(x.scratch)
	x.scratch = x.ids.append(x.scratch)
	return view(x.scratch[start:])
}

// retry moves a sticky request's next attempt, after a failure, to where
// its affinity says: the session's endpoint again, or, with
// ChangeOnFailure, another one, which the cookie will name.
func (x *Exchange) retrySticky(a *attempt, failed int) {
	s := &x.sticky
	if s.a == nil {
		return
	}
	if failed < 64 {
		s.tried |= 1 << failed
	}
	if !s.a.ChangeOnFailure {
		a.cur = failed
		return
	}
	s.set = true
	if s.a.Persistent {
		return // the plan's next endpoint; the cookie names it
	}
	// As ingress-nginx: new session keys until one maps to an endpoint not
	// tried yet, 20 at most.
	for range 20 {
		k := x.newKey()
		if i := a.up.choose(hashString(k)); i >= 64 || s.tried&(1<<i) == 0 {
			s.key, a.cur = k, i
			return
		}
	}
}

// setCookie appends the affinity cookie to fields when the response is to
// set it.
func (x *Exchange) setCookie(fields []h1.Field, now time.Time) []h1.Field {
	s := &x.sticky
	if s.a == nil || !s.set {
		return fields
	}
	value := s.key
	if s.a.Persistent {
		value = x.attempt.up.hashes().key[x.attempt.index()]
	}
	start := len(x.scratch)
	x.scratch = append(x.scratch, s.a.Cookie...)
	x.scratch = append(x.scratch, '=')
	x.scratch = append(x.scratch, value...)
	if s.a.Expires > 0 {
		x.scratch = append(x.scratch, "; Expires="...)
		x.scratch = now.Add(time.Duration(s.a.Expires)*time.Second).UTC().AppendFormat(x.scratch, "Mon, 02 Jan 2006 15:04:05 GMT")
	}
	if s.a.MaxAge > 0 {
		x.scratch = append(x.scratch, "; Max-Age="...)
		x.scratch = strconv.AppendInt(x.scratch, int64(s.a.MaxAge), 10)
	}
	x.scratch = append(x.scratch, "; Path="...)
	x.scratch = append(x.scratch, s.path...)
	if s.secure {
		x.scratch = append(x.scratch, "; Secure"...)
	}
	x.scratch = append(x.scratch, "; HttpOnly"...)
	if s.a.SameSite != "" {
		x.scratch = append(x.scratch, "; SameSite="...)
		x.scratch = append(x.scratch, s.a.SameSite...)
	}
	return append(fields, h1.Field{Name: "Set-Cookie", Value: view(x.scratch[start:])})
}
