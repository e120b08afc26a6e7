package lbservice

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The advertisements' selection rules, which the speakers apply and the
// controller and porticoctl explain: which Services an advertisement
// applies to, and which Nodes it may use.

// SelectsPool reports whether an advertisement with these pool names and
// pool selectors covers the pool of that name and labels. With neither, it
// covers every pool; an invalid selector selects nothing.
func SelectsPool(pool string, poolLabels map[string]string, names []string, selectors []metav1.LabelSelector) bool {
	if len(names) == 0 && len(selectors) == 0 {
		return true
	}
	if slices.Contains(names, pool) {
		return true
	}
	for _, ls := range selectors {
		sel, err := metav1.LabelSelectorAsSelector(&ls)
		if err == nil && sel.Matches(labels.Set(poolLabels)) {
			return true
		}
	}
	return false
}

// ServiceSelection is an advertisement's serviceSelectors and
// namespaceSelectors, parsed: which Services of the pools it selects it
// applies to. The zero value applies to every Service.
type ServiceSelection struct {
	Services   Selector
	Namespaces Selector
}

// ParseServiceSelection parses an advertisement's serviceSelectors and
// namespaceSelectors. An invalid selector is an error naming the field
// and index: the advertisement is then left out, as it cannot say which
// Services it means.
func ParseServiceSelection(services, namespaces []metav1.LabelSelector) (ServiceSelection, error) {
	var out ServiceSelection
	var err error
	if out.Services, err = ParseSelectors("serviceSelectors", services); err != nil {
		return ServiceSelection{}, err
	}
	if out.Namespaces, err = ParseSelectors("namespaceSelectors", namespaces); err != nil {
		return ServiceSelection{}, err
	}
	return out, nil
}

// ParseSelectors parses one selector-list field of an advertisement; an
// error names the field and the index of the selector that does not parse.
func ParseSelectors(field string, in []metav1.LabelSelector) (Selector, error) {
	out := make(Selector, 0, len(in))
	for i := range in {
		sel, err := metav1.LabelSelectorAsSelector(&in[i])
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		out = append(out, sel)
	}
	return out, nil
}

// Matches reports whether the selection applies to a Service with these
// labels in a namespace with these labels: the Service's labels match at
// least one service selector, and its namespace's labels at least one
// namespace selector; an empty list matches everything.
func (s ServiceSelection) Matches(serviceLabels, namespaceLabels map[string]string) bool {
	return s.Services.Matches(serviceLabels) && s.Namespaces.Matches(namespaceLabels)
}

// Selector is a list of label selectors ORed together; an empty Selector
// matches every label set, as an empty selector list does in the API.
type Selector []labels.Selector

// Matches reports whether the labels l are selected.
func (s Selector) Matches(l map[string]string) bool {
	if len(s) == 0 {
		return true
	}
	for _, sel := range s {
		if sel.Matches(labels.Set(l)) {
			return true
		}
	}
	return false
}

// NodeSelectors turns an advertisement's node selectors into label
// selectors; an invalid one selects nothing (the schema should have
// refused it).
func NodeSelectors(in []metav1.LabelSelector) []labels.Selector {
	out := make([]labels.Selector, 0, len(in))
	for _, ls := range in {
		sel, err := metav1.LabelSelectorAsSelector(&ls)
		if err != nil {
			sel = labels.Nothing()
		}
		out = append(out, sel)
	}
	return out
}

// SelectsNode reports whether a Node with these labels is selected by an
// advertisement's or a BGPPeer's nodeSelectors: any of them, or every Node
// when there are none.
func SelectsNode(sels []metav1.LabelSelector, nodeLabels map[string]string) bool {
	return Selector(NodeSelectors(sels)).Matches(nodeLabels)
}

// NodeReady reports the Node's Ready condition.
func NodeReady(n *corev1.Node) bool {
	return nodeCondition(n, corev1.NodeReady)
}

// NetworkUnavailable reports the Node condition of that name.
func NetworkUnavailable(n *corev1.Node) bool {
	return nodeCondition(n, corev1.NodeNetworkUnavailable)
}

// nodeCondition reports whether the Node's condition of type t is True.
func nodeCondition(n *corev1.Node, t corev1.NodeConditionType) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
