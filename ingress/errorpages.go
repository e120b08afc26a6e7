package ingress

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// Error pages: custom-http-errors, default-backend and
// disable-proxy-intercept-errors, as ingress-nginx reads them (see
// exchange/errorpage.go for what the proxy does with them). The error
// backend is a Service of the Ingress's namespace, spoken to on its first
// TCP port; ingress-nginx's proxy-wide default backend has no counterpart
// in Portico, so custom-http-errors needs default-backend.

// errorSpec is what the error-page annotations ask for.
type errorSpec struct {
	codes       []int
	backend     string // the Service's name
	noIntercept bool
	// backendKey is the default-backend annotation as spelled, for Events.
	backendKey string
}

// parseErrorCodes reads custom-http-errors: a comma-separated list of
// statuses from 300 to 599 (those nginx's error_page takes).
func parseErrorCodes(a *annotated, _, v string) error {
	var codes []int
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 300 || n > 599 {
			return fmt.Errorf("%q is not a status from 300 to 599", s)
		}
		codes = append(codes, n)
	}
	if len(codes) == 0 {
		return fmt.Errorf("%q names no status", v)
	}
	slices.Sort(codes)
	a.errors.codes = slices.Compact(codes)
	return nil
}

// parseDefaultBackend reads default-backend: the name of a Service of the
// Ingress's namespace.
func parseDefaultBackend(a *annotated, _, v string) error {
	v = strings.TrimSpace(v)
	if errs := validation.IsDNS1035Label(v); len(errs) > 0 {
		return fmt.Errorf("%q is not a Service name: %s", v, strings.Join(errs, "; "))
	}
	a.errors.backend = v
	return nil
}

// settleErrors checks the error-page annotations against each other.
func (a *annotated) settleErrors(spelled map[string]string, warn func(reason, format string, args ...any)) {
	e := &a.errors
	e.backendKey = spelled["default-backend"]
	if len(e.codes) > 0 && e.backend == "" {
		warn(ReasonInvalidAnnotation, "annotation %s has no effect without default-backend: Portico has no proxy-wide default backend to send errors to", spelled["custom-http-errors"])
	}
	if k, ok := spelled["disable-proxy-intercept-errors"]; ok && e.noIntercept && len(e.codes) == 0 {
		warn(ReasonInvalidAnnotation, "annotation %s has no effect without custom-http-errors", k)
	}
}

// errorPages gives the Ingress's rules its error pages, when its
// default-backend names a Service with a TCP port; else the route has
// none, and a problem says why.
func errorPages(ing types.NamespacedName, a *annotated, svcs map[types.NamespacedName]*corev1.Service) []problem {
	e := &a.errors
	if e.backend == "" {
		return nil
	}
	fail := func(why string) []problem {
		return []problem{{ing, ReasonInvalidAnnotation, fmt.Sprintf("annotation %s: Service %q %s; the Ingress's routes have no error pages until it is fixed", e.backendKey, e.backend, why)}}
	}
	svc := svcs[types.NamespacedName{Namespace: ing.Namespace, Name: e.backend}]
	if svc == nil {
		return fail("is not found in namespace " + ing.Namespace)
	}
	i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Protocol == "" || p.Protocol == corev1.ProtocolTCP })
	if i < 0 {
		return fail("has no TCP port")
	}
	a.rulesOf().Errors = &exchange.ErrorPages{
		Codes:       e.codes,
		Backend:     exchange.Target{Namespace: ing.Namespace, Service: e.backend, Port: route.Port{Number: svc.Spec.Ports[i].Port}, Protocol: route.HTTP},
		NoIntercept: e.noIntercept,
	}
	return nil
}

// errorUpstreams adds the Upstreams of the error backends rules name.
func errorUpstreams(cfg *exchange.Config, rules map[string]*exchange.Rules, svcs map[types.NamespacedName]*corev1.Service, slicesOf map[types.NamespacedName][]*discoveryv1.EndpointSlice) {
	for _, r := range rules {
		if r.Errors == nil {
			continue
		}
		t := r.Errors.Backend
		if _, done := cfg.Upstreams[t]; done {
			continue
		}
		k := types.NamespacedName{Namespace: t.Namespace, Name: t.Service}
		cfg.Upstreams[t] = exchange.NewUpstream(endpoints(svcs[k], slicesOf[k], t.Port)...)
	}
}
