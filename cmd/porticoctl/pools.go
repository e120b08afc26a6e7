package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/pools"
	"github.com/portico-lb/portico/speaker"
)

// PoolsReport is `pools -o json|yaml`.
type PoolsReport struct {
	Pools []PoolUsage `json:"pools"`
}

// PoolUsage is one AddressPool as the controller reports it in its status.
type PoolUsage struct {
	Name       string        `json:"name"`
	Addresses  []string      `json:"addresses"`
	AutoAssign bool          `json:"autoAssign"`
	Priority   int32         `json:"priority,omitempty"`
	Families   []FamilyUsage `json:"families"`
	// Ready is the status of the pool's Ready condition: True, False, or
	// Unknown while the controller has not reported on this generation.
	Ready string `json:"ready"`
	// Problem is why the pool is not Ready or conflicts, in the
	// controller's words.
	Problem string `json:"problem,omitempty"`
	// Advertisements are the L2Advertisements and BGPAdvertisements that
	// select the pool, as Kind/name; with none, its addresses are
	// allocated but nobody announces them.
	Advertisements []string `json:"advertisements"`
}

// FamilyUsage counts one family's addresses of a pool.
type FamilyUsage struct {
	Family    string `json:"family"`
	Assigned  int64  `json:"assigned"`
	Available int64  `json:"available"`
}

func poolsCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "pools",
		Aliases: []string{"pool"},
		Short:   "Show the usage of every address pool, per family",
		Long: `Show the usage of every address pool, per family, as the controller
counts it in the pools' status, whether the pool is Ready, and (-o wide)
which advertisements select it.`,
		Example: "  " + name() + " pools\n  " + name() + " pools -o wide",
		Args:    exactArgs(0),
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*output); err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		rep, err := Pools(cmd.Context(), c)
		if err != nil {
			return err
		}
		if done, err := writeStructured(e.out, *output, rep); done {
			return err
		}
		return printPools(e.out, rep, *output == outputWide)
	}
	return cmd
}

// Pools reads every AddressPool and the advertisements selecting it.
func Pools(ctx context.Context, c client.Reader) (*PoolsReport, error) {
	var list v1alpha1.AddressPoolList
	if err := c.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing AddressPools (are Portico's CRDs installed?): %w", err)
	}
	ads, err := listAdvertisements(ctx, c, list.Items)
	if err != nil {
		return nil, err
	}
	rep := &PoolsReport{Pools: []PoolUsage{}}
	for i := range list.Items {
		p := &list.Items[i]
		u := PoolUsage{
			Name:           p.Name,
			AutoAssign:     p.Spec.AutoAssign == nil || *p.Spec.AutoAssign,
			Ready:          string(metav1.ConditionUnknown),
			Advertisements: []string{},
		}
		if sa := p.Spec.ServiceAllocation; sa != nil {
			u.Priority = sa.Priority
		}
		for _, a := range p.Spec.Addresses {
			u.Addresses = append(u.Addresses, string(a))
		}
		st := p.Status
		fams := families(p)
		if fams[pools.IPv4] || st.AssignedIPv4+st.AvailableIPv4 > 0 {
			u.Families = append(u.Families, FamilyUsage{"IPv4", st.AssignedIPv4, st.AvailableIPv4})
		}
		if fams[pools.IPv6] || st.AssignedIPv6+st.AvailableIPv6 > 0 {
			u.Families = append(u.Families, FamilyUsage{"IPv6", st.AssignedIPv6, st.AvailableIPv6})
		}
		if c := apimeta.FindStatusCondition(st.Conditions, v1alpha1.PoolReady); c != nil && c.ObservedGeneration >= p.Generation {
			u.Ready = string(c.Status)
			if c.Status != metav1.ConditionTrue {
				u.Problem = c.Message
			}
		}
		if c := apimeta.FindStatusCondition(st.Conditions, v1alpha1.PoolConflict); c != nil && c.Status == metav1.ConditionTrue && u.Problem == "" {
			u.Problem = c.Message
		}
		for _, a := range ads.selecting(p.Name) {
			u.Advertisements = append(u.Advertisements, a.Kind+"/"+a.Name)
		}
		rep.Pools = append(rep.Pools, u)
	}
	slices.SortFunc(rep.Pools, func(a, b PoolUsage) int { return strings.Compare(a.Name, b.Name) })
	return rep, nil
}

// families are the address families a pool's ranges hold.
func families(p *v1alpha1.AddressPool) map[pools.Family]bool {
	out := map[pools.Family]bool{}
	for _, a := range p.Spec.Addresses {
		if r, err := pools.ParseRange(string(a)); err == nil {
			out[r.Family()] = true
		}
	}
	return out
}

func printPools(out io.Writer, rep *PoolsReport, wide bool) error {
	if len(rep.Pools) == 0 {
		_, err := fmt.Fprintln(out, "No AddressPool: create one, see `kubectl explain addresspool.spec`.")
		return err
	}
	header := []string{"NAME", "FAMILY", "ASSIGNED", "AVAILABLE", "USED", "READY"}
	if wide {
		header = append(header, "AUTO", "PRIORITY", "ADDRESSES", "ADVERTISED BY")
	}
	t := newTable(out, header...)
	var notes []string
	for _, p := range rep.Pools {
		fams := p.Families
		if len(fams) == 0 {
			fams = []FamilyUsage{{}}
		}
		for _, f := range fams {
			row := []string{p.Name, f.Family, strconv.FormatInt(f.Assigned, 10), strconv.FormatInt(f.Available, 10), percent(f), p.Ready}
			if wide {
				prio := ""
				if p.Priority > 0 {
					prio = strconv.Itoa(int(p.Priority))
				}
				row = append(row, strconv.FormatBool(p.AutoAssign), prio, strings.Join(p.Addresses, ","), strings.Join(p.Advertisements, ","))
			}
			t.row(row...)
		}
		if p.Problem != "" {
			notes = append(notes, fmt.Sprintf("pool %s: %s", p.Name, p.Problem))
		}
		if p.Ready == string(metav1.ConditionUnknown) {
			notes = append(notes, fmt.Sprintf("pool %s: the controller has not reported on this version of it yet, so its counts may be old; is it running? kubectl -n portico-system logs deploy/portico-controller", p.Name))
		}
		if len(p.Advertisements) == 0 {
			notes = append(notes, fmt.Sprintf("pool %s: no L2Advertisement or BGPAdvertisement selects it, so its addresses are not announced", p.Name))
		}
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(out)
		for _, n := range notes {
			fmt.Fprintln(out, n)
		}
	}
	return nil
}

// percent is the share of a family's addresses in use.
func percent(f FamilyUsage) string {
	total := f.Assigned + f.Available
	if total <= 0 {
		return "0%"
	}
	p := float64(f.Assigned) * 100 / float64(total)
	if p > 0 && p < 1 {
		return "<1%"
	}
	return strconv.FormatFloat(p, 'f', 0, 64) + "%"
}

// advertisement is an L2Advertisement or a BGPAdvertisement.
type advertisement struct {
	Kind, Name    string
	Pools         []string
	PoolSelectors []metav1.LabelSelector
	NodeSelectors []metav1.LabelSelector
	// ServiceSelectors and NamespaceSelectors pick the Services of the
	// pools it applies to.
	ServiceSelectors, NamespaceSelectors []metav1.LabelSelector
	Peers                                []string // BGP: the BGPPeers it advertises to; none: all
	Interfaces                           []string // layer 2
}

type advertisements struct {
	state *speaker.State // for SelectsPool: the speakers' own rule
	all   []advertisement
}

func listAdvertisements(ctx context.Context, c client.Reader, poolList []v1alpha1.AddressPool) (*advertisements, error) {
	out := &advertisements{state: &speaker.State{Pools: map[string]*v1alpha1.AddressPool{}}}
	for i := range poolList {
		out.state.Pools[poolList[i].Name] = &poolList[i]
	}
	var l2 v1alpha1.L2AdvertisementList
	if err := c.List(ctx, &l2); err != nil {
		return nil, fmt.Errorf("listing L2Advertisements: %w", err)
	}
	for _, a := range l2.Items {
		ad := advertisement{Kind: "L2Advertisement", Name: a.Name, Pools: a.Spec.AddressPools, PoolSelectors: a.Spec.AddressPoolSelectors, NodeSelectors: a.Spec.NodeSelectors,
			ServiceSelectors: a.Spec.ServiceSelectors, NamespaceSelectors: a.Spec.NamespaceSelectors}
		for _, i := range a.Spec.Interfaces {
			ad.Interfaces = append(ad.Interfaces, string(i))
		}
		out.all = append(out.all, ad)
	}
	var bgp v1alpha1.BGPAdvertisementList
	if err := c.List(ctx, &bgp); err != nil {
		return nil, fmt.Errorf("listing BGPAdvertisements: %w", err)
	}
	for _, a := range bgp.Items {
		out.all = append(out.all, advertisement{Kind: "BGPAdvertisement", Name: a.Name, Pools: a.Spec.AddressPools, PoolSelectors: a.Spec.AddressPoolSelectors, NodeSelectors: a.Spec.NodeSelectors,
			ServiceSelectors: a.Spec.ServiceSelectors, NamespaceSelectors: a.Spec.NamespaceSelectors, Peers: a.Spec.Peers})
	}
	return out, nil
}

// selecting returns the advertisements that cover pool.
func (a *advertisements) selecting(pool string) []advertisement {
	var out []advertisement
	for _, ad := range a.all {
		if a.state.SelectsPool(pool, ad.Pools, ad.PoolSelectors) {
			out = append(out, ad)
		}
	}
	return out
}

// why says how ad selects pool, for explain.
func (ad advertisement) why(pool string) string {
	switch {
	case len(ad.Pools) == 0 && len(ad.PoolSelectors) == 0:
		return "selects every pool (it has no addressPools and no addressPoolSelectors)"
	case slices.Contains(ad.Pools, pool):
		return fmt.Sprintf("names %q in addressPools", pool)
	}
	return "its addressPoolSelectors match the pool's labels"
}

// appliesTo says whether ad, which selects the Service's pool, applies to
// the Service, by the speakers' rule (lbservice.ServiceSelection), and why.
func (ad advertisement) appliesTo(svc *corev1.Service, nsLabels map[string]string) (bool, string) {
	sel, err := lbservice.ParseServiceSelection(ad.ServiceSelectors, ad.NamespaceSelectors)
	switch {
	case err != nil:
		return false, fmt.Sprintf("the speakers leave it out: %v; fix the selector", err)
	case len(ad.ServiceSelectors) == 0 && len(ad.NamespaceSelectors) == 0:
		return true, "applies to every Service of the pool (no serviceSelectors or namespaceSelectors)"
	case sel.Matches(svc.Labels, nsLabels):
		var parts []string
		if len(ad.ServiceSelectors) > 0 {
			parts = append(parts, "its serviceSelectors match the Service's labels")
		}
		if len(ad.NamespaceSelectors) > 0 {
			parts = append(parts, fmt.Sprintf("its namespaceSelectors match namespace %s's labels", svc.Namespace))
		}
		return true, strings.Join(parts, " and ")
	}
	var parts []string
	if !(lbservice.ServiceSelection{Services: sel.Services}).Matches(svc.Labels, nil) {
		parts = append(parts, fmt.Sprintf("none of its serviceSelectors (%s) matches the Service's labels (%s)", selectorsString(ad.ServiceSelectors), labelsString(svc.Labels)))
	}
	if !(lbservice.ServiceSelection{Namespaces: sel.Namespaces}).Matches(nil, nsLabels) {
		parts = append(parts, fmt.Sprintf("none of its namespaceSelectors (%s) matches namespace %s's labels (%s)", selectorsString(ad.NamespaceSelectors), svc.Namespace, labelsString(nsLabels)))
	}
	return false, strings.Join(parts, "; ")
}

func selectorsString(sels []metav1.LabelSelector) string {
	out := make([]string, len(sels))
	for i := range sels {
		out[i] = metav1.FormatLabelSelector(&sels[i])
	}
	return strings.Join(out, " | ")
}

func labelsString(l map[string]string) string {
	if len(l) == 0 {
		return "none"
	}
	return labels.Set(l).String()
}
