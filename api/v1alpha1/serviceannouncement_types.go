package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Announcement protocols.
const (
	ProtocolLayer2 = "layer2"
	ProtocolBGP    = "bgp"
)

// Labels on every ServiceAnnouncement, to list one Service's or one
// node's.
const (
	ServiceNameLabel = "portico.dev/service-name"
	NodeNameLabel    = "portico.dev/node"
)

// ServiceAnnouncementStatus is what one speaker announces of one Service,
// with one protocol: written by that node's speaker only, deleted when it
// stops.
type ServiceAnnouncementStatus struct {
	// Service is the name of the Service (in the object's namespace).
	Service string `json:"service"`
	// Node is the node whose speaker announces.
	Node string `json:"node"`
	// Protocol is layer2 or bgp.
	// +kubebuilder:validation:Enum=layer2;bgp
	Protocol string `json:"protocol"`
	// IPs are the Service's addresses this node announces.
	// +listType=atomic
	IPs []string `json:"ips"`
	// Interfaces are the interfaces ARP and NDP answer on (layer2).
	// +listType=atomic
	// +optional
	Interfaces []string `json:"interfaces,omitempty"`
	// Peers are the BGPPeers the routes are advertised to (bgp).
	// +listType=atomic
	// +optional
	Peers []string `json:"peers,omitempty"`
	// Since is when this node began announcing them.
	Since metav1.Time `json:"since"`
}

// ServiceAnnouncement says which node announces which addresses of a
// Service, and how: the speakers' view as an object, as MetalLB's
// ServiceL2Status and ServiceBGPStatus. It is owned by its Service, so it
// goes with it. Named <service>-<node>-<protocol> (shortened with a hash
// when too long); labelled portico.dev/service-name and portico.dev/node.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=announcement;announcements,categories=portico
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.status.service`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.node`
// +kubebuilder:printcolumn:name="Protocol",type=string,JSONPath=`.status.protocol`
// +kubebuilder:printcolumn:name="IPs",type=string,JSONPath=`.status.ips`
// +kubebuilder:printcolumn:name="Since",type=date,JSONPath=`.status.since`
type ServiceAnnouncement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Status ServiceAnnouncementStatus `json:"status,omitempty"`
}

// ServiceAnnouncementList is a list of ServiceAnnouncements.
//
// +kubebuilder:object:root=true
type ServiceAnnouncementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceAnnouncement `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ServiceAnnouncement{}, &ServiceAnnouncementList{})
}

// ServiceAnnouncementName is the name of the ServiceAnnouncement of a
// Service announced by node with protocol: <service>-<node>-<protocol>,
// or, when that is longer than 253 characters or not a DNS-1123 subdomain,
// a prefix of it and a hash of the whole, so that every (service, node,
// protocol) has its own valid name.
func ServiceAnnouncementName(service, node, protocol string) string {
	name := service + "-" + node + "-" + protocol
	if len(name) <= validation.DNS1123SubdomainMaxLength && len(validation.IsDNS1123Subdomain(name)) == 0 {
		return name
	}
	sum := sha256.Sum256([]byte(service + "\x00" + node + "\x00" + protocol))
	hash := hex.EncodeToString(sum[:])[:16]
	// Keep what is readable of the name: lower case letters, digits and
	// dashes, starting with a letter or digit.
	prefix := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, name)
	prefix = strings.TrimLeft(prefix, "-")
	if max := validation.DNS1123SubdomainMaxLength - len(hash) - 1; len(prefix) > max {
		prefix = prefix[:max]
	}
	prefix = strings.TrimRight(prefix, "-")
	if prefix == "" {
		return hash
	}
	return prefix + "-" + hash
}
