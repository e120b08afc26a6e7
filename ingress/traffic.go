package ingress

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// connLimit gives a's rules the ConnLimit its limit-connections asks for,
// the one of the last compile when the Ingress asks for the same, so that
// the requests in flight across a compile still count.
func (cp *compiler) connLimit(ingress string, a *annotated, used map[limitKey]bool) {
	if a.limits.conns == 0 {
		return
	}
	// A rate of -1 keeps these keys apart from the rate limits'.
	k := limitKey{ingress: ingress, rate: -1, burst: float64(a.limits.conns)}
	l := cp.conns[k]
	if l == nil {
		l = exchange.NewConnLimit(a.limits.conns)
		if cp.conns == nil {
			cp.conns = map[limitKey]*exchange.ConnLimit{}
		}
		cp.conns[k] = l
	}
	used[k] = true
	a.rulesOf().ConnLimit = l
}

// The affinity annotations (exchange.Affinity): parsed into
// annotated.affinityOpts, settled by settleAffinity.

func parseAffinity(a *annotated, _, v string) error {
	if strings.TrimSpace(v) != "cookie" {
		return fmt.Errorf("%q is not an affinity type: the only one is \"cookie\"; no affinity applies", v)
	}
	a.affinity = true
	return nil
}

func parseAffinityMode(a *annotated, _, v string) error {
	switch strings.TrimSpace(v) {
	case "balanced":
		a.affinityOpts.Persistent = false
	case "persistent":
		a.affinityOpts.Persistent = true
	default:
		return fmt.Errorf("%q is neither \"balanced\" nor \"persistent\"; balanced applies", v)
	}
	return nil
}

func parseCookieName(a *annotated, _, v string) error {
	if !h1.ValidToken(v) {
		return fmt.Errorf("%q is not a cookie name", v)
	}
	a.affinityOpts.Cookie = v
	return nil
}

func parseCookiePath(a *annotated, _, v string) error {
	if !strings.HasPrefix(v, "/") || !printable(v) || strings.ContainsAny(v, ";,") {
		return fmt.Errorf("%q is not a cookie path: want one that starts with /, without blanks, ';' or ','", v)
	}
	a.affinityOpts.Path = v
	return nil
}

func parseSameSite(a *annotated, _, v string) error {
	for _, s := range []string{"None", "Lax", "Strict"} {
		if strings.EqualFold(strings.TrimSpace(v), s) {
			a.affinityOpts.SameSite = s
			return nil
		}
	}
	return fmt.Errorf("%q is not None, Lax or Strict", v)
}

// seconds parses a whole number of seconds, 1 to ten years, into the
// field picks.
func seconds(field func(*exchange.Affinity) *int) func(*annotated, string, string) error {
	return func(a *annotated, _, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 10*365*86400 {
			return fmt.Errorf("%q is not a number of seconds from 1 to 315360000", v)
		}
		*field(&a.affinityOpts) = n
		return nil
	}
}

// settleAffinity makes the cookie affinity out of affinity: cookie and its
// options, with ingress-nginx's defaults (INGRESSCOOKIE, balanced); the
// options mean nothing without it.
func (a *annotated) settleAffinity(spelled map[string]string, warn func(reason, format string, args ...any)) {
	if !a.affinity {
		for _, n := range []string{"affinity-mode", "session-cookie-name", "session-cookie-path", "session-cookie-max-age", "session-cookie-expires",
			"session-cookie-samesite", "session-cookie-secure", "session-cookie-change-on-failure"} {
			if k, ok := spelled[n]; ok {
				warn(ReasonInvalidAnnotation, "annotation %s has no effect without affinity: \"cookie\"", k)
			}
		}
		return
	}
	opts := a.affinityOpts
	opts.Cookie = cmp.Or(opts.Cookie, "INGRESSCOOKIE")
	r := a.rulesOf()
	r.Affinity = &opts
	if r.HashBy != nil {
		warn(ReasonInvalidAnnotation, "annotation %s has no effect: affinity \"cookie\" chooses the endpoints, as in ingress-nginx", spelled["upstream-hash-by"])
	}
}
