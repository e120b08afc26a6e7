package controller_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
)

// churnService is the test's model of what a Service asks for.
type churnService struct {
	obj      *corev1.Service
	lb       bool
	class    string // "", lbservice.Class or a foreign class
	pool     string // requested pool: "", "churn-extra" or "nope"
	key      string // sharing key
	local    bool
	port     int32
	selector string
	touched  bool // changed after creation: its address may legitimately move
	// wasServed: it was once a valid request for an address. Such a
	// Service keeps its address when it later asks for something that
	// cannot be met (an unknown pool), so then either state is right.
	wasServed bool
}

func (s *churnService) served() bool {
	return s.lb && (s.class == "" || s.class == lbservice.Class)
}

// want says whether the Service must have an address (yes), must not (no),
// or may keep one it had (either).
func (s *churnService) want() string {
	switch {
	case !s.served():
		return "no"
	case s.pool != "nope":
		return "yes"
	case s.wasServed:
		return "either"
	}
	return "no"
}

// note records that the request is now valid, after any change.
func (s *churnService) note() {
	if s.served() && s.pool != "nope" {
		s.wasServed = true
	}
	if !s.served() {
		s.wasServed = false // released: nothing to keep
	}
}

// ipHistory records every address change of every churn Service, as seen
// by a watch, so the test judges the whole history and not only the end.
type ipHistory struct {
	mu      sync.Mutex
	changes map[string][]ipChange
}

type ipChange struct {
	at  time.Time
	ips string
}

func (h *ipHistory) record(obj any) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	var ips []string
	for _, i := range svc.Status.LoadBalancer.Ingress {
		ips = append(ips, i.IP)
	}
	cur := strings.Join(ips, ",")
	h.mu.Lock()
	defer h.mu.Unlock()
	key := svc.Namespace + "/" + svc.Name
	hist := h.changes[key]
	if len(hist) == 0 || hist[len(hist)-1].ips != cur {
		h.changes[key] = append(hist, ipChange{at: time.Now(), ips: cur})
	}
}

func watchHistory(t *testing.T) *ipHistory {
	cs, err := kubernetes.NewForConfig(apiConfig)
	if err != nil {
		t.Fatal(err)
	}
	h := &ipHistory{changes: map[string][]ipChange{}}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = "churn=1"
	}))
	inf := f.Core().V1().Services().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    h.record,
		UpdateFunc: func(_, n any) { h.record(n) },
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return h
}

// removal is a range taken out of a pool at a moment of the run.
type removal struct {
	prefix netip.Prefix
	at     time.Time
}

// TestChurn drives 2,000 random operations against the real API server,
// restarting the controller twice on the way, then checks the invariants:
// no address held by two Services that may not share it, every Service that
// can have an address has one, and no Service left alone ever saw its
// address change.
func TestChurn(t *testing.T) {
	const ops = 2000
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHURN_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (CHURN_SEED=%d reproduces)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	stop := runController(t, true)
	cleanup(t)
	hist := watchHistory(t)
	makePool(t, "churn-main", []string{"198.51.100.0/24", "192.0.2.0/24"})
	makePool(t, "churn-extra", []string{"203.0.113.0/25"}, notAuto)
	const movable = "203.0.113.128/27"
	var removals []removal
	extraHasMovable := false

	live := map[string]*churnService{}
	names := func() []string {
		n := make([]string, 0, len(live))
		for k := range live {
			n = append(n, k)
		}
		sort.Strings(n)
		return n
	}
	pick := func() *churnService {
		n := names()
		if len(n) == 0 {
			return nil
		}
		return live[n[rng.IntN(len(n))]]
	}
	update := func(s *churnService, change func(*corev1.Service)) {
		updateService(t, s.obj, change)
		s.touched = true
		s.note()
	}

	for i := range ops {
		if i == ops/3 || i == 2*ops/3 {
			stop()
			stop = runController(t, true)
		}
		switch r := rng.IntN(100); {
		case r < 30 || len(live) == 0: // create
			s := &churnService{lb: true, port: []int32{80, 443, 8080}[rng.IntN(3)]}
			s.key = []string{"", "", "k1", "k2"}[rng.IntN(4)]
			s.pool = []string{"", "", "", "", "", "", "churn-extra", "churn-extra", "nope", ""}[rng.IntN(10)]
			s.local = rng.IntN(5) == 0
			s.selector = []string{"a", "b"}[rng.IntN(2)]
			if rng.IntN(6) == 0 {
				s.class = []string{lbservice.Class, "example.com/other"}[rng.IntN(2)]
			}
			opts := []svcOpt{labels("churn", "1"), ports(s.port), selector("app", s.selector), namespace([]string{"default", "team-a"}[rng.IntN(2)])}
			if s.key != "" {
				opts = append(opts, annotate(lbservice.AnnotationSharing, s.key))
			}
			if s.pool != "" {
				opts = append(opts, annotate(lbservice.AnnotationPool, s.pool))
			}
			if s.local {
				opts = append(opts, local)
			}
			if s.class != "" {
				opts = append(opts, class(s.class))
			}
			s.obj = makeService(t, fmt.Sprintf("c%d", i), opts...)
			s.note()
			live[s.obj.Namespace+"/"+s.obj.Name] = s
		case r < 55: // delete
			s := pick()
			deleteObject(t, s.obj)
			delete(live, s.obj.Namespace+"/"+s.obj.Name)
		case r < 65: // type change
			s := pick()
			s.lb = !s.lb
			s.class = ""
			update(s, func(o *corev1.Service) {
				o.Spec.LoadBalancerClass = nil
				o.Spec.AllocateLoadBalancerNodePorts = nil
				o.Spec.ExternalTrafficPolicy = ""
				for i := range o.Spec.Ports {
					o.Spec.Ports[i].NodePort = 0
				}
				o.Spec.HealthCheckNodePort = 0
				if s.lb {
					o.Spec.Type = corev1.ServiceTypeLoadBalancer
					if s.local {
						o.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
					}
				} else {
					o.Spec.Type = corev1.ServiceTypeClusterIP
				}
			})
		case r < 72: // class change, through ClusterIP as the API demands
			s := pick()
			if !s.lb {
				continue
			}
			s.class = []string{"", lbservice.Class, "example.com/other"}[rng.IntN(3)]
			update(s, func(o *corev1.Service) {
				o.Spec.Type = corev1.ServiceTypeClusterIP
				o.Spec.LoadBalancerClass = nil
				o.Spec.AllocateLoadBalancerNodePorts = nil
				o.Spec.ExternalTrafficPolicy = ""
				o.Spec.HealthCheckNodePort = 0
				for i := range o.Spec.Ports {
					o.Spec.Ports[i].NodePort = 0
				}
			})
			update(s, func(o *corev1.Service) {
				o.Spec.Type = corev1.ServiceTypeLoadBalancer
				if s.class != "" {
					o.Spec.LoadBalancerClass = ptr.To(s.class)
				}
				if s.local {
					o.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				}
			})
		case r < 88: // annotation change
			s := pick()
			if rng.IntN(2) == 0 {
				s.key = []string{"", "k1", "k2", "k3"}[rng.IntN(4)]
			} else {
				s.pool = []string{"", "churn-extra", "nope"}[rng.IntN(3)]
			}
			update(s, func(o *corev1.Service) {
				if o.Annotations == nil {
					o.Annotations = map[string]string{}
				}
				delete(o.Annotations, lbservice.AnnotationSharing)
				delete(o.Annotations, lbservice.AnnotationPool)
				if s.key != "" {
					o.Annotations[lbservice.AnnotationSharing] = s.key
				}
				if s.pool != "" {
					o.Annotations[lbservice.AnnotationPool] = s.pool
				}
			})
		default: // pool edit: grow or shrink churn-extra, or flip its autoAssign
			grow, flip := rng.IntN(3) == 0, rng.IntN(2) == 0
			has := editPool(t, "churn-extra", func(p *v1alpha1.AddressPool) {
				if grow {
					if slices.Contains(p.Spec.Addresses, movable) {
						p.Spec.Addresses = []v1alpha1.AddressRange{"203.0.113.0/25"}
					} else {
						p.Spec.Addresses = append(p.Spec.Addresses, movable)
					}
				} else if flip {
					p.Spec.AutoAssign = ptr.To(!ptr.Deref(p.Spec.AutoAssign, true))
				}
			})
			if has != extraHasMovable {
				if !has {
					removals = append(removals, removal{prefix: netip.MustParsePrefix(movable), at: time.Now()})
				}
				extraHasMovable = has
			}
		}
	}

	// Let the controller settle, then judge.
	deadline := time.Now().Add(60 * time.Second)
	var missing []string
	for time.Now().Before(deadline) {
		missing = missing[:0]
		for _, k := range names() {
			s := live[k]
			got := ips(t, s.obj)
			if w := s.want(); (w == "yes" && len(got) == 0) || (w == "no" && len(got) > 0) {
				missing = append(missing, fmt.Sprintf("%s (want address: %s, has %v)", k, w, got))
			}
		}
		if len(missing) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("%d services in the wrong state: %v", len(missing), missing)
	}

	// No two Services hold one address unless they may share it.
	holders := map[string][]*churnService{}
	for _, k := range names() {
		for _, ip := range ips(t, live[k].obj) {
			holders[ip] = append(holders[ip], live[k])
		}
	}
	shared := 0
	for ip, hs := range holders {
		if len(hs) > 1 {
			shared++
		}
		for i := range hs {
			for j := i + 1; j < len(hs); j++ {
				if why := mayNotShare(hs[i], hs[j]); why != "" {
					t.Errorf("%s is held by %s/%s and %s/%s: %s", ip, hs[i].obj.Namespace, hs[i].obj.Name, hs[j].obj.Namespace, hs[j].obj.Name, why)
				}
			}
		}
	}

	// No untouched Service ever saw its address change, except when the
	// range holding it had been removed from its pool.
	hist.mu.Lock()
	defer hist.mu.Unlock()
	untouched, checked := 0, 0
	for _, k := range names() {
		s := live[k]
		if s.touched {
			continue
		}
		untouched++
		var prev ipChange
		for _, c := range hist.changes[k] {
			if prev.ips != "" && c.ips != prev.ips && !movedByRemoval(prev.ips, c.at, removals) {
				t.Errorf("untouched %s changed from %q to %q at %s", k, prev.ips, c.ips, c.at.Format(time.StampMilli))
			}
			checked++
			prev = c
		}
	}
	t.Logf("%d ops, %d live services (%d untouched, %d history entries checked), %d shared addresses, %d range removals",
		ops, len(live), untouched, checked, shared, len(removals))
	if untouched == 0 || checked == 0 {
		t.Fatalf("the run checked nothing: %d untouched services, %d history entries", untouched, checked)
	}
}

func mayNotShare(a, b *churnService) string {
	switch {
	case a.key == "" || a.key != b.key:
		return fmt.Sprintf("sharing keys %q and %q", a.key, b.key)
	case a.port == b.port:
		return fmt.Sprintf("both use TCP port %d", a.port)
	case a.local != b.local:
		return "Local and Cluster traffic policies"
	case a.local && a.selector != b.selector:
		return "Local Services with different selectors"
	}
	return ""
}

func movedByRemoval(ips string, at time.Time, removals []removal) bool {
	for _, s := range strings.Split(ips, ",") {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		for _, r := range removals {
			if r.prefix.Contains(ip) && r.at.Before(at) {
				return true
			}
		}
	}
	return false
}

// editPool applies change to the pool, retrying on conflicts with the
// controller's status writes, and reports whether the movable range is in it.
func editPool(t *testing.T, name string, change func(*v1alpha1.AddressPool)) bool {
	t.Helper()
	p := update(t, &v1alpha1.AddressPool{ObjectMeta: metav1.ObjectMeta{Name: name}}, change)
	return slices.Contains(p.Spec.Addresses, "203.0.113.128/27")
}
