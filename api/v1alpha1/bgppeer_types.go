package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ASN is an autonomous system number, 4-byte.
// +kubebuilder:validation:Minimum=1
// +kubebuilder:validation:Maximum=4294967295
type ASN int64

// SecretKeyRef points at one key of a Secret.
type SecretKeyRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Namespace of the Secret; defaults to portico-system.
	// +kubebuilder:default=portico-system
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Key in the Secret's data.
	// +kubebuilder:default=password
	// +optional
	Key string `json:"key,omitempty"`
}

// BGPPeerSpec is one BGP session that selected nodes open to a router.
//
// +kubebuilder:validation:XValidation:rule="!has(self.holdTime) || duration(self.holdTime) == duration('0s') || duration(self.holdTime) >= duration('3s')",message="holdTime must be 0s (no keepalives) or at least 3s"
// +kubebuilder:validation:XValidation:rule="!has(self.keepaliveTime) || !has(self.holdTime) || duration(self.holdTime) == duration('0s') || duration(self.keepaliveTime) < duration(self.holdTime)",message="keepaliveTime must be shorter than holdTime"
// +kubebuilder:validation:XValidation:rule="!has(self.ebgpMultiHop) || !self.ebgpMultiHop || self.myASN != self.peerASN",message="ebgpMultiHop applies to eBGP sessions only (myASN differs from peerASN)"
type BGPPeerSpec struct {
	// MyASN is the speakers' AS number.
	MyASN ASN `json:"myASN"`
	// PeerASN is the router's AS number; equal to MyASN for iBGP.
	PeerASN ASN `json:"peerASN"`
	// PeerAddress is the router's address.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="peerAddress must be an IPv4 or IPv6 address"
	PeerAddress string `json:"peerAddress"`
	// PeerPort is the router's TCP port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=179
	// +optional
	PeerPort int32 `json:"peerPort,omitempty"`
	// SourceAddress is the local address of the session; by default the
	// kernel chooses.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="sourceAddress must be an IPv4 or IPv6 address"
	// +optional
	SourceAddress string `json:"sourceAddress,omitempty"`
	// RouterID is the BGP identifier; by default the node's IPv4 address.
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="routerID must be an IPv4 address"
	// +optional
	RouterID string `json:"routerID,omitempty"`
	// HoldTime of the session (e.g. 90s).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`
	// KeepaliveTime of the session (e.g. 30s).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`
	// EBGPMultiHop allows an eBGP peer that is not directly connected.
	// +optional
	EBGPMultiHop bool `json:"ebgpMultiHop,omitempty"`
	// PasswordSecret holds the TCP MD5 password of the session.
	// +optional
	PasswordSecret *SecretKeyRef `json:"passwordSecret,omitempty"`
	// NodeSelectors limits the nodes that open this session; empty means all.
	// +listType=atomic
	// +optional
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
	// GracefulRestart keeps the router's routes while a speaker restarts.
	// +optional
	GracefulRestart bool `json:"gracefulRestart,omitempty"`
}

// BGPPeerStatus is what the speakers report of their sessions to the peer.
type BGPPeerStatus struct {
	// Nodes has one entry per node whose speaker has a session to the
	// peer, written by that node's speaker only (server-side apply with a
	// field manager of its own), so that no speaker overwrites another's.
	// +listType=map
	// +listMapKey=node
	// +optional
	Nodes []BGPPeerNodeStatus `json:"nodes,omitempty"`
}

// BGPPeerNodeStatus is one node's session to a peer.
type BGPPeerNodeStatus struct {
	// Node is the node whose speaker opens the session.
	Node string `json:"node"`
	// State is the BGP state of the session: Idle, Connect, Active,
	// OpenSent, OpenConfirm or Established.
	State string `json:"state"`
	// PrefixesSent is the number of prefixes advertised on the session
	// while it is established.
	PrefixesSent int32 `json:"prefixesSent"`
	// LastError is the last problem configuring the session (a password
	// Secret that cannot be read, a neighbour GoBGP refused), if any.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// Since is when the session last went up or down.
	Since metav1.Time `json:"since"`
	// Conditions of the session: Established.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BGPPeer is a router that speakers open BGP sessions to.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bgppeer,categories=portico
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.peerAddress`
// +kubebuilder:printcolumn:name="My ASN",type=integer,JSONPath=`.spec.myASN`
// +kubebuilder:printcolumn:name="Peer ASN",type=integer,JSONPath=`.spec.peerASN`
// +kubebuilder:printcolumn:name="Sessions",type=string,JSONPath=`.status.nodes[*].state`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPPeerSpec   `json:"spec"`
	Status BGPPeerStatus `json:"status,omitempty"`
}

// BGPPeerList is a list of BGPPeers.
//
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}

func init() {
	SchemeBuilder.Register(&BGPPeer{}, &BGPPeerList{})
}
