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
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

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
	// Debounce bounds the time between two compiles (default 20ms).
	// Reconcile waits after a compile for four times what that compile
	// took, at most Debounce, before the next: compiling takes at most a fifth
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
	proxy  *proxy.Server
	// events is the core/v1 recorder: the events.k8s.io one merges Events
	// that differ only in their note, hiding a second, different problem.
	events  record.EventRecorder
	elected <-chan struct{}
	log     *slog.Logger

	// authCache holds the Opaque Secrets (auth.go, authSecrets).
	authCache cache.Cache

	// loaded is closed after the first Config is stored.
	loaded chan struct{}

	// Owned by Reconcile, which has one worker.
	compiler compiler
	warned   map[problem]bool
}

// compileRequest is the one key every watched event maps to: a compile
// recomputes the whole Config from the caches, so which object changed does
// not matter, and the workqueue holds the key once however many events come.
var compileRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: "config"}}

// Setup adds the controller (on every replica) and the status writer (on
// the leader) to mgr. mgr's cache should be made with CacheOptions.
func Setup(mgr manager.Manager, srv *proxy.Server, opts Options, log *slog.Logger) (*Controller, error) {
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
		proxy:   srv,
		events:  mgr.GetEventRecorderFor("portico-ingress"), //nolint:staticcheck // see controller.events
		elected: mgr.Elected(),
		log:     log,
		loaded:  make(chan struct{}),
		warned:  map[problem]bool{},
	}
	authCache, err := authSecrets(mgr)
	if err != nil {
		return nil, err
	}
	c.authCache = authCache
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{compileRequest}
	})
	b := ctrl.NewControllerManagedBy(mgr).
		Named("ingress").
		WithOptions(controller.Options{
			// Every replica serves traffic, so every replica compiles.
			NeedLeaderElection: ptr.To(false),
			// One worker: the compiler's state and warned are owned by
			// the reconcile path, and the one key could not run twice
			// at once anyway.
			MaxConcurrentReconciles: 1,
		})
	for _, obj := range []client.Object{&networkingv1.Ingress{}, &networkingv1.IngressClass{}, &corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Secret{}, &corev1.Namespace{}} {
		b = b.WatchesRawSource(source.Kind(mgr.GetCache(), obj, all))
	}
	b = b.WatchesRawSource(source.Kind[client.Object](authCache, &corev1.Secret{}, all)) // Opaque ones, for auth-secret
	// The first compile waits for no event (workers start once the caches
	// are synced); and a new leader posts the Events the old one did or
	// did not.
	b = b.WatchesRawSource(source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		q.Add(compileRequest)
		go func() {
			select {
			case <-c.elected:
				q.Add(compileRequest)
			case <-ctx.Done():
			}
		}()
		return nil
	}))
	if err := b.Complete(c); err != nil {
		return nil, fmt.Errorf("ingress controller: %w", err)
	}
	if err := setupStatus(mgr, opts); err != nil {
		return nil, err
	}
	return c, nil
}

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

// Reconcile compiles the cluster into a Config, then holds the worker for
// a pause of four times what the compile took, at most opts.Debounce.
// Events that come meanwhile only mark the one key dirty, so a burst of
// changes coalesces into one more compile when the pause ends, and a change
// to a quiet cluster is compiled at once. The pause is spent here, not in
// a rate limiter on the key, because event handlers Add and Add ignores
// rate limiters; and after the compile, not before the next, because events
// during a sleep before a compile would mark the key dirty again and cost
// one more compile that the first already covered. Holding the worker costs
// nothing: there is one key.
func (c *Controller) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	start := time.Now()
	err := c.sync(ctx)
	if err != nil { // controller-runtime logs it and retries with backoff
		configReloads.WithLabelValues("failure").Inc()
	}
	pause := min(c.opts.Debounce, 4*time.Since(start))
	select {
	case <-ctx.Done():
	case <-time.After(pause):
	}
	return reconcile.Result{}, err
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
	if !c.Ready() { // only Reconcile stores, so only it closes
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
