package nodeagent

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	look := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for in, want := range map[string]string{
		"$(A)-$(B)":   "1-two",
		"$(C)":        "$(C)",
		"$$(A)":       "$(A)",
		"cost $5":     "cost $5",
		"open $(A":    "open $(A",
		"trailing $":  "trailing $",
		"--x=$(B)/$A": "--x=two/$A",
	} {
		if got := expand(in, look); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFieldRef(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "x"}},
		Spec:       corev1.PodSpec{NodeName: "node-1"},
		Status: corev1.PodStatus{PodIP: "10.244.1.2", HostIP: "172.31.0.11",
			PodIPs: []corev1.PodIP{{IP: "10.244.1.2"}, {IP: "fd44:0:0:1::2"}}},
	}
	for path, want := range map[string]string{
		"metadata.name": "p", "metadata.namespace": "ns", "spec.nodeName": "node-1",
		"status.podIP": "10.244.1.2", "status.podIPs": "10.244.1.2,fd44:0:0:1::2",
		"status.hostIP": "172.31.0.11", "metadata.labels['app']": "x",
	} {
		got, err := fieldRef(pod, path)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := fieldRef(pod, "spec.nope"); err == nil {
		t.Error("unknown field accepted")
	}
}
