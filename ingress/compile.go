package ingress

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// Names Portico answers to in the API.
const (
	// ControllerName is the spec.controller of Portico's IngressClasses.
	ControllerName = "portico.dev/ingress"
	// DefaultClassAnnotation marks the cluster's default IngressClass.
	DefaultClassAnnotation = "ingressclass.kubernetes.io/is-default-class"
	// LegacyClassAnnotation is the class annotation from before
	// spec.ingressClassName; it is still honoured.
	LegacyClassAnnotation = "kubernetes.io/ingress.class"
	// SSLRedirectAnnotation, "false", turns off the HTTP → HTTPS redirect
	// for an Ingress's backends (also in ingress-nginx's spelling; see
	// annotations.go for the others).
	SSLRedirectAnnotation = PorticoPrefix + "ssl-redirect"

	serviceNameLabel = "kubernetes.io/service-name"
)

// Event reasons, stable: people grep for them.
const (
	ReasonRouteConflict     = "RouteConflict"
	ReasonInvalidRoute      = "InvalidRoute"
	ReasonResourceBackend   = "ResourceBackend"
	ReasonInvalidTLSSecret  = "InvalidTLSSecret"
	ReasonInvalidAnnotation = "InvalidAnnotation"
)

// Class says which Ingresses this controller serves.
type Class struct {
	Name string
	// Found: an IngressClass of that name exists and names ControllerName.
	Found bool
	// Default: that IngressClass is annotated as the cluster's default.
	Default bool
	// WithoutClass: serve Ingresses that name no class even when the class
	// is not the default (a flag).
	WithoutClass bool
}

// ClassOf reads the class of name out of the cluster's IngressClasses.
func ClassOf(name string, withoutClass bool, classes []networkingv1.IngressClass) Class {
	c := Class{Name: name, WithoutClass: withoutClass}
	for i := range classes {
		ic := &classes[i]
		if ic.Name == name && ic.Spec.Controller == ControllerName {
			c.Found = true
			c.Default = ic.Annotations[DefaultClassAnnotation] == "true"
		}
	}
	return c
}

// Serves reports whether the controller serves ing.
func (c Class) Serves(ing *networkingv1.Ingress) bool {
	if ing.DeletionTimestamp != nil {
		return false
	}
	if n := ing.Spec.IngressClassName; n != nil {
		return c.Found && *n == c.Name
	}
	if v, ok := ing.Annotations[LegacyClassAnnotation]; ok {
		return c.Found && v == c.Name
	}
	return c.Found && c.Default || c.WithoutClass
}

// A problem is something wrong with an Ingress that its owner should hear
// of: a Warning Event.
type problem struct {
	Ingress types.NamespacedName
	Reason  string
	Note    string
}

// cluster is what a compile reads, as listed from the informers' caches.
type cluster struct {
	class     Class
	ingresses []*networkingv1.Ingress
	services  []*corev1.Service
	slices    []*discoveryv1.EndpointSlice
	secrets   []*corev1.Secret
	// terminating holds the namespaces being deleted: their Ingresses are
	// not served, so that they stop winning conflicts at once rather than
	// for the seconds their namespace takes to go.
	terminating map[string]bool
	// defaultCert names the Secret of the default certificate, if any.
	defaultCert types.NamespacedName
}

// compiler turns a cluster into a exchange.Config. It keeps parsed
// certificates between compiles (parsing keys is the costly part); it is
// owned by one goroutine.
type compiler struct {
	certs map[types.UID]certEntry
	// limits keeps each Ingress's rate limits from compile to compile,
	// so that a change elsewhere in the cluster does not refill every
	// client's bucket; by Ingress and limit.
	limits map[limitKey]*exchange.RateLimit
	// auths keeps each Ingress's BasicAuth while its Secret and settings
	// stay the same, with the logins it remembers (auth.go).
	auths map[authKey]authEntry
	// conns does the same for limit-connections (traffic.go).
	conns map[limitKey]*exchange.ConnLimit
	// clientAuths keeps each Ingress's ClientAuth while its Secret and
	// settings stay the same (clienttls.go).
	clientAuths map[clientAuthKey]clientAuthEntry
}

type limitKey struct {
	ingress     string
	rate, burst float64
}

type certEntry struct {
	version string
	cert    *tls.Certificate
	err     error
}

// compile returns the Config for c and what is wrong with the Ingresses.
func (cp *compiler) compile(c cluster) (*exchange.Config, []problem) {
	var probs []problem
	var ings []route.Ingress
	rules := map[string]*exchange.Rules{}
	usedLimits, usedAuths := map[limitKey]bool{}, map[authKey]bool{}
	clientCerts := newClientCerts()
	secrets := map[types.NamespacedName]*corev1.Secret{}
	for _, s := range c.secrets {
		secrets[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	svcs := map[types.NamespacedName]*corev1.Service{}
	for _, s := range c.services {
		svcs[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	for _, ing := range c.ingresses {
		if !c.class.Serves(ing) || c.terminating[ing.Namespace] {
			continue
		}
		ri, a := toRoute(ing)
		probs = append(probs, a.probs...)
		ings = append(ings, ri)
		key := ri.Namespace + "/" + ri.Name
		cp.rateLimits(key, &a, usedLimits)
		probs = append(probs, backendTLS(ing, &a, secrets)...)
		if a.auth.ref.Name != "" {
			probs = append(probs, cp.basicAuth(splitKey(key), &a, secrets, usedAuths)...)
		}
		probs = append(probs, cp.clientTLS(ri, &a, secrets, clientCerts)...)
		cp.connLimit(key, &a, usedLimits)
		probs = append(probs, errorPages(splitKey(key), &a, svcs)...)
		if a.rules != nil {
			rules[key] = a.rules
		}
	}
	for k := range cp.limits {
		if !usedLimits[k] {
			delete(cp.limits, k)
		}
	}
	cp.forgetAuths(usedAuths)
	cp.forgetClientAuths(clientCerts)
	for k := range cp.conns {
		if !usedLimits[k] {
			delete(cp.conns, k)
		}
	}
	tab, rejected := route.Build(ings)
	for _, r := range rejected {
		reason := ReasonInvalidRoute
		if r.Kind == route.Conflict {
			reason = ReasonRouteConflict
		}
		probs = append(probs, problem{Ingress: splitKey(r.Ingress), Reason: reason, Note: r.Reason})
	}

	cfg := &exchange.Config{Routes: tab, Upstreams: map[exchange.Target]*exchange.Upstream{}, Certs: map[route.SecretRef]*tls.Certificate{}, Rules: rules,
		ClientCertHosts: clientCerts.pools()}
	slicesOf := map[types.NamespacedName][]*discoveryv1.EndpointSlice{}
	for _, s := range c.slices {
		if name := s.Labels[serviceNameLabel]; name != "" {
			k := types.NamespacedName{Namespace: s.Namespace, Name: name}
			slicesOf[k] = append(slicesOf[k], s)
		}
	}
	seen := map[types.UID]bool{}
	for _, ing := range ings {
		for _, be := range backendsOf(&ing) {
			if be.Resource != "" || be.Service == "" {
				continue
			}
			t := exchange.Target{Namespace: ing.Namespace, Service: be.Service, Port: be.Port, ViaService: ing.ServiceUpstream, Protocol: ing.Protocol}
			if _, done := cfg.Upstreams[t]; done {
				continue
			}
			k := types.NamespacedName{Namespace: t.Namespace, Name: t.Service}
			if !t.ViaService {
				cfg.Upstreams[t] = exchange.NewUpstream(endpoints(svcs[k], slicesOf[k], t.Port)...)
				continue
			}
			addr, err := clusterAddr(svcs[k], t.Port)
			if err != nil {
				probs = append(probs, problem{Ingress: types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}, Reason: ReasonInvalidAnnotation,
					Note: fmt.Sprintf("annotation service-upstream: Service %s: %v; its requests get 503", t.Service, err)})
				cfg.Upstreams[t] = exchange.NewUpstream()
				continue
			}
			cfg.Upstreams[t] = exchange.NewUpstream(addr)
		}
		for _, tl := range ing.TLS {
			if tl.SecretName == "" {
				continue
			}
			ref := route.SecretRef{Namespace: ing.Namespace, Name: tl.SecretName}
			cert, err := cp.cert(secrets[types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}], seen)
			if err != nil {
				probs = append(probs, problem{
					Ingress: types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name},
					Reason:  ReasonInvalidTLSSecret,
					Note:    fmt.Sprintf("Secret %s/%s: %v; its hosts get the default certificate until it is fixed", ref.Namespace, ref.Name, err),
				})
				continue
			}
			cfg.Certs[ref] = cert
		}
	}
	errorUpstreams(cfg, rules, svcs, slicesOf)
	if c.defaultCert.Name != "" {
		if cert, err := cp.cert(secrets[c.defaultCert], seen); err == nil {
			cfg.DefaultCert = cert
		}
	}
	for uid := range cp.certs { // forget Secrets nobody uses any more
		if !seen[uid] {
			delete(cp.certs, uid)
		}
	}
	return cfg, probs
}

// rateLimits gives a's rules the RateLimits its annotations ask for
// (ingress-nginx's: limit-rps and limit-rpm each with a burst of five
// times the rate, or limit-burst-multiplier times), the ones of the last
// compile when the Ingress asks for the same.
func (cp *compiler) rateLimits(ingress string, a *annotated, used map[limitKey]bool) {
	mult := cmp.Or(a.limits.burst, 5)
	for _, l := range []struct{ rate, burst float64 }{
		{float64(a.limits.rps), float64(a.limits.rps * mult)},
		{float64(a.limits.rpm) / 60, float64(a.limits.rpm * mult)},
	} {
		if l.rate == 0 {
			continue
		}
		k := limitKey{ingress, l.rate, l.burst}
		rl := cp.limits[k]
		if rl == nil {
			rl = exchange.NewRateLimit(l.rate, l.burst)
			if cp.limits == nil {
				cp.limits = map[limitKey]*exchange.RateLimit{}
			}
			cp.limits[k] = rl
		}
		used[k] = true
		r := a.rulesOf()
		r.RateLimits = append(r.RateLimits, rl)
	}
}

// cert returns the certificate of a kubernetes.io/tls Secret, parsed once
// per resourceVersion.
func (cp *compiler) cert(s *corev1.Secret, seen map[types.UID]bool) (*tls.Certificate, error) {
	if s == nil {
		return nil, fmt.Errorf("not found (Portico reads Secrets of type %s only)", corev1.SecretTypeTLS)
	}
	seen[s.UID] = true
	if e, ok := cp.certs[s.UID]; ok && e.version == s.ResourceVersion {
		return e.cert, e.err
	}
	var e certEntry
	e.version = s.ResourceVersion
	if s.Type != corev1.SecretTypeTLS {
		e.err = fmt.Errorf("has type %q, want %s", s.Type, corev1.SecretTypeTLS)
	} else if c, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]); err != nil {
		e.err = fmt.Errorf("tls.crt and tls.key do not hold a certificate and its key: %w", err)
	} else {
		e.cert = &c
	}
	if cp.certs == nil {
		cp.certs = map[types.UID]certEntry{}
	}
	cp.certs[s.UID] = e
	return e.cert, e.err
}

func backendsOf(ing *route.Ingress) []route.Backend {
	var out []route.Backend
	if ing.DefaultBackend != nil {
		out = append(out, *ing.DefaultBackend)
	}
	for _, r := range ing.Rules {
		for _, p := range r.Paths {
			out = append(out, p.Backend)
		}
	}
	return out
}

// endpoints returns the "ip:port" addresses of the ready endpoints behind a
// Service port named as an Ingress names it (number or name). The service
// port is found in the Service; its endpoint port in the EndpointSlices, by
// the service port's name. When no endpoint is ready, serving endpoints
// that are terminating are used, as kube-proxy does, so that a rollout's
// last pods still answer.
func endpoints(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, port route.Port) []string {
	if svc == nil {
		return nil
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if port.Name != "" && p.Name == port.Name || port.Name == "" && p.Port == port.Number {
			sp = p
			break
		}
	}
	if sp == nil {
		return nil
	}
	var ready, terminating []string
	for _, s := range eps {
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		var num int32
		for _, p := range s.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name == sp.Name && p.Port != nil && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
				num = *p.Port
				break
			}
		}
		if num == 0 {
			continue
		}
		portStr := strconv.Itoa(int(num))
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			a := net.JoinHostPort(e.Addresses[0], portStr)
			c := e.Conditions
			switch {
			case c.Ready == nil || *c.Ready:
				ready = append(ready, a)
			case c.Serving != nil && *c.Serving && c.Terminating != nil && *c.Terminating:
				terminating = append(terminating, a)
			}
		}
	}
	if len(ready) == 0 {
		ready = terminating
	}
	slices.Sort(ready) // an endpoint can be in two slices while they are rebalanced
	return slices.Compact(ready)
}

// clusterAddr returns "clusterIP:port" of a Service port named as an
// Ingress names it, for service-upstream.
func clusterAddr(svc *corev1.Service, port route.Port) (string, error) {
	if svc == nil {
		return "", fmt.Errorf("not found")
	}
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return "", fmt.Errorf("has no cluster IP (a headless Service)")
	}
	for _, p := range svc.Spec.Ports {
		if (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) && (port.Name != "" && p.Name == port.Name || port.Name == "" && p.Port == port.Number) {
			return net.JoinHostPort(ip, strconv.Itoa(int(p.Port))), nil
		}
	}
	return "", fmt.Errorf("has no TCP port %v", port)
}

// toRoute converts an Ingress for the routing table, and reads its
// annotations.
func toRoute(ing *networkingv1.Ingress) (route.Ingress, annotated) {
	key := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
	ri := route.Ingress{Namespace: ing.Namespace, Name: ing.Name, Created: ing.CreationTimestamp.Time}
	var probs []problem
	resource := func(b route.Backend, where string) {
		if b.Resource != "" {
			probs = append(probs, problem{key, ReasonResourceBackend, fmt.Sprintf(
				"%s: resource backend %s is not supported by Portico; requests to it get 503. Use a Service backend", where, b.Resource)})
		}
	}
	if b := ing.Spec.DefaultBackend; b != nil {
		rb := toBackend(b)
		ri.DefaultBackend = &rb
		resource(rb, "defaultBackend")
	}
	for _, r := range ing.Spec.Rules {
		rr := route.Rule{Host: r.Host}
		if r.HTTP != nil {
			for _, p := range r.HTTP.Paths {
				rp := route.Path{Path: p.Path, Backend: toBackend(&p.Backend)}
				if p.PathType != nil {
					switch *p.PathType {
					case networkingv1.PathTypeExact:
						rp.Type = route.Exact
					case networkingv1.PathTypePrefix:
						rp.Type = route.Prefix
					}
				}
				resource(rp.Backend, fmt.Sprintf("host %q path %q", r.Host, p.Path))
				rr.Paths = append(rr.Paths, rp)
			}
		}
		ri.Rules = append(ri.Rules, rr)
	}
	for _, t := range ing.Spec.TLS {
		ri.TLS = append(ri.TLS, route.TLS{Hosts: t.Hosts, SecretName: t.SecretName})
	}
	a := readAnnotations(key, ing.Annotations)
	ri.NoSSLRedirect, ri.Policy = a.noSSLRedirect, a.policy
	ri.Regex, ri.RewriteTarget, ri.ServiceUpstream, ri.Protocol = a.regex, a.rewrite, a.serviceUpstream, a.protocol
	ri.FromToWWW, ri.Passthrough = a.fromToWWW, a.passthrough
	if a.canary {
		c := a.canaryOpts
		ri.Canary = &c
	}
	a.probs = append(probs, a.probs...)
	return ri, a
}

func toBackend(b *networkingv1.IngressBackend) route.Backend {
	var rb route.Backend
	if s := b.Service; s != nil {
		rb.Service = s.Name
		rb.Port = route.Port{Number: s.Port.Number, Name: s.Port.Name}
	}
	if r := b.Resource; r != nil {
		group := ""
		if r.APIGroup != nil {
			group = *r.APIGroup
		}
		rb.Resource = group + "/" + r.Kind + "/" + r.Name
	}
	return rb
}

func splitKey(k string) types.NamespacedName {
	ns, name, _ := strings.Cut(k, "/")
	return types.NamespacedName{Namespace: ns, Name: name}
}

// sortProblems orders problems for stable output.
func sortProblems(ps []problem) {
	slices.SortStableFunc(ps, func(a, b problem) int {
		return cmp.Or(strings.Compare(a.Ingress.String(), b.Ingress.String()), strings.Compare(a.Reason, b.Reason), strings.Compare(a.Note, b.Note))
	})
}
