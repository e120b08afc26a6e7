package lbservice

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestServiceSelection(t *testing.T) {
	edge := metav1.LabelSelector{MatchLabels: map[string]string{"tier": "edge"}}
	public := metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "exposure", Operator: metav1.LabelSelectorOpIn, Values: []string{"public"}}}}
	teamA := metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	everything := metav1.LabelSelector{}
	tests := []struct {
		name       string
		services   []metav1.LabelSelector
		namespaces []metav1.LabelSelector
		svcLabels  map[string]string
		nsLabels   map[string]string
		want       bool
	}{
		{"no selectors: every Service", nil, nil, nil, nil, true},
		{"service selector matches", []metav1.LabelSelector{edge}, nil, map[string]string{"tier": "edge"}, nil, true},
		{"service selector does not match", []metav1.LabelSelector{edge}, nil, map[string]string{"tier": "core"}, nil, false},
		{"service selector, unlabelled Service", []metav1.LabelSelector{edge}, nil, nil, nil, false},
		{"service selectors are ORed", []metav1.LabelSelector{edge, public}, nil, map[string]string{"exposure": "public"}, nil, true},
		{"an empty selector matches every Service", []metav1.LabelSelector{everything}, nil, nil, nil, true},
		{"namespace selector matches", nil, []metav1.LabelSelector{teamA}, nil, map[string]string{"team": "a"}, true},
		{"namespace selector does not match", nil, []metav1.LabelSelector{teamA}, map[string]string{"team": "a"}, map[string]string{"team": "b"}, false},
		{"both lists: both must match", []metav1.LabelSelector{edge}, []metav1.LabelSelector{teamA}, map[string]string{"tier": "edge"}, map[string]string{"team": "a"}, true},
		{"both lists: Service matches, namespace not", []metav1.LabelSelector{edge}, []metav1.LabelSelector{teamA}, map[string]string{"tier": "edge"}, map[string]string{"team": "b"}, false},
		{"both lists: namespace matches, Service not", []metav1.LabelSelector{edge}, []metav1.LabelSelector{teamA}, nil, map[string]string{"team": "a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseServiceSelection(tt.services, tt.namespaces)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Matches(tt.svcLabels, tt.nsLabels); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestServiceSelectionInvalid(t *testing.T) {
	bogus := metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Bogus"}}}
	ok := metav1.LabelSelector{MatchLabels: map[string]string{"tier": "edge"}}
	for _, tt := range []struct {
		services, namespaces []metav1.LabelSelector
		want                 string
	}{
		{[]metav1.LabelSelector{ok, bogus}, nil, "serviceSelectors[1]"},
		{nil, []metav1.LabelSelector{bogus}, "namespaceSelectors[0]"},
		{[]metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "not a value!"}}}, nil, "serviceSelectors[0]"},
	} {
		if _, err := ParseServiceSelection(tt.services, tt.namespaces); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error = %v, want one naming %s", err, tt.want)
		}
	}
}

func TestSelectsPool(t *testing.T) {
	lan := map[string]string{"site": "lan"}
	bySite := []metav1.LabelSelector{{MatchLabels: map[string]string{"site": "lan"}}}
	bogus := []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "site", Operator: "Bogus"}}}}
	for _, tt := range []struct {
		name      string
		labels    map[string]string
		names     []string
		selectors []metav1.LabelSelector
		want      bool
	}{
		{"neither: every pool", nil, nil, nil, true},
		{"named", nil, []string{"other", "lab"}, nil, true},
		{"another name", lan, []string{"other"}, nil, false},
		{"selected by label", lan, nil, bySite, true},
		{"label does not match", map[string]string{"site": "dc"}, nil, bySite, false},
		{"name or label", nil, []string{"lab"}, bySite, true},
		{"an invalid selector selects nothing", lan, nil, bogus, false},
	} {
		if got := SelectsPool("lab", tt.labels, tt.names, tt.selectors); got != tt.want {
			t.Errorf("%s: SelectsPool = %v, want %v", tt.name, got, tt.want)
		}
	}
}
