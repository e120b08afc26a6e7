package ingress

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/portico-lb/portico/ingress/accesslog"
	"github.com/portico-lb/portico/ingress/proxy"
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
	req502 := requests.WithLabelValues("shop", "web", "web", "5xx", "GET")
	reqOther := requests.WithLabelValues("shop", "web", "web", "2xx", "other")
	unrouted := requests.WithLabelValues("", "", "", "4xx", "GET")
	errs := upstreamErrors.WithLabelValues("shop", "web", "web", "connect")
	in, out := bytesReceived.WithLabelValues("shop", "web", "web"), bytesSent.WithLabelValues("shop", "web", "web")
	before := []float64{testutil.ToFloat64(req502), testutil.ToFloat64(reqOther), testutil.ToFloat64(unrouted), testutil.ToFloat64(errs), testutil.ToFloat64(in), testutil.ToFloat64(out)}
	observe(exchange.Record{Route: "shop/web", Target: target, Status: 502, UpstreamError: "connect", Attempts: 1, UpstreamTime: 2 * time.Millisecond,
		Duration: 3 * time.Millisecond, Method: "GET", Path: "/cart", URI: "/cart", BytesIn: 10, BytesOut: 200})
	observe(exchange.Record{Route: "shop/web", Target: target, Status: 201, Method: "PROPFIND", Attempts: 1, Duration: time.Millisecond, BytesIn: 5, BytesOut: 100})
	observe(exchange.Record{Status: 404, Method: "GET", Path: "/nothing"})

	for i, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{`requests{shop,web,web,5xx,GET}`, testutil.ToFloat64(req502), 1},
		{`requests{shop,web,web,2xx,other}: a method not standard is "other"`, testutil.ToFloat64(reqOther), 1},
		{`requests{"","","",4xx,GET}: unrouted`, testutil.ToFloat64(unrouted), 1},
		{`upstream errors{connect}`, testutil.ToFloat64(errs), 1},
		{`bytes received`, testutil.ToFloat64(in), 15},
		{`bytes sent`, testutil.ToFloat64(out), 300},
	} {
		if d := c.got - before[i]; d != c.want {
			t.Errorf("%s rose by %v, want %v", c.name, d, c.want)
		}
	}
	// The histograms have the status class, and only requests sent to an
	// endpoint have an upstream time.
	if n := testutil.CollectAndCount(requestSeconds); n < 3 {
		t.Errorf("%d request duration series, want one per route and class (3)", n)
	}
	if n := testutil.CollectAndCount(upstreamSeconds); n != 2 {
		t.Errorf("%d upstream duration series, want 2 (2xx, 5xx; the unrouted request had no upstream)", n)
	}
	var m dto.Metric
	if err := upstreamSeconds.WithLabelValues("shop", "web", "web", "5xx").(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	if h := m.GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() != 0.002 {
		t.Errorf("upstream duration{5xx}: %d samples summing to %v, want 1 of 0.002", h.GetSampleCount(), h.GetSampleSum())
	}
	cancel()
	<-written // the last lines are written when the log stops
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"status":502`) || !strings.Contains(lines[0], `"uri":"/cart"`) || !strings.Contains(lines[0], `"upstreamError":"connect"`) {
		t.Errorf("access log:\n%s", logs.String())
	}
}

func TestMethodAndClass(t *testing.T) {
	for m, want := range map[string]string{"GET": "GET", "PATCH": "PATCH", "get": "other", "PROPFIND": "other", "": "other"} {
		if got := methods[methodOf(m)]; got != want {
			t.Errorf("method %q is labelled %q, want %q", m, got, want)
		}
	}
	for st, want := range map[int]string{0: "other", 99: "other", 101: "1xx", 200: "2xx", 308: "3xx", 499: "4xx", 599: "5xx", 600: "other"} {
		if got := classes[classOf(st)]; got != want {
			t.Errorf("status %d is labelled %q, want %q", st, got, want)
		}
	}
}

func TestConnectionAndTLSMetrics(t *testing.T) {
	// The proxy's own counters, read at scrape time.
	srv, err := proxy.New(proxy.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	served.Store(srv)
	t.Cleanup(func() { served.Store(nil) })
	want := `
# HELP portico_ingress_connections ` + connectionsHelp + `
# TYPE portico_ingress_connections gauge
portico_ingress_connections{state="active"} 0
portico_ingress_connections{state="event_loop"} 0
`
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(connectionsOpen, connectionsLoop, tlsHandshakeErrors)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "portico_ingress_connections"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "portico_ingress_tls_handshake_errors_total"); err != nil || n != 1 {
		t.Errorf("portico_ingress_tls_handshake_errors_total: %d series, %v", n, err)
	}
}

// BenchmarkObserve is the metrics' cost per request, without the access
// log: a few routes, as a busy proxy sees them.
func BenchmarkObserve(b *testing.B) {
	observe := Observer(nil)
	recs := make([]exchange.Record, 4)
	for i := range recs {
		recs[i] = exchange.Record{
			Route: "shop/web", Target: exchange.Target{Namespace: "shop", Service: []string{"web", "api", "cart", "img"}[i], Port: route.Port{Number: 80}},
			Status: []int{200, 200, 304, 502}[i], Method: []string{"GET", "GET", "POST", "GET"}[i],
			Duration: 3 * time.Millisecond, UpstreamTime: 2 * time.Millisecond, BytesIn: 100, BytesOut: 5000,
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		observe(recs[i&3])
	}
}

// The series of an Ingress that is gone leave the metrics at the next
// compile; the others stay.
func TestForgetRoutes(t *testing.T) {
	observe := Observer(nil)
	for _, ing := range []string{"churn/gone", "churn/kept"} {
		ns, name, _ := strings.Cut(ing, "/")
		observe(exchange.Record{Route: ing, Target: exchange.Target{Namespace: ns, Service: name}, Status: 200, Method: "GET", Duration: time.Millisecond, BytesOut: 1})
	}
	series := func(ingress string) int {
		n := 0
		ms, err := ctrlmetrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range ms {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "ingress" && l.GetValue() == ingress {
						n++
					}
				}
			}
		}
		return n
	}
	if series("gone") == 0 || series("kept") == 0 {
		t.Fatalf("before: %d series of gone, %d of kept", series("gone"), series("kept"))
	}
	forgetRoutes(func(ingress string) bool { return ingress != "churn/gone" })
	if n := series("gone"); n != 0 {
		t.Errorf("%d series of the Ingress that is gone remain", n)
	}
	if series("kept") == 0 {
		t.Error("the live Ingress's series went too")
	}
}
