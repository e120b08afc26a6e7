package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
)

// StatusReport is `status -o json|yaml`: every LoadBalancer Service
// Portico serves, in namespace/name order.
type StatusReport struct {
	Services []ServiceStatus `json:"services"`
}

// ServiceStatus is one Service: its addresses and who announces each.
type ServiceStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Pool is the controller's allocated-from-pool annotation.
	Pool string `json:"pool,omitempty"`
	// Pending is true while the Service has no address.
	Pending   bool            `json:"pending,omitempty"`
	Addresses []AddressStatus `json:"addresses"`
}

// AddressStatus is one address of a Service.
type AddressStatus struct {
	IP string `json:"ip"`
	// Announced is false when no speaker has a ServiceAnnouncement for
	// the address: nothing on the network answers for it.
	Announced  bool        `json:"announced"`
	Announcers []Announcer `json:"announcers,omitempty"`
}

// Announcer is one node announcing an address, from its speaker's
// ServiceAnnouncement.
type Announcer struct {
	Node       string      `json:"node"`
	Protocol   string      `json:"protocol"`
	Interfaces []string    `json:"interfaces,omitempty"`
	Peers      []string    `json:"peers,omitempty"`
	Since      metav1.Time `json:"since"`
	// Object is the ServiceAnnouncement's name.
	Object string `json:"object"`
}

func statusCommand(e *env) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show who announces what: each LoadBalancer Service's addresses, pool and announcing nodes",
		Long: `Show who announces what: for each LoadBalancer Service Portico serves,
its addresses, the pool they came from, and the nodes announcing each one,
by which protocol, as the speakers' ServiceAnnouncement objects say.

An address no speaker announces shows as "not announced"; ` + "`explain service`" + ` says why.
Like kubectl, it looks in the current namespace; -A looks in all.`,
		Example: "  " + name() + " status -A\n  " + name() + " status -n shop -o wide",
		Args:    exactArgs(0),
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "Services of every namespace")
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*output); err != nil {
			return err
		}
		ns := ""
		if !all {
			var err error
			if ns, err = e.namespace(); err != nil {
				return err
			}
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		rep, err := Status(cmd.Context(), c, ns)
		if err != nil {
			return err
		}
		if done, err := writeStructured(e.out, *output, rep); done {
			return err
		}
		return printStatus(e.out, rep, *output == outputWide, all, ns)
	}
	return cmd
}

// Status reads the LoadBalancer Services Portico serves in namespace (all
// when empty) and the speakers' ServiceAnnouncements of them.
func Status(ctx context.Context, c client.Reader, namespace string) (*StatusReport, error) {
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	var anns v1alpha1.ServiceAnnouncementList
	if err := c.List(ctx, &anns, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing ServiceAnnouncements (are Portico's CRDs installed?): %w", err)
	}
	byService := map[types.NamespacedName][]v1alpha1.ServiceAnnouncement{}
	for _, a := range anns.Items {
		svc := a.Labels[v1alpha1.ServiceNameLabel]
		if svc == "" {
			svc = a.Status.Service
		}
		k := types.NamespacedName{Namespace: a.Namespace, Name: svc}
		byService[k] = append(byService[k], a)
	}
	rep := &StatusReport{Services: []ServiceStatus{}}
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		if !lbservice.Ours(svc) {
			continue
		}
		rep.Services = append(rep.Services, serviceStatus(svc, byService[client.ObjectKeyFromObject(svc)]))
	}
	slices.SortFunc(rep.Services, func(a, b ServiceStatus) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return rep, nil
}

// serviceStatus pairs a Service's addresses with the announcements of
// them. An announcement owned by another Service of the same name (one
// deleted and made again) or of an address the Service no longer has is
// left out: it is on its way out.
func serviceStatus(svc *corev1.Service, anns []v1alpha1.ServiceAnnouncement) ServiceStatus {
	out := ServiceStatus{
		Namespace: svc.Namespace,
		Name:      svc.Name,
		Pool:      svc.Annotations[lbservice.AnnotationAllocatedFrom],
		Addresses: []AddressStatus{},
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP == "" {
			continue
		}
		as := AddressStatus{IP: ing.IP}
		for _, a := range anns {
			if !ownedBy(&a, svc) || !slices.Contains(a.Status.IPs, ing.IP) {
				continue
			}
			as.Announcers = append(as.Announcers, Announcer{
				Node:       a.Status.Node,
				Protocol:   a.Status.Protocol,
				Interfaces: a.Status.Interfaces,
				Peers:      a.Status.Peers,
				Since:      a.Status.Since,
				Object:     a.Name,
			})
		}
		slices.SortFunc(as.Announcers, func(a, b Announcer) int {
			return cmp.Or(strings.Compare(a.Protocol, b.Protocol), strings.Compare(a.Node, b.Node))
		})
		as.Announced = len(as.Announcers) > 0
		out.Addresses = append(out.Addresses, as)
	}
	out.Pending = len(out.Addresses) == 0
	return out
}

// ownedBy: an announcement with owner references must name svc among them.
func ownedBy(a *v1alpha1.ServiceAnnouncement, svc *corev1.Service) bool {
	if len(a.OwnerReferences) == 0 {
		return true
	}
	return slices.ContainsFunc(a.OwnerReferences, func(r metav1.OwnerReference) bool { return r.UID == svc.UID })
}

func printStatus(out io.Writer, rep *StatusReport, wide, all bool, ns string) error {
	if len(rep.Services) == 0 {
		where := fmt.Sprintf("in namespace %q", ns)
		if all {
			where = "in any namespace"
		}
		_, err := fmt.Fprintf(out, "No LoadBalancer Service of Portico %s.\n", where)
		return err
	}
	header := []string{"NAMESPACE", "NAME", "IP", "POOL", "PROTOCOL", "ANNOUNCED BY"}
	if wide {
		header = append(header, "VIA", "SINCE")
	}
	t := newTable(out, header...)
	type hint struct{ what, ns, name string }
	var hints []hint
	for _, s := range rep.Services {
		if s.Pending {
			t.row(trim(wide, s.Namespace, s.Name, "<pending>", s.Pool, "", "-", "", "")...)
			hints = append(hints, hint{fmt.Sprintf("%s/%s has no address yet", s.Namespace, s.Name), s.Namespace, s.Name})
			continue
		}
		for _, a := range s.Addresses {
			if !a.Announced {
				t.row(trim(wide, s.Namespace, s.Name, a.IP, s.Pool, "", "not announced", "", "")...)
				hints = append(hints, hint{fmt.Sprintf("%s of %s/%s is not announced by any node", a.IP, s.Namespace, s.Name), s.Namespace, s.Name})
				continue
			}
			for _, g := range groupByProtocol(a.Announcers) {
				t.row(trim(wide, s.Namespace, s.Name, a.IP, s.Pool, g.protocol, strings.Join(g.nodes, ","), strings.Join(g.via, ","), g.since)...)
			}
		}
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(hints) > 0 {
		fmt.Fprintln(out)
		for _, h := range hints {
			fmt.Fprintf(out, "%s: see `%s explain service -n %s %s`\n", h.what, name(), h.ns, h.name)
		}
	}
	return nil
}

// trim drops the wide columns (the last two) unless wide.
func trim(wide bool, cells ...string) []string {
	if wide {
		return cells
	}
	return cells[:len(cells)-2]
}

type protocolGroup struct {
	protocol string
	nodes    []string
	via      []string // node:interface for layer 2, the peers for BGP
	since    string
}

// groupByProtocol puts the nodes announcing by one protocol on one line:
// BGP has every eligible node announce.
func groupByProtocol(as []Announcer) []protocolGroup {
	var out []protocolGroup
	for _, a := range as {
		if len(out) == 0 || out[len(out)-1].protocol != a.Protocol {
			out = append(out, protocolGroup{protocol: a.Protocol})
		}
		g := &out[len(out)-1]
		g.nodes = append(g.nodes, a.Node)
		for _, i := range a.Interfaces {
			g.via = append(g.via, a.Node+":"+i)
		}
		for _, p := range a.Peers {
			if !slices.Contains(g.via, p) {
				g.via = append(g.via, p)
			}
		}
		if age := duration.HumanDuration(time.Since(a.Since.Time)); g.since == "" {
			g.since = age
		}
	}
	return out
}
