package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/speaker"
	"github.com/portico-lb/portico/speaker/bgp"
)

// Row is one line of `porticoctl status`: one address of a Service and
// one node announcing it (several rows for BGP, where every eligible node
// announces).
type Row struct {
	Namespace, Name string
	IP              string // "<pending>" when the Service has none yet
	Pool            string
	Node            string
	Protocol        string
	Via             string
}

// Status reads the LoadBalancer Services Portico serves in namespace (all
// when empty) and the speakers' Events about them.
func Status(ctx context.Context, c client.Reader, namespace string) ([]Row, error) {
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	var evs eventsv1.EventList
	if err := c.List(ctx, &evs, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing Events: %w", err)
	}
	byUID := map[types.UID][]eventsv1.Event{}
	for _, e := range evs.Items {
		if e.Reason == speaker.ReasonAnnounced || e.Reason == speaker.ReasonWithdrawn {
			byUID[e.Regarding.UID] = append(byUID[e.Regarding.UID], e)
		}
	}
	var rows []Row
	for _, svc := range svcs.Items {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		if c := svc.Spec.LoadBalancerClass; c != nil && *c != speaker.LoadBalancerClass {
			continue
		}
		base := Row{Namespace: svc.Namespace, Name: svc.Name, Pool: svc.Annotations[speaker.AnnotationAllocatedFrom]}
		if len(svc.Status.LoadBalancer.Ingress) == 0 {
			r := base
			r.IP = "<pending>"
			rows = append(rows, r)
			continue
		}
		announcers := Announcers(byUID[svc.UID])
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			list := announcers[ing.IP]
			if len(list) == 0 {
				r := base
				r.IP = ing.IP
				rows = append(rows, r)
			}
			for _, a := range list {
				r := base
				r.IP, r.Node, r.Protocol, r.Via = ing.IP, a.Node, a.Protocol, strings.Join(a.Via, ",")
				rows = append(rows, r)
			}
		}
	}
	return rows, nil
}

// Announcer is a node announcing an address, as the Events tell.
type Announcer struct {
	Node     string
	Protocol string
	Via      []string
	At       time.Time
}

// Announcers works out from a Service's Events who announces each of its
// addresses now: for each (address, protocol, node), the latest Event
// counts. For layer 2, where one node owns an address, the latest of the
// nodes still announcing wins, since an owner that died could not say it
// stopped. For BGP every node still announcing is listed.
func Announcers(events []eventsv1.Event) map[string][]Announcer {
	type key struct{ ip, protocol, node string }
	type last struct {
		verb string
		a    Announcer
	}
	latest := map[key]last{}
	for _, e := range events {
		verb, an, node, ok := speaker.ParseNote(e.Note)
		if !ok {
			continue
		}
		at := eventTime(e)
		k := key{an.IP.String(), an.Protocol, node}
		if l, ok := latest[k]; ok && l.a.At.After(at) {
			continue
		}
		latest[k] = last{verb, Announcer{Node: node, Protocol: an.Protocol, Via: an.Via, At: at}}
	}
	out := map[string][]Announcer{}
	for k, l := range latest {
		if l.verb != "announcing" {
			continue
		}
		out[k.ip] = append(out[k.ip], l.a)
	}
	for ip, list := range out {
		slices.SortFunc(list, func(a, b Announcer) int {
			if c := strings.Compare(a.Protocol, b.Protocol); c != 0 {
				return c
			}
			if c := b.At.Compare(a.At); c != 0 {
				return c
			}
			return strings.Compare(a.Node, b.Node)
		})
		// Layer 2: keep only the latest announcer.
		kept := list[:0]
		seenL2 := false
		for _, a := range list {
			if a.Protocol == speaker.ProtocolL2 {
				if seenL2 {
					continue
				}
				seenL2 = true
			}
			kept = append(kept, a)
		}
		out[ip] = kept
	}
	return out
}

// eventTime is when an Event last happened: its series' last observation
// when it repeated, else its eventTime, else the deprecated timestamps.
func eventTime(e eventsv1.Event) time.Time {
	t := e.EventTime.Time
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	if e.DeprecatedLastTimestamp.After(t) {
		t = e.DeprecatedLastTimestamp.Time
	}
	return t
}

// Session is one node's BGP session to a BGPPeer, as the speakers' Events
// tell: the latest SessionUp or SessionDown per (peer, node).
type Session struct {
	Peer, Node, Address, State string
	Up                         bool
	Since                      time.Time
}

// Sessions reads the speakers' session Events. Events about cluster-scoped
// objects such as BGPPeers live in the default namespace.
func Sessions(ctx context.Context, c client.Reader) ([]Session, error) {
	var evs eventsv1.EventList
	if err := c.List(ctx, &evs, client.InNamespace(metav1.NamespaceDefault)); err != nil {
		return nil, fmt.Errorf("listing Events: %w", err)
	}
	latest := map[[2]string]Session{}
	for _, e := range evs.Items {
		if e.Regarding.Kind != "BGPPeer" || (e.Reason != bgp.ReasonSessionUp && e.Reason != bgp.ReasonSessionDown) {
			continue
		}
		node, addr, state, ok := bgp.ParseSessionNote(e.Note)
		if !ok {
			continue
		}
		k := [2]string{e.Regarding.Name, node}
		at := eventTime(e)
		if s, seen := latest[k]; seen && s.Since.After(at) {
			continue
		}
		latest[k] = Session{Peer: e.Regarding.Name, Node: node, Address: addr.String(), State: state, Up: e.Reason == bgp.ReasonSessionUp, Since: at}
	}
	out := make([]Session, 0, len(latest))
	for _, s := range latest {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Session) int {
		if c := strings.Compare(a.Peer, b.Peer); c != 0 {
			return c
		}
		return strings.Compare(a.Node, b.Node)
	})
	return out, nil
}
