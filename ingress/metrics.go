package ingress

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/portico-lb/portico/ingress/accesslog"
	"github.com/portico-lb/portico/ingress/proxy"
	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// Metrics are registered with controller-runtime's registry, which the
// manager serves on its metrics address. Request metrics are labelled by
// the Ingress's namespace and name, the Service, the status class (1xx to
// 5xx) and the method (the standard ones or "other"): never by path, host
// or client, so their number stays that of the routes. Unrouted requests
// have empty namespace, ingress and service.
var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_ingress_requests_total",
		Help: "Requests answered, by Ingress (namespace, ingress), Service, status class and method (nginx_ingress_controller_requests).",
	}, []string{"namespace", "ingress", "service", "status", "method"})
	requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "portico_ingress_request_duration_seconds",
		Help:    "Time from the request's arrival to the end of its response, by Ingress, Service and status class (nginx_ingress_controller_request_duration_seconds).",
		Buckets: durationBuckets,
	}, []string{"namespace", "ingress", "service", "status"})
	upstreamSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "portico_ingress_upstream_duration_seconds",
		Help:    "Time from the first attempt to an endpoint to its response head, for requests sent to one, by Ingress, Service and status class (nginx_ingress_controller_response_duration_seconds).",
		Buckets: durationBuckets,
	}, []string{"namespace", "ingress", "service", "status"})
	bytesReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_ingress_bytes_received_total",
		Help: "Request body bytes received from clients, by Ingress and Service (nginx_ingress_controller_request_size, summed).",
	}, []string{"namespace", "ingress", "service"})
	bytesSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_ingress_bytes_sent_total",
		Help: "Bytes sent to clients, heads and bodies, by Ingress and Service (nginx_ingress_controller_response_size, summed).",
	}, []string{"namespace", "ingress", "service"})
	upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_ingress_upstream_errors_total",
		Help: "Failures talking to endpoints, by Ingress, Service and kind (connect, timeout, protocol, body, canceled, client).",
	}, []string{"namespace", "ingress", "service", "kind"})
	configReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_ingress_config_reloads_total",
		Help: "Configurations compiled, by result: success (swapped into the proxy) or failure (the cluster could not be read; the proxy keeps the last one).",
	}, []string{"result"})
	configCompileSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "portico_ingress_config_compile_seconds",
		Help:    "Time to compile the cluster's Ingresses into a proxy configuration.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
)

const connectionsHelp = "Connections the proxy holds now: state=active counts clients' and endpoints', those --max-connections limits (nginx_ingress_controller_nginx_process_connections{state=\"active\"}); state=event_loop the clients' an event loop serves."

var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// served is the proxy whose connections the connection metrics count.
var served atomic.Pointer[proxy.Server]

var (
	connectionsOpen = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "portico_ingress_connections",
		Help:        connectionsHelp,
		ConstLabels: prometheus.Labels{"state": "active"},
	}, func() float64 { return stat(func(s proxy.Stats) float64 { return float64(s.Open) }) })
	connectionsLoop = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "portico_ingress_connections",
		Help:        connectionsHelp,
		ConstLabels: prometheus.Labels{"state": "event_loop"},
	}, func() float64 { return stat(func(s proxy.Stats) float64 { return float64(s.Loop) }) })
	connectionsRefused = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "portico_ingress_connections_refused_total",
		Help: "Client connections closed as soon as accepted because --max-connections were open.",
	}, func() float64 { return stat(func(s proxy.Stats) float64 { return float64(s.Refused) }) })
	tlsHandshakeErrors = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "portico_ingress_tls_handshake_errors_total",
		Help: "TLS handshakes with clients that failed or timed out (ingress-nginx logs these only).",
	}, func() float64 { return stat(func(s proxy.Stats) float64 { return float64(s.TLSHandshakeErrors) }) })
	accessLogDropped = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "portico_ingress_access_log_dropped_total",
		Help: "Access log lines dropped because the log's output could not keep up.",
	}, func() float64 {
		if l := logged.Load(); l != nil {
			return float64(l.Dropped())
		}
		return 0
	})
)

// logged is the access log whose dropped lines are counted.
var logged atomic.Pointer[accesslog.Log]

func stat(f func(proxy.Stats) float64) float64 {
	if s := served.Load(); s != nil {
		return f(s.Stats())
	}
	return 0
}

func init() {
	metrics.Registry.MustRegister(requests, requestSeconds, upstreamSeconds, bytesReceived, bytesSent, upstreamErrors,
		configReloads, configCompileSeconds, connectionsOpen, connectionsLoop, connectionsRefused, tlsHandshakeErrors, accessLogDropped)
}

// Status classes and methods, as label values and indexes into a route's
// children: class 0 is anything outside 100-599, method 0 any method not
// standard.
var (
	classes = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}
	methods = [...]string{"other", "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

func classOf(status int) int {
	if status < 100 || status > 599 {
		return 0
	}
	return status / 100
}

func methodOf(m string) int {
	switch m {
	case "GET":
		return 1
	case "HEAD":
		return 2
	case "POST":
		return 3
	case "PUT":
		return 4
	case "DELETE":
		return 5
	case "CONNECT":
		return 6
	case "OPTIONS":
		return 7
	case "TRACE":
		return 8
	case "PATCH":
		return 9
	}
	return 0
}

// routeKey is what a request's series are resolved by.
type routeKey struct{ route, service string }

// routeSeries holds one route's series, resolved once: the label values
// are looked up and hashed on a route's first request of a class and
// method, and later requests only load a pointer. Children are created on
// first use so that a route exports only the series it has seen.
type routeSeries struct {
	labels   [3]string // namespace, ingress, service
	received prometheus.Counter
	sent     prometheus.Counter
	requests [len(classes)][len(methods)]atomic.Pointer[prometheus.Counter]
	duration [len(classes)]atomic.Pointer[prometheus.Observer]
	upstream [len(classes)]atomic.Pointer[prometheus.Observer]
}

// series is the routes' series by routeKey: a map copied on write, so that
// the per-request lookup takes no lock and boxes nothing. The series of an
// Ingress that is gone are dropped at the next compile (forgetRoutes), as
// ingress-nginx drops them on reload.
var (
	series   atomic.Pointer[map[routeKey]*routeSeries]
	seriesMu sync.Mutex // serializes writers
)

func seriesOf(r *exchange.Record) *routeSeries {
	k := routeKey{r.Route, r.Target.Service}
	if m := series.Load(); m != nil {
		if rs := (*m)[k]; rs != nil {
			return rs
		}
	}
	seriesMu.Lock()
	defer seriesMu.Unlock()
	old := series.Load()
	if old != nil {
		if rs := (*old)[k]; rs != nil {
			return rs
		}
	}
	ns, name, _ := strings.Cut(r.Route, "/")
	rs := &routeSeries{labels: [3]string{ns, name, r.Target.Service}}
	rs.received = bytesReceived.WithLabelValues(rs.labels[:]...)
	rs.sent = bytesSent.WithLabelValues(rs.labels[:]...)
	next := make(map[routeKey]*routeSeries, 1+len(ptrMap(old)))
	for k, v := range ptrMap(old) {
		next[k] = v
	}
	// The key's strings are the Record's, copied off the front-end's
	// buffers by exchange.Finish: safe to keep.
	next[k] = rs
	series.Store(&next)
	return rs
}

// forgetRoutes drops the series of the routes whose Ingress ("namespace/
// name") live says is gone, so that churn (namespaces made and deleted by
// CI, say) does not grow the metrics without end. A request still in
// flight for such a route may bring one of its series back, once.
func forgetRoutes(live func(ingress string) bool) {
	seriesMu.Lock()
	defer seriesMu.Unlock()
	old := ptrMap(series.Load())
	next := make(map[routeKey]*routeSeries, len(old))
	for k, rs := range old {
		if k.route == "" || live(k.route) {
			next[k] = rs
			continue
		}
		gone := prometheus.Labels{"namespace": rs.labels[0], "ingress": rs.labels[1]}
		for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{requests, requestSeconds, upstreamSeconds, bytesReceived, bytesSent, upstreamErrors} {
			v.DeletePartialMatch(gone)
		}
	}
	if len(next) != len(old) {
		series.Store(&next)
	}
}

func ptrMap(m *map[routeKey]*routeSeries) map[routeKey]*routeSeries {
	if m == nil {
		return nil
	}
	return *m
}

// child returns the child in p, creating it with make on first use.
func child[T any](p *atomic.Pointer[T], make func() T) T {
	if c := p.Load(); c != nil {
		return *c
	}
	c := make()
	p.Store(&c) // a race stores the same child twice: harmless
	return c
}

// observe counts one request in the metrics.
func observe(r *exchange.Record) {
	rs := seriesOf(r)
	class, method := classOf(r.Status), methodOf(r.Method)
	ns, ing, svc := rs.labels[0], rs.labels[1], rs.labels[2]
	child(&rs.requests[class][method], func() prometheus.Counter {
		return requests.WithLabelValues(ns, ing, svc, classes[class], methods[method])
	}).Inc()
	child(&rs.duration[class], func() prometheus.Observer {
		return requestSeconds.WithLabelValues(ns, ing, svc, classes[class])
	}).Observe(r.Duration.Seconds())
	if r.Attempts > 0 {
		child(&rs.upstream[class], func() prometheus.Observer {
			return upstreamSeconds.WithLabelValues(ns, ing, svc, classes[class])
		}).Observe(r.UpstreamTime.Seconds())
	}
	if r.BytesIn > 0 {
		rs.received.Add(float64(r.BytesIn))
	}
	if r.BytesOut > 0 {
		rs.sent.Add(float64(r.BytesOut))
	}
	if r.UpstreamError != "" {
		upstreamErrors.WithLabelValues(ns, ing, svc, r.UpstreamError).Inc()
	}
}

// Observer returns the proxy's per-request hook: it counts the request in
// the metrics and, when log is not nil, writes its access log line.
func Observer(log *accesslog.Log) func(exchange.Record) {
	if log != nil {
		logged.Store(log)
	}
	return func(r exchange.Record) {
		observe(&r)
		if log != nil {
			log.Log(&r)
		}
	}
}
