package speaker

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/lbservice"
)

// TestSelectsService: the State supplies the Service's namespace labels to
// the selection.
func TestSelectsService(t *testing.T) {
	sel, err := lbservice.ParseServiceSelection(
		[]metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}},
		[]metav1.LabelSelector{{MatchLabels: map[string]string{"team": "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	st := &State{NamespaceLabels: map[string]map[string]string{"a": {"team": "a"}, "b": {"team": "b"}}}
	svc := func(ns string, l map[string]string) Service {
		return Service{Name: types.NamespacedName{Namespace: ns, Name: "web"}, Object: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Labels: l}}}
	}
	edge := map[string]string{"tier": "edge"}
	for _, tt := range []struct {
		svc  Service
		want bool
	}{
		{svc("a", edge), true},
		{svc("b", edge), false},
		{svc("a", nil), false},
		{svc("gone", edge), false},
	} {
		if got := st.SelectsService(sel, tt.svc); got != tt.want {
			t.Errorf("SelectsService(%s, %v) = %v, want %v", tt.svc.Name, tt.svc.Labels(), got, tt.want)
		}
	}
}
