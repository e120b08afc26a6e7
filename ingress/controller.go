// Package ingress is the Kubernetes side of Portico's bundled ingress: it
// watches Ingresses, IngressClasses, Services, EndpointSlices, TLS
// Secrets, Opaque Secrets (for auth-secret) and Namespaces (for the ones being deleted), compiles them into a exchange.Config on every change and swaps it
// into the proxy; it posts Warning Events for what it cannot serve; and the
// leader among the replicas writes the ingress Service's LoadBalancer
// addresses into the status of every Ingress it serves.
//
// Routing and proxying live in the packages route and proxy, which know
// nothing of Kubernetes; this package only translates.
package ingress

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/portico-lb/portico/ingress/proxy"
)

// Options configure the controller.
type Options struct {
	// ClassName is the IngressClass served ("portico").
	ClassName string
	// WithoutClass serves Ingresses that name no class even when the class
	// is not the cluster's default.
	WithoutClass bool
	// PublishService is the Service whose LoadBalancer addresses Ingresses
	// get in their status (portico-system/portico-ingress).
	PublishService types.NamespacedName
	// DefaultCertificate optionally names a kubernetes.io/tls Secret that
	// replaces the generated default certificate.
	DefaultCertificate types.NamespacedName
	// Debounce bounds the time between two compiles (default 20ms). The
	// loop waits after a compile for four times what that compile took,
	// at most Debounce, before the next: compiling takes at most a fifth
	// of a core under any churn, and a change is compiled at once when
	// the cluster is small or quiet.
	Debounce time.Duration
}

// CacheOptions restricts the manager's cache to what the ingress needs:
// Secrets of type kubernetes.io/tls only, so that the cache does not hold
// every Secret of the cluster.
func CacheOptions() cache.Options {
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Field: fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS))},
	}}
}

// Controller keeps the proxy's Config in step with the cluster.
type Controller struct {
	opts   Options
	reader client.Reader
	cache  cache.Cache
	proxy  *proxy.Server
	// events is the core/v1 recorder: the events.k8s.io one merges Events
	// that differ only in their note, hiding a second, different problem.
	events  record.EventRecorder
	elected <-chan struct{}
	log     *slog.Logger

	// authCache holds the Opaque Secrets (auth.go, watchAuthSecrets).
	authCache cache.Cache

	kick chan struct{}
	// loaded is closed after the first Config is stored.
	loaded chan struct{}

	// Owned by the compile loop.
	compiler compiler
	warned   map[problem]bool
}

// Setup adds the controller (on every replica) and the status writer (on
// the leader) to mgr. mgr's cache should be made with CacheOptions.
func Setup(ctx context.Context, mgr manager.Manager, srv *proxy.Server, opts Options, log *slog.Logger) (*Controller, error) {
	if opts.Debounce == 0 {
		opts.Debounce = 20 * time.Millisecond
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	served.Store(srv)
	c := &Controller{
		opts:    opts,
		reader:  mgr.GetCache(),
		cache:   mgr.GetCache(),
		proxy:   srv,
		events:  mgr.GetEventRecorderFor("portico-ingress"), //nolint:staticcheck // see controller.events
		elected: mgr.Elected(),
		log:     log,
		kick:    make(chan struct{}, 1),
		loaded:  make(chan struct{}),
		warned:  map[problem]bool{},
	}
	poke := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.poke() },
		UpdateFunc: func(any, any) { c.poke() },
		DeleteFunc: func(any) { c.poke() },
	}
	for _, obj := range []client.Object{&networkingv1.Ingress{}, &networkingv1.IngressClass{}, &corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Secret{}, &corev1.Namespace{}} {
		inf, err := mgr.GetCache().GetInformer(ctx, obj)
		if err != nil {
			return nil, fmt.Errorf("watching %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(poke); err != nil {
			return nil, fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	authCache, err := watchAuthSecrets(ctx, mgr, poke)
	if err != nil {
		return nil, err
	}
	c.authCache = authCache
	if err := mgr.Add(c); err != nil {
		return nil, err
	}
	if err := setupStatus(mgr, opts); err != nil {
		return nil, err
	}
	return c, nil
}

// NeedLeaderElection is false: every replica serves traffic.
func (c *Controller) NeedLeaderElection() bool { return false }

// Ready reports whether the first Config has been stored.
func (c *Controller) Ready() bool {
	select {
	case <-c.loaded:
		return true
	default:
		return false
	}
}

// Loaded is closed once the first Config has been stored.
func (c *Controller) Loaded() <-chan struct{} { return c.loaded }

func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Start runs the compile loop until ctx ends.
func (c *Controller) Start(ctx context.Context) error {
	if !c.cache.WaitForCacheSync(ctx) || !c.authCache.WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	go func() { // a new leader posts the Events the old one did or did not
		select {
		case <-c.elected:
			c.poke()
		case <-ctx.Done():
		}
	}()
	for {
		start := time.Now()
		if err := c.sync(ctx); err != nil {
			configReloads.WithLabelValues("failure").Inc()
			c.log.Error("compiling the ingress configuration", "err", err)
		}
		last := time.Now()
		pause := min(c.opts.Debounce, 4*last.Sub(start))
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		}
		if wait := pause - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		select { // what came in meanwhile is in this compile
		case <-c.kick:
		default:
		}
	}
}

// sync compiles the cluster as the caches see it and stores the Config.
func (c *Controller) sync(ctx context.Context) error {
	start := time.Now()
	var cl cluster
	var classes networkingv1.IngressClassList
	if err := c.reader.List(ctx, &classes, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	cl.class = ClassOf(c.opts.ClassName, c.opts.WithoutClass, classes.Items)
	var ings networkingv1.IngressList
	if err := c.reader.List(ctx, &ings, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range ings.Items {
		cl.ingresses = append(cl.ingresses, &ings.Items[i])
	}
	var svcs corev1.ServiceList
	if err := c.reader.List(ctx, &svcs, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range svcs.Items {
		cl.services = append(cl.services, &svcs.Items[i])
	}
	var eps discoveryv1.EndpointSliceList
	if err := c.reader.List(ctx, &eps, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range eps.Items {
		cl.slices = append(cl.slices, &eps.Items[i])
	}
	var secrets corev1.SecretList
	if err := c.reader.List(ctx, &secrets, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range secrets.Items {
		cl.secrets = append(cl.secrets, &secrets.Items[i])
	}
	var opaque corev1.SecretList
	if err := c.authCache.List(ctx, &opaque, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range opaque.Items {
		cl.secrets = append(cl.secrets, &opaque.Items[i])
	}
	var namespaces corev1.NamespaceList
	if err := c.reader.List(ctx, &namespaces, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range namespaces.Items {
		if namespaces.Items[i].DeletionTimestamp != nil {
			if cl.terminating == nil {
				cl.terminating = map[string]bool{}
			}
			cl.terminating[namespaces.Items[i].Name] = true
		}
	}
	cl.defaultCert = c.opts.DefaultCertificate

	cfg, probs := c.compiler.compile(cl)
	c.proxy.Store(cfg)
	configReloads.WithLabelValues("success").Inc()
	live := make(map[string]bool, len(cl.ingresses))
	for _, ing := range cl.ingresses {
		live[ing.Namespace+"/"+ing.Name] = true
	}
	forgetRoutes(func(ingress string) bool { return live[ingress] })
	configCompileSeconds.Observe(time.Since(start).Seconds())
	if !c.Ready() { // only the compile loop stores, so only it closes
		close(c.loaded)
	}
	c.warn(cl.ingresses, probs)
	return nil
}

// warn posts a Warning Event for each problem not posted before, on the
// leader only, so that replicas do not repeat each other.
func (c *Controller) warn(ings []*networkingv1.Ingress, probs []problem) {
	select {
	case <-c.elected:
	default:
		return
	}
	sortProblems(probs)
	byKey := map[types.NamespacedName]*networkingv1.Ingress{}
	for _, ing := range ings {
		byKey[types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}] = ing
	}
	now := map[problem]bool{}
	for _, p := range probs {
		now[p] = true
		if c.warned[p] {
			continue
		}
		ing := byKey[p.Ingress]
		if ing == nil {
			continue
		}
		c.events.Event(ing, corev1.EventTypeWarning, p.Reason, p.Note)
		c.log.Warn("ingress problem", "ingress", p.Ingress.String(), "reason", p.Reason, "note", p.Note)
	}
	c.warned = now // a problem that goes away and comes back is posted again
}
