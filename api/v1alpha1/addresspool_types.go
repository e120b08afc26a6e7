package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AddressRange is a block of addresses: a CIDR (192.0.2.0/24, 2001:db8::/64)
// or an inclusive range first-last (192.0.2.10-192.0.2.20) of one family.
//
// The rules below run at admission. CEL cannot order addresses, so the
// last rule orders IPv4 ranges by the value of their octets; a reversed IPv6
// range gets past admission and is reported by the controller as the pool's
// Ready=False condition and a Warning Event (an exact IPv6 rule costs more
// than the API server allows a CRD rule).
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=90
// +kubebuilder:validation:XValidation:rule="self.contains('-') ? (self.split('-').size() == 2 && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim())) : isCIDR(self)",message="must be a CIDR such as 192.0.2.0/24 or 2001:db8::/64, or a range first-last such as 192.0.2.10-192.0.2.20"
// +kubebuilder:validation:XValidation:rule="self.contains('-') || !isCIDR(self) || cidr(self).ip() == cidr(self).masked().ip()",message="a CIDR must start at its network address (host bits zero), for example 192.0.2.0/24 rather than 192.0.2.5/24"
// +kubebuilder:validation:XValidation:rule="!self.contains('-') || self.split('-').size() != 2 || !isIP(self.split('-')[0].trim()) || !isIP(self.split('-')[1].trim()) || ip(self.split('-')[0].trim()).family() == ip(self.split('-')[1].trim()).family()",message="a range must not mix IPv4 and IPv6 addresses"
// +kubebuilder:validation:XValidation:rule="!self.contains('-') || self.split('-').size() != 2 || !isIP(self.split('-')[0].trim()) || !isIP(self.split('-')[1].trim()) || ip(self.split('-')[0].trim()).family() != 4 || ip(self.split('-')[1].trim()).family() != 4 || int(self.split('-')[0].trim().split('.')[0]) * 16777216 + int(self.split('-')[0].trim().split('.')[1]) * 65536 + int(self.split('-')[0].trim().split('.')[2]) * 256 + int(self.split('-')[0].trim().split('.')[3]) <= int(self.split('-')[1].trim().split('.')[0]) * 16777216 + int(self.split('-')[1].trim().split('.')[1]) * 65536 + int(self.split('-')[1].trim().split('.')[2]) * 256 + int(self.split('-')[1].trim().split('.')[3])",message="a range must run from the lower address to the higher one (first-last)"
type AddressRange string

// AddressPoolSpec says which addresses a pool holds and who may get them.
type AddressPoolSpec struct {
	// Addresses are the CIDRs and first-last ranges of the pool, IPv4, IPv6
	// or both.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Addresses []AddressRange `json:"addresses"`

	// AutoAssign lets Services that name no pool and no address get addresses
	// from this pool. When false, only Services that ask for the pool by name
	// or for one of its addresses get one.
	// +kubebuilder:default=true
	// +optional
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// AvoidBuggyIPs skips IPv4 addresses ending in .0 and .255, which some
	// old clients and routers mishandle.
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// ServiceAllocation limits which Services may get addresses from this
	// pool and in which order pools are tried.
	// +optional
	ServiceAllocation *ServiceAllocation `json:"serviceAllocation,omitempty"`
}

// ServiceAllocation restricts a pool to some Services and ranks it.
type ServiceAllocation struct {
	// Priority orders pools for automatic assignment: a lower number is
	// tried first; pools without a priority (0) come after all that have one.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Priority int32 `json:"priority,omitempty"`

	// Namespaces, when set, limits the pool to Services in these namespaces.
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`

	// NamespaceSelectors, when set, limits the pool to Services whose
	// namespace matches one of the selectors.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors,omitempty"`

	// ServiceSelectors, when set, limits the pool to Services whose labels
	// match one of the selectors.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	ServiceSelectors []metav1.LabelSelector `json:"serviceSelectors,omitempty"`
}

// Condition types and reasons of an AddressPool.
const (
	// PoolReady is True when the controller hands out addresses from the pool.
	PoolReady = "Ready"
	// PoolConflict is True when the pool overlaps an older pool, or its own
	// ranges overlap; such a pool is not used until the conflict is gone.
	PoolConflict = "Conflict"
)

// AddressPoolStatus is what the controller observed of a pool.
type AddressPoolStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// AssignedIPv4 counts IPv4 addresses held by Services.
	AssignedIPv4 int64 `json:"assignedIPv4"`
	// AvailableIPv4 counts IPv4 addresses still free.
	AvailableIPv4 int64 `json:"availableIPv4"`
	// AssignedIPv6 counts IPv6 addresses held by Services.
	AssignedIPv6 int64 `json:"assignedIPv6"`
	// AvailableIPv6 counts IPv6 addresses still free, capped at 2^63-1.
	AvailableIPv6 int64 `json:"availableIPv6"`

	// Used is the number of addresses in use, both families.
	Used int64 `json:"used"`
	// Free is the number of free addresses, both families, for people:
	// exact up to a trillion, then in scientific notation.
	Free string `json:"free"`

	// Conditions are Ready and Conflict.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AddressPool is a set of addresses the controller hands out to
// LoadBalancer Services.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=pool;pools,categories=portico
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=`.spec.addresses`
// +kubebuilder:printcolumn:name="Auto",type=boolean,JSONPath=`.spec.autoAssign`
// +kubebuilder:printcolumn:name="Used",type=integer,JSONPath=`.status.used`
// +kubebuilder:printcolumn:name="Free",type=string,JSONPath=`.status.free`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AddressPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AddressPoolSpec   `json:"spec"`
	Status AddressPoolStatus `json:"status,omitempty"`
}

// AddressPoolList is a list of AddressPools.
//
// +kubebuilder:object:root=true
type AddressPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AddressPool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AddressPool{}, &AddressPoolList{})
}
