package nodeagent

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestGrace(t *testing.T) {
	for _, tc := range []struct {
		name           string
		deletion, spec *int64
		want           time.Duration
	}{
		{"default", nil, nil, 30 * time.Second},
		{"spec", nil, ptr.To[int64](5), 5 * time.Second},
		{"deletion over spec", ptr.To[int64](1), ptr.To[int64](5), time.Second},
		{"deletion of zero", ptr.To[int64](0), ptr.To[int64](5), 0},
	} {
		w := &worker{pod: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{DeletionGracePeriodSeconds: tc.deletion},
			Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: tc.spec},
		}}
		if got := w.grace(); got != tc.want {
			t.Errorf("%s: grace = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestRunHookSleep(t *testing.T) {
	h := &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 0}}
	if err := runHook(context.Background(), h, "", 0, &corev1.Container{}); err != nil {
		t.Errorf("sleep 0: %v", err)
	}
	// A sleep longer than the grace period ends with it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	h = &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 60}}
	if err := runHook(ctx, h, "", 0, &corev1.Container{}); err == nil {
		t.Error("sleep 60 under a 10 ms deadline: no error")
	}
}
