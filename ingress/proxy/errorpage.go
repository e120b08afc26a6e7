package proxy

import (
	"context"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// errorPage carries out the exchange's error page when the core asks for
// one (exchange.Intercept): a is the endpoint's answer, nil when none
// answered and x holds the proxy's own. The request then goes to the
// error backend, without its body, and errorPage returns that answer, or
// nil when x holds the proxy's; else a, unchanged.
func (s *Server) errorPage(ctx context.Context, x *exchange.Exchange, a upAnswer) upAnswer {
	status := x.Status
	if a != nil {
		status = a.response().Status
	}
	if ctx.Err() != nil || !x.Intercept(status) {
		return a
	}
	if a != nil {
		a.done(s, false, x.Record.Start) // its connection is closed, its body unread
	}
	if c := s.roundTrip(ctx, x, nil); c != nil {
		return c
	}
	return nil
}
