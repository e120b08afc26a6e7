// Package lbservice is the contract between Portico and the Services and
// Nodes it serves: which Services are Portico's (type LoadBalancer, with no
// loadBalancerClass unless told to require one, or with Class), which annotations mean what in each of
// their spellings, which Nodes stay out of load balancing, and which
// Services, pools and Nodes an advertisement selects (selection.go). The
// controller, the speakers, porticoctl and the ingress all ask this package,
// so that they cannot disagree.
package lbservice

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Class is the loadBalancerClass Portico serves besides Services with none.
const Class = "portico.dev/lb"

// Annotation keys on Services. The controller reads the first three (the
// request); it writes AnnotationAllocatedFrom, which the speakers and
// porticoctl read.
const (
	AnnotationPool          = "portico.dev/address-pool"
	AnnotationIPs           = "portico.dev/load-balancer-ips"
	AnnotationSharing       = "portico.dev/allow-shared-ip"
	AnnotationAllocatedFrom = "portico.dev/allocated-from-pool"
	// AnnotationPrefix is the prefix of every Portico Service annotation.
	AnnotationPrefix = "portico.dev/"
)

// MetalLB's current and former prefixes. Its spellings of the request
// annotations are accepted so that a MetalLB user's Services work unchanged.
const (
	metallbPrefix    = "metallb.io/"
	oldMetallbPrefix = "metallb.universe.tf/"
)

// ExcludeLabel on a Node keeps it out of every load-balancer announcement,
// as it does for cloud load balancers. Its value does not matter.
const ExcludeLabel = corev1.LabelNodeExcludeBalancers

// requestAnnotations maps every accepted spelling to the Portico key.
var requestAnnotations = map[string]string{
	AnnotationPool:                       AnnotationPool,
	AnnotationIPs:                        AnnotationIPs,
	AnnotationSharing:                    AnnotationSharing,
	metallbPrefix + "address-pool":       AnnotationPool,
	metallbPrefix + "loadBalancerIPs":    AnnotationIPs,
	metallbPrefix + "allow-shared-ip":    AnnotationSharing,
	oldMetallbPrefix + "address-pool":    AnnotationPool,
	oldMetallbPrefix + "loadBalancerIPs": AnnotationIPs,
	oldMetallbPrefix + "allow-shared-ip": AnnotationSharing,
}

// Ours reports whether Portico is the load balancer of svc: it is of type
// LoadBalancer and has no loadBalancerClass or Class. It is Classes{}.Ours,
// the default of the controller and the speakers.
func Ours(svc *corev1.Service) bool {
	return Classes{}.Ours(svc)
}

// Classes says which loadBalancerClasses Portico serves. The zero value
// serves Class and Services with no class.
type Classes struct {
	// RequireClass serves only Services of Class and leaves class-less ones
	// to another load balancer: MetalLB, while Services move over from it
	// one at a time (the controller's and speaker's --require-class).
	RequireClass bool
}

// Ours reports whether Portico is the load balancer of svc: it is of type
// LoadBalancer and has Class, or no class unless RequireClass.
func (c Classes) Ours(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return !c.RequireClass
	}
	return *svc.Spec.LoadBalancerClass == Class
}

// RequestAnnotation tells whether key is one of the request annotations
// (pool, IPs, sharing) in any of its spellings, and returns the Portico key
// it stands for.
func RequestAnnotation(key string) (canonical string, ok bool) {
	canonical, ok = requestAnnotations[key]
	return canonical, ok
}

// Unknown reports whether key looks like a Portico Service annotation
// (it starts with AnnotationPrefix) but is none: most likely a typo.
func Unknown(key string) bool {
	if !strings.HasPrefix(key, AnnotationPrefix) {
		return false
	}
	_, request := requestAnnotations[key]
	return !request && key != AnnotationAllocatedFrom
}

// Excluded reports whether a Node with these labels is kept out of load
// balancing by ExcludeLabel.
func Excluded(nodeLabels map[string]string) bool {
	_, ok := nodeLabels[ExcludeLabel]
	return ok
}
