// Package v1alpha1 holds Portico's API: address pools and the advertisements
// that tell speakers how to announce the addresses handed out from them.
//
// Every type is cluster-scoped but ServiceAnnouncement, which lives beside
// its Service. Validation lives in the CRD schema (OpenAPI
// and CEL rules) so that `kubectl apply` refuses a bad object with a message;
// Portico runs no admission webhook.
//
// +kubebuilder:object:generate=true
// +groupName=portico.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of every Portico type.
	GroupVersion = schema.GroupVersion{Group: "portico.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this group to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
