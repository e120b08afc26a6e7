package speaker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/speaker/member"
	"github.com/portico-lb/portico/speaker/status"
)

// Options configure a Speaker.
type Options struct {
	// Node is this speaker's node name.
	Node       string
	Announcers []Announcer
	// RetryAfter bounds the wait before the announcers are called again
	// after one failed: retries back off from a few milliseconds to it.
	RetryAfter time.Duration
	// Status, if set, is told what this node announces after every
	// change, and writes it as ServiceAnnouncements. New adds it to the
	// manager as a Runnable of its own.
	Status *status.Announcements
	// Classes says which Services are ours; RequireClass leaves
	// class-less Services to another load balancer.
	Classes lbservice.Classes
	Log     logr.Logger
}

// Speaker keeps this node's announcements in line with the cluster. A
// controller-runtime controller with one worker builds each State and
// calls the announcers; the cache's informers and membership changes only
// queue the one key it knows. The Speaker is the manager's Runnable for
// that controller, so that it can withdraw after the last Reconcile.
type Speaker struct {
	cache cache.Cache
	// events is the core/v1 recorder: the events.k8s.io one merges Events
	// that differ only in their note, so announcing a Service's IPv6
	// address right after its IPv4 one would not show.
	events  record.EventRecorder
	opts    Options
	log     logr.Logger
	members atomic.Pointer[[]member.Member]
	// membersChanged wakes the controller when SetMembers stores a new
	// list. One slot: an event waiting there already makes a Reconcile
	// that reads the newest list.
	membersChanged chan event.TypedGenericEvent[struct{}]
	ctrl           controller.Controller
	// announced is what this node announced last, by Service, IP and
	// protocol. Owned by the controller's one worker, then by withdraw,
	// which Start runs after that worker has returned.
	announced map[announceKey]Announcement
}

type announceKey struct {
	service  types.NamespacedName
	ip       netip.Addr
	protocol string
}

// New returns a Speaker that reads the cluster through mgr's cache and
// posts Events with rec, and adds it, and opts.Status if set, to mgr.
func New(mgr manager.Manager, rec record.EventRecorder, opts Options) (*Speaker, error) {
	s := newSpeaker(mgr.GetCache(), rec, opts)
	// Every event queues the same key: Reconcile recomputes the whole
	// State, so one pending request stands for any number of changes.
	key := reconcile.Request{NamespacedName: types.NamespacedName{Name: s.opts.Node}}
	c, err := controller.NewUnmanaged("speaker", controller.Options{
		Reconciler: reconcile.Func(s.reconcile),
		// One worker: the reconcile path owns s.announced and calls the
		// announcers, which are called from one goroutine at a time.
		MaxConcurrentReconciles: 1,
		// Every node's speaker runs.
		NeedLeaderElection: ptr.To(false),
		// A process runs one speaker; tests run several in one process.
		SkipNameValidation: ptr.To(true),
		// Only failures are rate limited: an event is queued at once, so a
		// membership change reaches Reconcile with no added delay.
		RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](
			min(10*time.Millisecond, s.opts.RetryAfter), s.opts.RetryAfter),
		Logger: s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("speaker controller: %w", err)
	}
	toKey := func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{key} }
	for _, obj := range []client.Object{
		&corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Node{},
		&v1alpha1.AddressPool{}, &v1alpha1.L2Advertisement{},
		&v1alpha1.BGPAdvertisement{}, &v1alpha1.BGPPeer{},
		&corev1.Namespace{}, // advertisements' namespaceSelectors
	} {
		if err := c.Watch(source.Kind(mgr.GetCache(), obj, handler.EnqueueRequestsFromMapFunc(toKey))); err != nil {
			return nil, fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	membersToKey := handler.TypedEnqueueRequestsFromMapFunc(func(context.Context, struct{}) []reconcile.Request { return []reconcile.Request{key} })
	if err := c.Watch(source.Channel(s.membersChanged, membersToKey)); err != nil {
		return nil, fmt.Errorf("watching the live speakers: %w", err)
	}
	s.ctrl = c
	if err := mgr.Add(s); err != nil {
		return nil, err
	}
	if s.opts.Status != nil {
		if err := mgr.Add(statusWriter{cache: mgr.GetCache(), w: s.opts.Status}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// newSpeaker returns a Speaker with no controller yet.
func newSpeaker(c cache.Cache, rec record.EventRecorder, opts Options) *Speaker {
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = time.Second
	}
	s := &Speaker{
		cache:          c,
		events:         rec,
		opts:           opts,
		log:            opts.Log,
		membersChanged: make(chan event.TypedGenericEvent[struct{}], 1),
		announced:      map[announceKey]Announcement{},
	}
	// The first Reconcile comes as soon as the controller runs, even in a
	// cluster with nothing to watch yet.
	s.membersChanged <- event.TypedGenericEvent[struct{}]{}
	return s
}

// SetMembers takes the live speakers; member.Config.OnChange calls it. It
// never blocks, before, while or after the controller runs.
func (s *Speaker) SetMembers(ms []member.Member) {
	ms = slices.Clone(ms)
	s.members.Store(&ms)
	select {
	case s.membersChanged <- event.TypedGenericEvent[struct{}]{}:
	default:
	}
}

// NeedLeaderElection is false: every node's speaker runs.
func (s *Speaker) NeedLeaderElection() bool { return false }

// Start runs the controller until ctx ends, then withdraws everything.
// The controller's Start returns only once its worker has finished its
// last Reconcile, so the withdrawal is the last call to the announcers and
// never runs alongside a Reconcile.
func (s *Speaker) Start(ctx context.Context) error {
	s.log.Info("watching the cluster", "node", s.opts.Node)
	err := s.ctrl.Start(ctx)
	s.withdraw()
	return err
}

// reconcile builds a State and hands it to every announcer. An error
// queues the key again through the controller's rate limiter.
func (s *Speaker) reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	st, err := s.State(ctx)
	if err != nil {
		// The cache only fails on a programming error or a missing
		// kind; the announcers keep announcing what they had.
		return reconcile.Result{}, fmt.Errorf("reading the cluster: %w", err)
	}
	if err := s.announce(ctx, st); err != nil {
		return reconcile.Result{}, fmt.Errorf("announcing: %w", err)
	}
	return reconcile.Result{}, nil
}

// statusWriter runs the ServiceAnnouncement writer as a Runnable of its
// own: writing to the API never holds up announcing.
type statusWriter struct {
	cache cache.Cache
	w     *status.Announcements
}

func (statusWriter) NeedLeaderElection() bool { return false }

func (r statusWriter) Start(ctx context.Context) error {
	// The writer reads ServiceAnnouncements through the same cache:
	// synced here, it never waits on an informer at shutdown.
	inf, err := r.cache.GetInformer(ctx, &v1alpha1.ServiceAnnouncement{})
	if err != nil {
		return fmt.Errorf("ServiceAnnouncement informer: %w", err)
	}
	if _, err := inf.AddEventHandler(r.w.Handler()); err != nil {
		return fmt.Errorf("ServiceAnnouncement informer: %w", err)
	}
	if !r.cache.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("the cache did not sync")
	}
	r.w.Run(ctx)
	return nil
}

func (s *Speaker) announce(ctx context.Context, st *State) error {
	var errs []error
	now := map[announceKey]Announcement{}
	for _, a := range s.opts.Announcers {
		got, err := a.Announce(ctx, st)
		if err != nil {
			errs = append(errs, err)
		}
		for _, an := range got {
			now[announceKey{an.Service, an.IP, an.Protocol}] = an
		}
	}
	svcs := map[types.NamespacedName]*corev1.Service{}
	for _, sv := range st.Services {
		svcs[sv.Name] = sv.Object
	}
	for k, an := range now {
		if old, ok := s.announced[k]; ok && slices.Equal(old.Via, an.Via) {
			continue
		}
		s.log.Info("announcing", "service", an.Service.String(), "ip", an.IP.String(), "protocol", an.Protocol, "via", an.Via)
		if svc := svcs[k.service]; svc != nil {
			s.event(svc, corev1.EventTypeNormal, ReasonAnnounced, Note("announcing", an, st.Node))
		}
	}
	for k, an := range s.announced {
		if _, ok := now[k]; ok {
			continue
		}
		s.log.Info("withdrawn", "service", an.Service.String(), "ip", an.IP.String(), "protocol", an.Protocol)
		if svc := svcs[k.service]; svc != nil {
			s.event(svc, corev1.EventTypeNormal, ReasonWithdrawn, Note("withdrawn", an, st.Node))
		}
	}
	s.announced = now
	countAnnouncements(now)
	s.publish(st, now, svcs)
	return errors.Join(errs...)
}

// publish hands what this node announces, by Service and protocol, to the
// status writer.
func (s *Speaker) publish(st *State, now map[announceKey]Announcement, svcs map[types.NamespacedName]*corev1.Service) {
	if s.opts.Status == nil {
		return
	}
	type key struct {
		service  types.NamespacedName
		protocol string
	}
	byKey := map[key]*status.Announcement{}
	for k, an := range now {
		svc := svcs[k.service]
		if svc == nil {
			continue
		}
		sa := byKey[key{k.service, k.protocol}]
		if sa == nil {
			sa = &status.Announcement{Service: k.service, ServiceUID: svc.UID, Protocol: k.protocol}
			byKey[key{k.service, k.protocol}] = sa
		}
		sa.IPs = append(sa.IPs, an.IP.String())
		sa.Via = append(sa.Via, an.Via...)
	}
	anns := make([]status.Announcement, 0, len(byKey))
	for _, sa := range byKey {
		anns = append(anns, *sa)
	}
	members := make([]string, 0, len(st.Members))
	for _, m := range st.Members {
		members = append(members, m.Name)
	}
	s.opts.Status.Set(anns, members)
}

func (s *Speaker) event(svc *corev1.Service, typ, reason, note string) {
	if s.events == nil {
		return
	}
	s.events.Event(svc, typ, reason, note)
}

// Keeper is an Announcer whose announcements are meant to outlive the
// speaker when it stops (BGP with graceful restart); withdraw leaves it be.
type Keeper interface {
	KeepOnExit() bool
}

// withdraw stops every announcement, as the speaker goes away. Its peers
// have been told by memberlist already and take the addresses over.
func (s *Speaker) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	empty := &State{Node: s.opts.Node}
	for _, a := range s.opts.Announcers {
		if k, ok := a.(Keeper); ok && k.KeepOnExit() {
			continue
		}
		if _, err := a.Announce(ctx, empty); err != nil {
			s.log.Error(err, "withdrawing failed")
		}
	}
	s.announced = map[announceKey]Announcement{}
	countAnnouncements(s.announced)
}

// State reads the cluster from the cache.
func (s *Speaker) State(ctx context.Context) (*State, error) {
	st := &State{
		Node:  s.opts.Node,
		Nodes: map[string]*corev1.Node{},
		Pools: map[string]*v1alpha1.AddressPool{},
	}
	if ms := s.members.Load(); ms != nil {
		st.Members = *ms
	}
	var nodes corev1.NodeList
	if err := s.cache.List(ctx, &nodes); err != nil {
		return nil, err
	}
	for i := range nodes.Items {
		st.Nodes[nodes.Items[i].Name] = &nodes.Items[i]
	}
	var ps v1alpha1.AddressPoolList
	if err := s.cache.List(ctx, &ps); err != nil {
		return nil, err
	}
	for i := range ps.Items {
		st.Pools[ps.Items[i].Name] = &ps.Items[i]
	}
	if err := st.readNamespaces(ctx, s.cache); err != nil {
		return nil, err
	}
	var l2 v1alpha1.L2AdvertisementList
	if err := s.cache.List(ctx, &l2); err != nil {
		return nil, err
	}
	for i := range l2.Items {
		st.L2Advertisements = append(st.L2Advertisements, &l2.Items[i])
	}
	var bgp v1alpha1.BGPAdvertisementList
	if err := s.cache.List(ctx, &bgp); err != nil {
		return nil, err
	}
	for i := range bgp.Items {
		st.BGPAdvertisements = append(st.BGPAdvertisements, &bgp.Items[i])
	}
	var peers v1alpha1.BGPPeerList
	if err := s.cache.List(ctx, &peers); err != nil {
		return nil, err
	}
	for i := range peers.Items {
		st.BGPPeers = append(st.BGPPeers, &peers.Items[i])
	}

	var svcs corev1.ServiceList
	if err := s.cache.List(ctx, &svcs); err != nil {
		return nil, err
	}
	var eps discoveryv1.EndpointSliceList
	if err := s.cache.List(ctx, &eps); err != nil {
		return nil, err
	}
	ready := map[types.NamespacedName]map[string]bool{}
	for _, es := range eps.Items {
		name := es.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		key := types.NamespacedName{Namespace: es.Namespace, Name: name}
		for _, ep := range es.Endpoints {
			if ep.NodeName == nil || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			if ready[key] == nil {
				ready[key] = map[string]bool{}
			}
			ready[key][*ep.NodeName] = true
		}
	}
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		if !s.opts.Classes.Ours(svc) {
			continue
		}
		var ips []netip.Addr
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ip, err := netip.ParseAddr(ing.IP); err == nil {
				ips = append(ips, ip.Unmap())
			}
		}
		if len(ips) == 0 {
			continue
		}
		key := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
		pool := svc.Annotations[lbservice.AnnotationAllocatedFrom]
		if pool == "" {
			pool = poolOf(st.Pools, ips[0])
		}
		st.Services = append(st.Services, Service{
			Name:         key,
			IPs:          ips,
			Pool:         pool,
			LocalTraffic: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
			ReadyNodes:   ready[key],
			Object:       svc,
		})
	}
	slices.SortFunc(st.Services, func(a, b Service) int { return strings.Compare(a.Name.String(), b.Name.String()) })
	return st, nil
}
