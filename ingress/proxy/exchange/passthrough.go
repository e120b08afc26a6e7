package exchange

import (
	"net/netip"
	"time"
)

// Passthrough decides a TLS connection whose server name is passed
// through unterminated (ssl-passthrough): it reports false when
// serverName is not, and the connection is served as any other. When it
// is, x holds either the plan (Outcome Tunnel: join the connection to
// Endpoint, with the attempt plan of a connect that failed) or a refusal
// (Outcome Answer: the Ingress's allow/deny lists refuse the client, or
// the Service has no ready endpoint), which the front-end can only carry
// out by closing the connection. Its Record is as nginx's stream module
// keeps one: status 200 once joined (see Joined), 403, 502, 503.
func (p *Policy) Passthrough(cfg *Config, serverName string, client, local netip.AddrPort, start time.Time, x *Exchange) bool {
	be, ok := cfg.Routes.Passthrough(serverName)
	if !ok {
		return false
	}
	req := Request{Method: "TLS", Host: serverName, Client: client, Local: local, TLS: true, ServerName: serverName}
	x.begin(p, &req, start)
	x.Record.Proto, x.Record.Path, x.Record.URI = "TLS", "", ""
	x.Record.Route = be.Ingress
	tries := p.s.Tries
	if r := cfg.Rules[be.Ingress]; r != nil {
		// Only what a connection shows applies: its client address.
		if why := r.admit(client.Addr()); why != "" {
			x.answer(403, why)
			return true
		}
		over(&tries, r.Tries)
	}
	x.Target = TargetOf(be)
	x.Record.Target = x.Target
	up := cfg.Upstreams[x.Target]
	if up == nil || len(up.Addrs) == 0 {
		x.answer(503, "the backend service has no ready endpoint")
		return true
	}
	x.Outcome, x.Upstream = Tunnel, up
	x.attempt.start(up, tries, NextOnError|NextOnTimeout, -1)
	x.Record.Attempts = 1
	x.Record.Endpoint, _ = x.Endpoint()
	return true
}

// Joined records that a passed-through connection was joined to its
// endpoint.
func (x *Exchange) Joined() {
	x.Record.Status = 200
}
