package main

// Conversion of MetalLB's configuration (metallb.io v1beta1, v1beta2; MetalLB
// v0.14 to v0.16) into Portico's objects. Pure: objects in, objects and
// findings out; convert.go reads the input and prints the result.
//
// MetalLB's types are decoded into the small structs below, which name only
// the fields this file maps. Every other field of a spec is reported, so
// that nothing is dropped without a word, including fields of MetalLB
// releases newer than this converter.

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// metallbGroup is MetalLB's API group.
const metallbGroup = "metallb.io"

// porticoNamespace is where Portico's speakers read BGP password Secrets
// (their Role allows nothing else; SecretKeyRef defaults to it).
const porticoNamespace = "portico-system"

type mlbPool struct {
	Addresses         []string `json:"addresses"`
	AutoAssign        *bool    `json:"autoAssign"`
	AvoidBuggyIPs     bool     `json:"avoidBuggyIPs"`
	ServiceAllocation *struct {
		Priority           int32                  `json:"priority"`
		Namespaces         []string               `json:"namespaces"`
		NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors"`
		ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors"`
	} `json:"serviceAllocation"`
}

type mlbL2Adv struct {
	IPAddressPools         []string               `json:"ipAddressPools"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
	Interfaces             []string               `json:"interfaces"`
	ServiceSelectors       []metav1.LabelSelector `json:"serviceSelectors"`
}

type mlbBGPAdv struct {
	IPAddressPools         []string               `json:"ipAddressPools"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
	Peers                  []string               `json:"peers"`
	Communities            []string               `json:"communities"`
	LocalPref              uint32                 `json:"localPref"`
	AggregationLength      *int32                 `json:"aggregationLength"`
	AggregationLengthV6    *int32                 `json:"aggregationLengthV6"`
	ServiceSelectors       []metav1.LabelSelector `json:"serviceSelectors"`
}

// mlbPeer is BGPPeer in v1beta2 and v1beta1: v1beta1's node selectors have
// the shape of a LabelSelector, and its durations are not pointers, which
// decodes the same.
type mlbPeer struct {
	MyASN          uint32                 `json:"myASN"`
	PeerASN        uint32                 `json:"peerASN"`
	DynamicASN     string                 `json:"dynamicASN"`
	PeerAddress    string                 `json:"peerAddress"`
	SourceAddress  string                 `json:"sourceAddress"`
	PeerPort       int32                  `json:"peerPort"`
	HoldTime       *metav1.Duration       `json:"holdTime"`
	KeepaliveTime  *metav1.Duration       `json:"keepaliveTime"`
	RouterID       string                 `json:"routerID"`
	NodeSelectors  []metav1.LabelSelector `json:"nodeSelectors"`
	Password       string                 `json:"password"`
	PasswordSecret struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"passwordSecret"`
	EBGPMultiHop           bool   `json:"ebgpMultiHop"`
	EnableGracefulRestart  bool   `json:"enableGracefulRestart"`
	DisableMP              bool   `json:"disableMP"`
	DualStackAddressFamily bool   `json:"dualStackAddressFamily"`
	BFDProfile             string `json:"bfdProfile"`
	VRF                    string `json:"vrf"`
	Interface              string `json:"interface"`
	LocalASN               uint32 `json:"localASN"`
	ConnectTime            string `json:"connectTime"`
}

type mlbCommunity struct {
	Communities []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"communities"`
}

// specFields are the spec fields each kind maps (or reports by name);
// any other field is reported as unknown to this converter.
var specFields = map[string][]string{
	"IPAddressPool":    {"addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation"},
	"L2Advertisement":  {"ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "interfaces", "serviceSelectors", "preferredNodeSelectors"},
	"BGPAdvertisement": {"ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "peers", "communities", "localPref", "aggregationLength", "aggregationLengthV6", "serviceSelectors"},
	"BGPPeer": {"myASN", "peerASN", "dynamicASN", "peerAddress", "sourceAddress", "peerPort", "holdTime", "keepaliveTime",
		"routerID", "nodeSelectors", "password", "passwordSecret", "ebgpMultiHop", "enableGracefulRestart", "disableMP",
		"dualStackAddressFamily", "bfdProfile", "vrf", "interface", "localASN", "connectTime"},
	"Community":  {"communities"},
	"BFDProfile": nil, // nothing of it converts
}

// serviceAllocationFields are those of IPAddressPool.spec.serviceAllocation.
var serviceAllocationFields = []string{"priority", "namespaces", "namespaceSelectors", "serviceSelectors"}

// statusKinds are MetalLB's objects that report, and configure nothing.
var statusKinds = []string{"ServiceL2Status", "ServiceBGPStatus", "ConfigurationState"}

// Finding is something the user must know about one object: a field that
// was not converted (Lost), or a step to take.
type Finding struct {
	// Object is "Kind namespace/name" of the MetalLB object.
	Object string `json:"object"`
	// Field is the spec field, or empty for the whole object.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	// Lost is true when something was not converted.
	Lost bool `json:"notConverted,omitempty"`
}

func (f Finding) String() string {
	level := "note"
	if f.Lost {
		level = "not converted"
	}
	if f.Field == "" {
		return fmt.Sprintf("%s: %s: %s", level, f.Object, f.Message)
	}
	return fmt.Sprintf("%s: %s: %s: %s", level, f.Object, f.Field, f.Message)
}

// Converted is one Portico object and the MetalLB object it came from.
type Converted struct {
	From   string
	Object *unstructured.Unstructured
}

// Conversion is the result of converting a set of MetalLB objects.
type Conversion struct {
	Objects  []Converted
	Findings []Finding
	// Namespaces are those the MetalLB objects came from.
	Namespaces []string
}

// Complete reports whether everything was converted.
func (c *Conversion) Complete() bool {
	return !slices.ContainsFunc(c.Findings, func(f Finding) bool { return f.Lost })
}

// converter holds the state of one conversion.
type converter struct {
	out         Conversion
	communities map[string]string // alias name → value, from Community objects
	seen        map[string]string // Portico kind/name → the MetalLB object that took it
}

// convertMetalLB converts MetalLB objects into Portico's. Objects of other
// groups are reported and skipped.
func convertMetalLB(objs []*unstructured.Unstructured) *Conversion {
	c := &converter{communities: map[string]string{}, seen: map[string]string{}}
	// Community aliases first: advertisements refer to them by name.
	for _, o := range objs {
		if group(o) == metallbGroup && o.GetKind() == "Community" {
			c.community(o)
		}
	}
	// Portico's kinds in the order they depend on each other.
	order := map[string]int{"IPAddressPool": 0, "L2Advertisement": 1, "BGPPeer": 2, "BGPAdvertisement": 3}
	sorted := slices.Clone(objs)
	sort.SliceStable(sorted, func(i, j int) bool {
		return rank(order, sorted[i]) < rank(order, sorted[j])
	})
	namespaces := map[string]bool{}
	for _, o := range sorted {
		if group(o) == metallbGroup {
			namespaces[o.GetNamespace()] = true
		}
		c.object(o)
	}
	for ns := range namespaces {
		c.out.Namespaces = append(c.out.Namespaces, ns)
	}
	sort.Strings(c.out.Namespaces)
	return &c.out
}

func rank(order map[string]int, o *unstructured.Unstructured) int {
	if r, ok := order[o.GetKind()]; ok && group(o) == metallbGroup {
		return r
	}
	return len(order)
}

func group(o *unstructured.Unstructured) string {
	return o.GroupVersionKind().Group
}

func describe(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetKind() + " " + o.GetName()
	}
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

func (c *converter) lost(o *unstructured.Unstructured, field, format string, args ...any) {
	c.out.Findings = append(c.out.Findings, Finding{Object: describe(o), Field: field, Message: fmt.Sprintf(format, args...), Lost: true})
}

func (c *converter) note(o *unstructured.Unstructured, field, format string, args ...any) {
	c.out.Findings = append(c.out.Findings, Finding{Object: describe(o), Field: field, Message: fmt.Sprintf(format, args...)})
}

func (c *converter) object(o *unstructured.Unstructured) {
	if o.GetKind() == "ConfigMap" && o.GetName() == "metallb-excludel2" {
		c.lost(o, "", "MetalLB's list of interfaces never to announce on: not converted; give Portico's speaker --exclude-interfaces, a comma-separated list of name prefixes (MetalLB's entries are regular expressions)")
		return
	}
	if group(o) != metallbGroup {
		c.lost(o, "", "not a MetalLB object (apiVersion %s): skipped", o.GetAPIVersion())
		return
	}
	kind := o.GetKind()
	if slices.Contains(statusKinds, kind) {
		c.note(o, "", "MetalLB's status, not configuration: nothing to convert (Portico writes its own ServiceAnnouncements)")
		return
	}
	known, ok := specFields[kind]
	if !ok {
		c.lost(o, "", "kind %s is unknown to this converter (it knows MetalLB v0.14 to v0.16): skipped; configure its equivalent by hand", kind)
		return
	}
	spec, _, _ := unstructured.NestedMap(o.Object, "spec")
	for _, k := range sortedKeys(spec) {
		if !slices.Contains(known, k) && kind != "BFDProfile" {
			c.lost(o, "spec."+k, "unknown to this converter (a newer MetalLB?): not converted; check whether Portico has an equivalent")
		}
	}
	switch kind {
	case "IPAddressPool":
		c.pool(o)
	case "L2Advertisement":
		c.l2(o)
	case "BGPAdvertisement":
		c.bgpAdv(o)
	case "BGPPeer":
		c.peer(o)
	case "Community":
		c.note(o, "", "Portico has no Community object: its names are replaced by their values in the BGPAdvertisements that use them")
	case "BFDProfile":
		c.lost(o, "", "Portico has no BFD: a dead session is found by the BGP hold time alone; lower the BGPPeers' holdTime (e.g. 9s, keepaliveTime 3s) for faster failover")
	}
}

// decodeSpec decodes o's spec into v.
func (c *converter) decodeSpec(o *unstructured.Unstructured, v any) bool {
	spec, _, _ := unstructured.NestedFieldNoCopy(o.Object, "spec")
	b, err := json.Marshal(spec)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		c.lost(o, "spec", "cannot be read (%v): skipped", err)
		return false
	}
	return true
}

// emit adds a Portico object of kind with spec (a pointer), named as o,
// with o's labels (pool selectors select pools by them).
func (c *converter) emit(o *unstructured.Unstructured, kind string, spec any) {
	key := kind + "/" + o.GetName()
	if prev, dup := c.seen[key]; dup {
		c.lost(o, "", "Portico's %s is cluster-scoped and %s already takes the name %q: skipped; rename one of them", kind, prev, o.GetName())
		return
	}
	c.seen[key] = describe(o)
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(spec)
	if err != nil {
		c.lost(o, "", "internal error: %v", err)
		return
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": raw}}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind))
	u.SetName(o.GetName())
	if l := o.GetLabels(); len(l) > 0 {
		u.SetLabels(l)
	}
	c.out.Objects = append(c.out.Objects, Converted{From: o.GetAPIVersion() + " " + describe(o), Object: u})
}

func (c *converter) pool(o *unstructured.Unstructured) {
	var in mlbPool
	if !c.decodeSpec(o, &in) {
		return
	}
	var out v1alpha1.AddressPoolSpec
	for _, a := range in.Addresses {
		r, ok := c.addressRange(o, a)
		if ok {
			out.Addresses = append(out.Addresses, r)
		}
	}
	if len(out.Addresses) == 0 {
		c.lost(o, "spec.addresses", "no address converted: pool skipped")
		return
	}
	out.AutoAssign = in.AutoAssign
	out.AvoidBuggyIPs = in.AvoidBuggyIPs
	if sa := in.ServiceAllocation; sa != nil {
		raw, _, _ := unstructured.NestedMap(o.Object, "spec", "serviceAllocation")
		for _, k := range sortedKeys(raw) {
			if !slices.Contains(serviceAllocationFields, k) {
				c.lost(o, "spec.serviceAllocation."+k, "unknown to this converter: not converted")
			}
		}
		out.ServiceAllocation = &v1alpha1.ServiceAllocation{
			Priority:           sa.Priority,
			Namespaces:         sa.Namespaces,
			NamespaceSelectors: sa.NamespaceSelectors,
			ServiceSelectors:   sa.ServiceSelectors,
		}
	}
	c.emit(o, "AddressPool", &out)
}

// addressRange converts one of MetalLB's addresses: a CIDR, whose host bits
// MetalLB ignores and Portico refuses, or a first-last range.
func (c *converter) addressRange(o *unstructured.Unstructured, a string) (v1alpha1.AddressRange, bool) {
	a = strings.TrimSpace(a)
	if first, last, ok := strings.Cut(a, "-"); ok {
		f, err1 := netip.ParseAddr(strings.TrimSpace(first))
		l, err2 := netip.ParseAddr(strings.TrimSpace(last))
		if err1 != nil || err2 != nil {
			c.lost(o, "spec.addresses", "%q is neither a CIDR nor a first-last range: not converted", a)
			return "", false
		}
		return v1alpha1.AddressRange(f.String() + "-" + l.String()), true
	}
	p, err := netip.ParsePrefix(a)
	if err != nil {
		c.lost(o, "spec.addresses", "%q is neither a CIDR nor a first-last range: not converted", a)
		return "", false
	}
	if m := p.Masked(); m != p {
		c.note(o, "spec.addresses", "%s written as %s: MetalLB ignores the host bits, Portico asks for the network address", p, m)
		p = m
	}
	return v1alpha1.AddressRange(p.String()), true
}

func (c *converter) l2(o *unstructured.Unstructured) {
	var in mlbL2Adv
	if !c.decodeSpec(o, &in) {
		return
	}
	out := v1alpha1.L2AdvertisementSpec{
		AddressPools:         in.IPAddressPools,
		AddressPoolSelectors: in.IPAddressPoolSelectors,
		NodeSelectors:        in.NodeSelectors,
		ServiceSelectors:     in.ServiceSelectors,
	}
	for _, i := range in.Interfaces {
		out.Interfaces = append(out.Interfaces, v1alpha1.InterfaceName(i))
	}
	if len(in.Interfaces) == 0 {
		c.note(o, "spec.interfaces", "empty: MetalLB answers on every interface, Portico on those whose subnet holds the address; list the interfaces if clients reach the address through another")
	}
	if has(o, "preferredNodeSelectors") {
		c.lost(o, "spec.preferredNodeSelectors", "Portico has no node preference: among eligible nodes the owner of an address is chosen by hash; narrow nodeSelectors instead")
	}
	c.emit(o, "L2Advertisement", &out)
}

func (c *converter) bgpAdv(o *unstructured.Unstructured) {
	var in mlbBGPAdv
	if !c.decodeSpec(o, &in) {
		return
	}
	out := v1alpha1.BGPAdvertisementSpec{
		AddressPools:         in.IPAddressPools,
		AddressPoolSelectors: in.IPAddressPoolSelectors,
		NodeSelectors:        in.NodeSelectors,
		Peers:                in.Peers,
		AggregationLength:    in.AggregationLength,
		AggregationLengthV6:  in.AggregationLengthV6,
		ServiceSelectors:     in.ServiceSelectors,
	}
	if in.LocalPref != 0 { // MetalLB's 0 is "not set"
		pref := int64(in.LocalPref)
		out.LocalPref = &pref
	}
	for _, s := range in.Communities {
		if v, ok := c.communities[s]; ok {
			s = v
		}
		if v, ok := community(s); ok {
			out.Communities = append(out.Communities, v)
			continue
		}
		c.lost(o, "spec.communities", "%q is neither a community nor a name defined in a Community object: not converted", s)
	}
	c.emit(o, "BGPAdvertisement", &out)
}

var (
	standardCommunity = regexp.MustCompile(`^[0-9]{1,5}:[0-9]{1,5}$`)
	largeCommunity    = regexp.MustCompile(`^large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$`)
	wellKnown         = []string{"no-export", "no-advertise", "no-export-subconfed", "no-peer", "blackhole", "graceful-shutdown"}
)

// community returns s in Portico's spelling when it is a community.
func community(s string) (v1alpha1.Community, bool) {
	s = strings.TrimSpace(s)
	if standardCommunity.MatchString(s) || largeCommunity.MatchString(s) || slices.Contains(wellKnown, s) {
		return v1alpha1.Community(s), true
	}
	return "", false
}

func (c *converter) community(o *unstructured.Unstructured) {
	var in mlbCommunity
	if !c.decodeSpec(o, &in) {
		return
	}
	for _, a := range in.Communities {
		c.communities[a.Name] = a.Value
	}
}

func (c *converter) peer(o *unstructured.Unstructured) {
	var in mlbPeer
	if !c.decodeSpec(o, &in) {
		return
	}
	out := v1alpha1.BGPPeerSpec{
		MyASN:           v1alpha1.ASN(in.MyASN),
		PeerASN:         v1alpha1.ASN(in.PeerASN),
		PeerAddress:     in.PeerAddress,
		PeerPort:        in.PeerPort,
		SourceAddress:   in.SourceAddress,
		RouterID:        in.RouterID,
		NodeSelectors:   in.NodeSelectors,
		GracefulRestart: in.EnableGracefulRestart,
	}
	if d := in.HoldTime; d != nil && d.Duration != 0 {
		out.HoldTime = d
	}
	if d := in.KeepaliveTime; d != nil && d.Duration != 0 {
		out.KeepaliveTime = d
	}
	skip := false
	switch {
	case in.PeerASN != 0:
	case in.DynamicASN == "internal":
		out.PeerASN = out.MyASN
		c.note(o, "spec.dynamicASN", "internal: written as peerASN %d (myASN), which is what internal means", in.MyASN)
	case in.DynamicASN == "external":
		c.lost(o, "spec.dynamicASN", "external: Portico needs the router's AS number; peer skipped: set spec.peerASN and convert again")
		skip = true
	default:
		c.lost(o, "spec.peerASN", "missing: peer skipped")
		skip = true
	}
	if in.PeerAddress == "" {
		if in.Interface != "" {
			c.lost(o, "spec.interface", "unnumbered BGP (peering over interface %q) is not supported by Portico: peer skipped; give the router's address as peerAddress", in.Interface)
		} else {
			c.lost(o, "spec.peerAddress", "missing: peer skipped")
		}
		skip = true
	} else if in.Interface != "" {
		c.lost(o, "spec.interface", "Portico peers by address only: not converted")
	}
	if in.EBGPMultiHop {
		if in.MyASN == uint32(out.PeerASN) {
			c.lost(o, "spec.ebgpMultiHop", "set on an iBGP session, where Portico refuses it: not converted (iBGP sessions need no multihop setting)")
		} else {
			out.EBGPMultiHop = true
		}
	}
	name := o.GetName()
	switch {
	case in.Password != "" && in.PasswordSecret.Name != "":
		c.lost(o, "spec.password", "both password and passwordSecret are set: only passwordSecret is converted")
		fallthrough
	case in.PasswordSecret.Name != "":
		src := cmp.Or(in.PasswordSecret.Namespace, o.GetNamespace())
		out.PasswordSecret = &v1alpha1.SecretKeyRef{Name: in.PasswordSecret.Name, Namespace: porticoNamespace, Key: "password"}
		c.note(o, "spec.passwordSecret", "Portico reads the Secret from %s; copy it there: kubectl get secret %s -n %s -o go-template='{{.data.password | base64decode}}' | kubectl create secret generic %s -n %s --from-file=password=/dev/stdin",
			porticoNamespace, in.PasswordSecret.Name, src, in.PasswordSecret.Name, porticoNamespace)
	case in.Password != "":
		secret := name + "-bgp-password"
		out.PasswordSecret = &v1alpha1.SecretKeyRef{Name: secret, Namespace: porticoNamespace, Key: "password"}
		c.note(o, "spec.password", "Portico takes the password from a Secret only; create it: kubectl get bgppeers.%s %s -n %s -o go-template='{{.spec.password}}' | kubectl create secret generic %s -n %s --from-file=password=/dev/stdin",
			metallbGroup, name, o.GetNamespace(), secret, porticoNamespace)
	}
	if in.BFDProfile != "" {
		c.lost(o, "spec.bfdProfile", "Portico has no BFD: a dead session is found by the hold time alone; lower holdTime (e.g. 9s, keepaliveTime 3s) for faster failover")
	}
	if in.VRF != "" {
		c.lost(o, "spec.vrf", "Portico peers from the node's default VRF only: not converted")
	}
	if in.LocalASN != 0 {
		c.lost(o, "spec.localASN", "Portico has no local-as: not converted; its sessions use myASN")
	}
	if in.ConnectTime != "" {
		c.lost(o, "spec.connectTime", "Portico's retry interval between connection attempts is not configurable: not converted")
	}
	if in.DisableMP {
		c.note(o, "spec.disableMP", "Portico always keeps the families apart (each session carries its peer address's family): nothing to convert")
	}
	if in.DualStackAddressFamily {
		c.lost(o, "spec.dualStackAddressFamily", "Portico sends each session only its peer address's family: not converted; add a BGPPeer with the router's address of the other family")
	}
	if skip {
		return
	}
	c.emit(o, "BGPPeer", &out)
}

// has reports whether o's spec has a non-empty field.
func has(o *unstructured.Unstructured, field string) bool {
	v, ok, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", field)
	if !ok || v == nil {
		return false
	}
	if l, isList := v.([]any); isList {
		return len(l) > 0
	}
	return true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
