package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AdvertisementStatus is the status of a BGPAdvertisement: conditions.
type AdvertisementStatus struct {
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// InterfaceName is a Linux network interface name.
// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9_.:@-]{1,15}$`
type InterfaceName string

// L2AdvertisementSpec selects the pools whose addresses are announced by
// ARP (IPv4) and NDP (IPv6), the Services of those pools it applies to,
// the nodes that may answer, and on which interfaces. Empty pool lists
// select every pool; empty service and namespace selectors every Service
// of them; empty node selectors every node. An address shared by several
// Services is announced when the advertisement applies to any of them.
type L2AdvertisementSpec struct {
	// AddressPools names pools to announce.
	// +listType=set
	// +optional
	AddressPools []string `json:"addressPools,omitempty"`
	// AddressPoolSelectors selects pools by label.
	// +listType=atomic
	// +optional
	AddressPoolSelectors []metav1.LabelSelector `json:"addressPoolSelectors,omitempty"`
	// NodeSelectors limits the nodes that may own an address.
	// +listType=atomic
	// +optional
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
	// ServiceSelectors limits the advertisement to the Services, among
	// those of the pools it selects, whose labels match at least one of
	// these selectors; empty means every Service. Combined with
	// NamespaceSelectors by AND: a Service must match both lists.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	ServiceSelectors []metav1.LabelSelector `json:"serviceSelectors,omitempty"`
	// NamespaceSelectors limits the advertisement to the Services whose
	// namespace's labels match at least one of these selectors; empty
	// means every namespace.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors,omitempty"`
	// Interfaces limits announcements to these interfaces; when empty, a
	// node answers on the interfaces whose subnet holds the address.
	// +listType=set
	// +optional
	Interfaces []InterfaceName `json:"interfaces,omitempty"`
}

// L2AdvertisementStatus says what an L2Advertisement selects, written by
// the controller.
type L2AdvertisementStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Pools are the AddressPools it selects.
	// +listType=set
	// +optional
	Pools []string `json:"pools,omitempty"`
	// Nodes are the nodes that may announce for it: those its node
	// selectors match, less those excluded from external load balancers.
	// +listType=set
	// +optional
	Nodes []string `json:"nodes,omitempty"`
	// Conditions: Ready, or why not (NoPoolSelected, NoNodeSelected,
	// InvalidSelector).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// L2Advertisement announces pool addresses at layer 2.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=l2adv,categories=portico
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.spec.addressPools`
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=`.spec.interfaces`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type L2Advertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   L2AdvertisementSpec   `json:"spec,omitempty"`
	Status L2AdvertisementStatus `json:"status,omitempty"`
}

// L2AdvertisementList is a list of L2Advertisements.
//
// +kubebuilder:object:root=true
type L2AdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []L2Advertisement `json:"items"`
}

// Community is a BGP community: standard (ASN:value, each 0-65535), large
// (large:ASN:value:value, each 0-4294967295) or a well-known name.
//
// +kubebuilder:validation:MaxLength=48
// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]{1,5}:[0-9]{1,5}|large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}|no-export|no-advertise|no-export-subconfed|no-peer|blackhole|graceful-shutdown)$')",message="a community must be ASN:value (e.g. 64512:100), large:ASN:value:value (e.g. large:64512:1:2) or one of no-export, no-advertise, no-export-subconfed, no-peer, blackhole, graceful-shutdown"
// +kubebuilder:validation:XValidation:rule="!self.matches('^[0-9]{1,5}:[0-9]{1,5}$') || (int(self.split(':')[0]) <= 65535 && int(self.split(':')[1]) <= 65535)",message="each part of a standard community must be between 0 and 65535"
// +kubebuilder:validation:XValidation:rule="!self.matches('^large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') || (int(self.split(':')[1]) <= 4294967295 && int(self.split(':')[2]) <= 4294967295 && int(self.split(':')[3]) <= 4294967295)",message="each part of a large community must be between 0 and 4294967295"
type Community string

// BGPAdvertisementSpec selects the pools whose addresses are advertised over
// BGP, the Services of those pools it applies to, by which nodes, to which
// peers, and with which attributes. Every advertisement that applies to a
// Service advertises its addresses; when several give the same prefix to
// the same peer, the route carries the union of their communities and the
// highest localPref.
type BGPAdvertisementSpec struct {
	// AddressPools names pools to advertise; empty with no selectors means all.
	// +listType=set
	// +optional
	AddressPools []string `json:"addressPools,omitempty"`
	// AddressPoolSelectors selects pools by label.
	// +listType=atomic
	// +optional
	AddressPoolSelectors []metav1.LabelSelector `json:"addressPoolSelectors,omitempty"`
	// NodeSelectors limits the nodes that advertise.
	// +listType=atomic
	// +optional
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
	// ServiceSelectors limits the advertisement to the Services, among
	// those of the pools it selects, whose labels match at least one of
	// these selectors; empty means every Service. Combined with
	// NamespaceSelectors by AND: a Service must match both lists.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	ServiceSelectors []metav1.LabelSelector `json:"serviceSelectors,omitempty"`
	// NamespaceSelectors limits the advertisement to the Services whose
	// namespace's labels match at least one of these selectors; empty
	// means every namespace.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors,omitempty"`
	// Peers names BGPPeers to advertise to; empty means every peer.
	// +listType=set
	// +optional
	Peers []string `json:"peers,omitempty"`
	// AggregationLength is the IPv4 prefix length advertised (32 = each
	// address alone).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	// +kubebuilder:default=32
	// +optional
	AggregationLength *int32 `json:"aggregationLength,omitempty"`
	// AggregationLengthV6 is the IPv6 prefix length advertised.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	// +kubebuilder:default=128
	// +optional
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`
	// LocalPref is the LOCAL_PREF attribute, sent to iBGP peers only.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	// +optional
	LocalPref *int64 `json:"localPref,omitempty"`
	// Communities attached to the advertised routes.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	Communities []Community `json:"communities,omitempty"`
}

// BGPAdvertisement advertises pool addresses to BGP peers.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bgpadv,categories=portico
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.spec.addressPools`
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=`.spec.peers`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPAdvertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPAdvertisementSpec `json:"spec,omitempty"`
	Status AdvertisementStatus  `json:"status,omitempty"`
}

// BGPAdvertisementList is a list of BGPAdvertisements.
//
// +kubebuilder:object:root=true
type BGPAdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPAdvertisement `json:"items"`
}

func init() {
	SchemeBuilder.Register(&L2Advertisement{}, &L2AdvertisementList{}, &BGPAdvertisement{}, &BGPAdvertisementList{})
}
