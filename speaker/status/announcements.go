// Package status publishes what a speaker does as objects users and
// porticoctl read: one ServiceAnnouncement per Service and protocol the
// node announces, and the node's own entry in the status of each BGPPeer
// it has a session with.
//
// Writing is off the announcing path. The speaker hands the writers the
// whole picture, which they keep as the latest value only (never a queue),
// and one goroutine per writer brings the API in line with it, rate
// limited: a slow or absent API server delays the objects, never ARP, NDP
// or BGP.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// Announcement is what this node announces of one Service with one
// protocol.
type Announcement struct {
	Service types.NamespacedName
	// ServiceUID makes the ServiceAnnouncement owned by the Service.
	ServiceUID types.UID
	Protocol   string
	IPs        []string
	// Via are the interfaces (layer2) or the peers (bgp).
	Via []string
}

// Options tune a writer; the zero value is what a speaker wants.
type Options struct {
	// QPS and Burst bound the writer's API calls (default 20 and 50).
	QPS   float64
	Burst int
	// Resync is how often the writer rewrites what it wants even when
	// nothing changed, repairing objects others deleted or edited
	// (default 1m).
	Resync time.Duration
	// Retry is the wait after a failed pass (default 1s).
	Retry time.Duration
	// CleanupTimeout bounds the deletion of this node's objects when the
	// writer stops (default 2s).
	CleanupTimeout time.Duration
	Log            logr.Logger
}

func (o *Options) defaults() {
	if o.QPS <= 0 {
		o.QPS = 20
	}
	if o.Burst <= 0 {
		o.Burst = 50
	}
	if o.Resync <= 0 {
		o.Resync = time.Minute
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	if o.CleanupTimeout <= 0 {
		o.CleanupTimeout = 2 * time.Second
	}
}

// Announcements keeps this node's ServiceAnnouncements equal to what the
// speaker last said it announces, and removes those of nodes that are
// gone:
//
//   - a node that owns a Service at layer 2 deletes the layer2 objects of
//     that Service naming nodes that are not live speakers, so that on
//     failover the old owner's object goes as the new owner's comes, even
//     though the old owner can no longer say so;
//   - the live speaker that ranks first by name deletes every object
//     naming a node that is not a live speaker (BGP announcements of a
//     dead node, layer 2 ones nobody took over).
//
// Objects are read through the client's cache and written to the API.
type Announcements struct {
	client client.Client
	node   string
	opts   Options
	log    logr.Logger
	limit  *rate.Limiter

	mu   sync.Mutex
	want *wanted // latest Set; nil until the first
	// gone are this node's objects someone else deleted, by UID.
	gone map[types.NamespacedName]types.UID
	kick chan struct{}

	// Owned by Run: what the API holds of this node's objects, as last
	// written or read.
	have    map[types.NamespacedName]have
	members string // the live speakers at the last pass without errors
	reread  bool   // the cache and the API disagreed: read again
}

type wanted struct {
	anns    map[types.NamespacedName]Announcement
	members []string // sorted
	at      time.Time
}

type have struct {
	uid        types.UID // the Service's
	status     v1alpha1.ServiceAnnouncementStatus
	objectUID  types.UID
	statusSeen bool
}

// NewAnnouncements returns a writer for node's objects; Run runs it.
func NewAnnouncements(c client.Client, node string, opts Options) *Announcements {
	opts.defaults()
	return &Announcements{
		client: c,
		node:   node,
		opts:   opts,
		log:    opts.Log,
		limit:  rate.NewLimiter(rate.Limit(opts.QPS), opts.Burst),
		kick:   make(chan struct{}, 1),
	}
}

// Set says what this node announces now, and which speakers are alive. It
// never blocks: the writer catches up when it can, with the latest Set.
func (w *Announcements) Set(anns []Announcement, members []string) {
	wt := &wanted{anns: map[types.NamespacedName]Announcement{}, members: slices.Sorted(slices.Values(members)), at: time.Now()}
	for _, a := range anns {
		a.IPs = slices.Sorted(slices.Values(a.IPs))
		a.Via = slices.Compact(slices.Sorted(slices.Values(a.Via)))
		key := types.NamespacedName{Namespace: a.Service.Namespace, Name: v1alpha1.ServiceAnnouncementName(a.Service.Name, w.node, a.Protocol)}
		wt.anns[key] = a
	}
	w.mu.Lock()
	w.want = wt
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Handler is the event handler for the ServiceAnnouncement informer of
// the cache the writer reads: it tells the writer when one of this node's
// objects is deleted by someone else (a node that took the addresses over
// while this one was cut off, a user), so that it writes it again at once
// if this node still announces it.
func (w *Announcements) Handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		sa, ok := obj.(*v1alpha1.ServiceAnnouncement)
		if !ok || sa.Labels[v1alpha1.NodeNameLabel] != w.node {
			return
		}
		w.mu.Lock()
		if w.gone == nil {
			w.gone = map[types.NamespacedName]types.UID{}
		}
		w.gone[client.ObjectKeyFromObject(sa)] = sa.UID
		w.mu.Unlock()
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}}
}

// Run writes until ctx ends, then deletes this node's objects, best effort:
// the speaker is going away and another node takes its addresses.
func (w *Announcements) Run(ctx context.Context) {
	resync := time.NewTicker(w.opts.Resync)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	full := false
	for {
		select {
		case <-ctx.Done():
			w.cleanup()
			return
		case <-w.kick:
		case <-retry.C:
		case <-resync.C:
			full = true
		}
		w.mu.Lock()
		want, gone := w.want, w.gone
		w.gone = nil
		w.mu.Unlock()
		for k, uid := range gone {
			if h, ok := w.have[k]; ok && h.objectUID == uid {
				delete(w.have, k)
			}
		}
		if want == nil {
			continue // nothing said yet: deleting now would only flap
		}
		if err := w.pass(ctx, want, full); err != nil {
			if ctx.Err() != nil {
				continue
			}
			w.log.Error(err, "writing ServiceAnnouncements; retrying", "after", w.opts.Retry)
			retry.Reset(w.opts.Retry)
			continue
		}
		full = false
	}
}

// pass brings the API in line with want. full forgets what it believes
// the API holds and reads it again, and sweeps.
func (w *Announcements) pass(ctx context.Context, want *wanted, full bool) error {
	if w.have == nil || full || w.reread {
		if err := w.readOwn(ctx); err != nil {
			return err
		}
	}
	var errs []error
	// Layer 2 first: those are the ones a failover moves.
	keys := make([]types.NamespacedName, 0, len(want.anns))
	for k := range want.anns {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b types.NamespacedName) int {
		pa, pb := want.anns[a].Protocol, want.anns[b].Protocol
		if pa != pb {
			return strings.Compare(pb, pa) // layer2 before bgp
		}
		return strings.Compare(a.String(), b.String())
	})
	// The Services this node has just begun to own at layer 2, or all it
	// owns when the live speakers changed: their old owners' objects go.
	members := strings.Join(want.members, ",")
	changed := full || members != w.members
	owned := map[types.NamespacedName]bool{}
	for _, k := range keys {
		a := want.anns[k]
		if _, had := w.have[k]; a.Protocol == v1alpha1.ProtocolLayer2 && (!had || changed) {
			owned[a.Service] = true
		}
		if err := w.write(ctx, k, a, want.at); err != nil {
			errs = append(errs, err)
		}
	}
	for k := range w.have {
		if _, ok := want.anns[k]; ok {
			continue
		}
		if err := w.delete(ctx, k, ""); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(w.have, k)
	}
	if err := w.others(ctx, want, owned, changed); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		w.members = members
	}
	return errors.Join(errs...)
}

// readOwn reads this node's objects from the cache.
func (w *Announcements) readOwn(ctx context.Context) error {
	var list v1alpha1.ServiceAnnouncementList
	if err := w.client.List(ctx, &list, client.MatchingLabels{v1alpha1.NodeNameLabel: w.node}); err != nil {
		return fmt.Errorf("listing this node's ServiceAnnouncements: %w", err)
	}
	w.have, w.reread = map[types.NamespacedName]have{}, false
	for i := range list.Items {
		sa := &list.Items[i]
		var uid types.UID
		for _, o := range sa.OwnerReferences {
			if o.Kind == "Service" {
				uid = o.UID
			}
		}
		w.have[client.ObjectKeyFromObject(sa)] = have{uid: uid, status: sa.Status, objectUID: sa.UID, statusSeen: sa.Status.Node != ""}
	}
	return nil
}

func (w *Announcements) write(ctx context.Context, key types.NamespacedName, a Announcement, at time.Time) error {
	cur, exists := w.have[key]
	if exists && cur.uid != a.ServiceUID {
		// The Service was deleted and made again: the old object belongs
		// to the old one (and the garbage collector takes it).
		if err := w.delete(ctx, key, cur.objectUID); err != nil {
			return err
		}
		delete(w.have, key)
		exists = false
	}
	st := v1alpha1.ServiceAnnouncementStatus{
		Service:    a.Service.Name,
		Node:       w.node,
		Protocol:   a.Protocol,
		IPs:        a.IPs,
		Interfaces: nil,
		Peers:      nil,
		Since:      metav1.NewTime(at.Truncate(time.Second)),
	}
	if a.Protocol == v1alpha1.ProtocolLayer2 {
		st.Interfaces = a.Via
	} else {
		st.Peers = a.Via
	}
	if exists && cur.statusSeen {
		st.Since = cur.status.Since // announced since then, whatever changed
		if equalStatus(cur.status, st) {
			return nil
		}
	}
	if !exists {
		sa := &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{
			Namespace: key.Namespace,
			Name:      key.Name,
			Labels:    map[string]string{v1alpha1.ServiceNameLabel: a.Service.Name, v1alpha1.NodeNameLabel: w.node},
			// Owned, not controlled: the Service has one controller
			// already, and the object must not hold up its deletion.
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         "v1",
				Kind:               "Service",
				Name:               a.Service.Name,
				UID:                a.ServiceUID,
				BlockOwnerDeletion: new(bool),
			}},
		}}
		if err := w.limit.Wait(ctx); err != nil {
			return err
		}
		err := w.client.Create(ctx, sa)
		switch {
		case apierrors.IsAlreadyExists(err):
			// Ours from before a restart the cache had not shown yet, or a
			// Service made again: read it next pass.
			w.reread = true
			return fmt.Errorf("ServiceAnnouncement %s exists already; reading it again", key)
		case apierrors.IsNotFound(err) || apierrors.IsForbidden(err) && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
			return nil // the namespace is going; so is the Service
		case err != nil:
			return fmt.Errorf("creating ServiceAnnouncement %s: %w", key, err)
		}
		w.have[key] = have{uid: a.ServiceUID, objectUID: sa.UID}
		w.log.V(1).Info("created ServiceAnnouncement", "service", a.Service.String(), "protocol", a.Protocol, "node", w.node)
	}
	patch, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	if err := w.limit.Wait(ctx); err != nil {
		return err
	}
	sa := &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if err := w.client.Status().Patch(ctx, sa, client.RawPatch(types.MergePatchType, patch)); err != nil {
		if apierrors.IsNotFound(err) {
			delete(w.have, key) // deleted meanwhile: made again next pass
		}
		return fmt.Errorf("writing the status of ServiceAnnouncement %s: %w", key, err)
	}
	h := w.have[key]
	h.status, h.statusSeen = st, true
	w.have[key] = h
	return nil
}

func equalStatus(a, b v1alpha1.ServiceAnnouncementStatus) bool {
	return a.Service == b.Service && a.Node == b.Node && a.Protocol == b.Protocol &&
		slices.Equal(a.IPs, b.IPs) && slices.Equal(a.Interfaces, b.Interfaces) &&
		slices.Equal(a.Peers, b.Peers) && a.Since.Equal(&b.Since)
}

// delete deletes one object, only if it is still the one with uid when uid
// is set; an object already gone is fine.
func (w *Announcements) delete(ctx context.Context, key types.NamespacedName, uid types.UID) error {
	if err := w.limit.Wait(ctx); err != nil {
		return err
	}
	sa := &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	var opts []client.DeleteOption
	if uid != "" {
		opts = append(opts, client.Preconditions{UID: &uid})
	}
	if err := w.client.Delete(ctx, sa, opts...); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting ServiceAnnouncement %s: %w", key, err)
	}
	w.log.V(1).Info("deleted ServiceAnnouncement", "name", key.String())
	return nil
}

// others deletes the objects of nodes that are not live speakers: the
// layer2 ones of the Services in owned (this node took them over), and,
// when sweep is set and this node is the live speaker that ranks first by
// name, all of them.
func (w *Announcements) others(ctx context.Context, want *wanted, owned map[types.NamespacedName]bool, sweep bool) error {
	sweep = sweep && len(want.members) > 0 && want.members[0] == w.node
	if len(owned) == 0 && !sweep {
		return nil
	}
	var list v1alpha1.ServiceAnnouncementList
	if err := w.client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing ServiceAnnouncements: %w", err)
	}
	var errs []error
	for i := range list.Items {
		sa := &list.Items[i]
		node := sa.Labels[v1alpha1.NodeNameLabel]
		if node == "" || node == w.node || slices.Contains(want.members, node) {
			continue
		}
		svc := types.NamespacedName{Namespace: sa.Namespace, Name: sa.Labels[v1alpha1.ServiceNameLabel]}
		if !sweep && (sa.Status.Protocol != v1alpha1.ProtocolLayer2 || !owned[svc]) {
			continue
		}
		w.log.Info("deleting the ServiceAnnouncement of a node that is gone", "service", svc.String(), "node", node, "protocol", sa.Status.Protocol)
		if err := w.delete(ctx, client.ObjectKeyFromObject(sa), sa.UID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cleanup deletes this node's objects as the speaker stops.
func (w *Announcements) cleanup() {
	if len(w.have) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.opts.CleanupTimeout)
	defer cancel()
	// Not rate limited, a few at a time: it is the last thing the writer
	// does, and the process is about to exit.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for k := range w.have {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			sa := &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}
			if err := w.client.Delete(ctx, sa); err != nil && !apierrors.IsNotFound(err) {
				w.log.Error(err, "deleting ServiceAnnouncement on exit", "name", k.String())
			}
		}()
	}
	wg.Wait()
	w.have = nil
}
