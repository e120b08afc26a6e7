package ingress

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/portico-lb/portico/ingress/accesslog"
	"github.com/portico-lb/portico/ingress/proxy"
	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// Metrics are registered with controller-runtime's registry, which the
// manager serves on its metrics address.
var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_ingress_requests_total",
		Help: "Requests answered, by Ingress (namespace/name), Service and status code. Unrouted requests have empty ingress and service.",
	}, []string{"ingress", "service", "code"})
	requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "portico_ingress_request_duration_seconds",
		Help:    "Time from the request's arrival to the end of its response, by Ingress and Service.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"ingress", "service"})
	upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_ingress_upstream_errors_total",
		Help: "Failures talking to endpoints, by Ingress, Service and kind (connect, timeout, protocol, body).",
	}, []string{"ingress", "service", "kind"})
	configReloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portico_ingress_config_reloads_total",
		Help: "Configurations compiled and swapped into the proxy.",
	})
	configCompileSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "portico_ingress_config_compile_seconds",
		Help:    "Time to compile the cluster's Ingresses into a proxy configuration.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
)

// served is the proxy whose connections the connection metrics count.
var served atomic.Pointer[proxy.Server]

var (
	connectionsOpen = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "portico_ingress_connections",
		Help: "Client connections the proxy holds now (nginx_ingress_controller_nginx_process_connections{state=\"active\"}).",
	}, func() float64 { return stat(func(s proxy.Stats) float64 { return float64(s.Open) }) })
	connectionsRefused = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "portico_ingress_connections_refused_total",
		Help: "Client connections closed as soon as accepted because --max-connections were open.",
	}, func() float64 { return stat(func(s proxy.Stats) float64 { return float64(s.Refused) }) })
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
	metrics.Registry.MustRegister(requests, requestSeconds, upstreamErrors, configReloads, configCompileSeconds, connectionsOpen, connectionsRefused, accessLogDropped)
}

// codes holds the label of every status code, so that counting a request
// does not format one.
var codes = func() (c [600]string) {
	for i := range c {
		c[i] = strconv.Itoa(i)
	}
	return c
}()

// Observer returns the proxy's per-request hook: it counts the request in
// the metrics and, when log is not nil, writes its access log line.
func Observer(log *accesslog.Log) func(exchange.Record) {
	if log != nil {
		logged.Store(log)
	}
	return func(r exchange.Record) {
		code := "other"
		if r.Status >= 0 && r.Status < len(codes) {
			code = codes[r.Status]
		}
		requests.WithLabelValues(r.Route, r.Target.Service, code).Inc()
		requestSeconds.WithLabelValues(r.Route, r.Target.Service).Observe(r.Duration.Seconds())
		if r.UpstreamError != "" {
			upstreamErrors.WithLabelValues(r.Route, r.Target.Service, r.UpstreamError).Inc()
		}
		if log != nil {
			log.Log(&r)
		}
	}
}
