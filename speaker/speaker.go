package speaker

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
	// RetryAfter is how long to wait before calling the announcers again
	// after one failed.
	RetryAfter time.Duration
	// Status, if set, is told what this node announces after every
	// change, and writes it as ServiceAnnouncements. Start runs it.
	Status *status.Announcements
	// Classes says which Services are ours; RequireClass leaves
	// class-less Services to another load balancer.
	Classes lbservice.Classes
	Log     logr.Logger
}

// Speaker keeps this node's announcements in line with the cluster. One
// goroutine (Start) builds each State and calls the announcers; informers
// and membership only kick it.
type Speaker struct {
	cache cache.Cache
	// events is the core/v1 recorder: the events.k8s.io one merges Events
	// that differ only in their note, so announcing a Service's IPv6
	// address right after its IPv4 one would not show.
	events  record.EventRecorder
	opts    Options
	log     logr.Logger
	members atomic.Pointer[[]member.Member]
	kick    chan struct{}
	// announced is what this node announced last, by Service, IP and
	// protocol. Owned by Start's goroutine.
	announced map[announceKey]Announcement
	// rebuilds counts States handed to the announcers; tests read it.
	rebuilds atomic.Int64
}

type announceKey struct {
	service  types.NamespacedName
	ip       netip.Addr
	protocol string
}

// New returns a Speaker that reads the cluster from c and posts Events
// with rec. Add it to a manager, which runs Start.
func New(c cache.Cache, rec record.EventRecorder, opts Options) *Speaker {
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = time.Second
	}
	return &Speaker{
		cache:     c,
		events:    rec,
		opts:      opts,
		log:       opts.Log,
		kick:      make(chan struct{}, 1),
		announced: map[announceKey]Announcement{},
	}
}

// SetMembers takes the live speakers; member.Config.OnChange calls it.
func (s *Speaker) SetMembers(ms []member.Member) {
	ms = slices.Clone(ms)
	s.members.Store(&ms)
	s.poke()
}

func (s *Speaker) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// NeedLeaderElection is false: every node's speaker runs.
func (s *Speaker) NeedLeaderElection() bool { return false }

// Start watches the API through the cache and announces until ctx ends,
// then withdraws everything.
func (s *Speaker) Start(ctx context.Context) error {
	kick := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.poke() },
		UpdateFunc: func(any, any) { s.poke() },
		DeleteFunc: func(any) { s.poke() },
	}
	for _, obj := range []client.Object{
		&corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Node{},
		&v1alpha1.AddressPool{}, &v1alpha1.L2Advertisement{},
		&v1alpha1.BGPAdvertisement{}, &v1alpha1.BGPPeer{},
	} {
		inf, err := s.cache.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(kick); err != nil {
			return err
		}
	}
	if s.opts.Status != nil {
		// The status writer reads ServiceAnnouncements through the same
		// cache: synced here, it never waits on an informer at shutdown.
		inf, err := s.cache.GetInformer(ctx, &v1alpha1.ServiceAnnouncement{})
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(s.opts.Status.Handler()); err != nil {
			return err
		}
	}
	if !s.cache.WaitForCacheSync(ctx) {
		return errors.New("the cache did not sync")
	}
	s.log.Info("watching the cluster", "node", s.opts.Node)
	if w := s.opts.Status; w != nil {
		// Its own goroutine: writing to the API never holds up announcing.
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()
		defer func() { <-done }()
	}

	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	s.poke()
	for {
		select {
		case <-ctx.Done():
			s.withdraw()
			return nil
		case <-s.kick:
		case <-retry.C:
		}
		if err := s.sync(ctx); err != nil {
			s.log.Error(err, "announcing failed; retrying", "after", s.opts.RetryAfter)
			retry.Reset(s.opts.RetryAfter)
		}
	}
}

// sync builds a State and hands it to every announcer.
func (s *Speaker) sync(ctx context.Context) error {
	st, err := s.State(ctx)
	if err != nil {
		// The cache only fails on a programming error or a missing
		// kind; keep announcing what we had.
		return err
	}
	s.rebuilds.Add(1)
	return s.announce(ctx, st)
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
