package ingress

import "github.com/portico-lb/portico/ingress/proxy/exchange"

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
