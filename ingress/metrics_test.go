package ingress

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portico-lb/portico/ingress/accesslog"
	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

func TestObserver(t *testing.T) {
	var logs bytes.Buffer
	log := accesslog.New(&logs, accesslog.JSON)
	ctx, cancel := context.WithCancel(context.Background())
	written := make(chan struct{})
	go func() { log.Run(ctx); close(written) }()
	observe := Observer(log)
	target := exchange.Target{Namespace: "shop", Service: "web", Port: route.Port{Number: 80}}
	before := testutil.ToFloat64(requests.WithLabelValues("shop/web", "web", "502"))
	beforeErr := testutil.ToFloat64(upstreamErrors.WithLabelValues("shop/web", "web", "connect"))
	observe(exchange.Record{Route: "shop/web", Target: target, Status: 502, UpstreamError: "connect", Duration: 3 * time.Millisecond, Method: "GET", Path: "/cart", URI: "/cart"})
	observe(exchange.Record{Status: 404, Path: "/nothing"})

	if got := testutil.ToFloat64(requests.WithLabelValues("shop/web", "web", "502")) - before; got != 1 {
		t.Errorf("requests{shop/web,web,502} rose by %v, want 1", got)
	}
	if got := testutil.ToFloat64(upstreamErrors.WithLabelValues("shop/web", "web", "connect")) - beforeErr; got != 1 {
		t.Errorf("upstream errors rose by %v, want 1", got)
	}
	if n := testutil.CollectAndCount(requestSeconds); n == 0 {
		t.Error("no latency observed")
	}
	cancel()
	<-written // the last lines are written when the log stops
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"status":502`) || !strings.Contains(lines[0], `"uri":"/cart"`) || !strings.Contains(lines[0], `"upstreamError":"connect"`) {
		t.Errorf("access log:\n%s", logs.String())
	}
}
