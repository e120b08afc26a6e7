package nodeagent

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSetCondition(t *testing.T) {
	old := metav1.NewTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	conds := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", LastTransitionTime: old}}

	// Same status: the transition time stays, the reason follows.
	conds = setCondition(conds, corev1.PodReady, false, "Other")
	if c := conds[0]; c.LastTransitionTime != old || c.Reason != "Other" {
		t.Errorf("unchanged status: got %+v", c)
	}
	// True: a new transition time and no reason.
	conds = setCondition(conds, corev1.PodReady, true, "ContainersNotReady")
	if c := conds[0]; c.Status != corev1.ConditionTrue || c.LastTransitionTime == old || c.Reason != "" {
		t.Errorf("became true: got %+v", c)
	}
	// A type not there yet is added.
	conds = setCondition(conds, corev1.PodInitialized, false, "ContainersNotInitialized")
	if len(conds) != 2 || conds[1].Type != corev1.PodInitialized || conds[1].Status != corev1.ConditionFalse {
		t.Errorf("added: got %+v", conds)
	}
}

func TestMergePodConditions(t *testing.T) {
	cur := []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodReady, Status: corev1.ConditionFalse},
		{Type: "example.com/gate", Status: corev1.ConditionTrue},
	}
	ours := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	got := mergePodConditions(cur, ours)
	want := map[corev1.PodConditionType]corev1.ConditionStatus{
		corev1.PodReady: corev1.ConditionTrue, corev1.PodScheduled: corev1.ConditionTrue, "example.com/gate": corev1.ConditionTrue,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d conditions, want %d: %+v", len(got), len(want), got)
	}
	for _, c := range got {
		if want[c.Type] != c.Status {
			t.Errorf("%s = %s, want %s", c.Type, c.Status, want[c.Type])
		}
	}
}

func TestPhase(t *testing.T) {
	exited := func(code int32) *ctr {
		return &ctr{term: &corev1.ContainerStateTerminated{ExitCode: code}}
	}
	for _, tc := range []struct {
		name string
		w    worker
		want corev1.PodPhase
	}{
		{"not started", worker{ctrs: []*ctr{{}}}, corev1.PodPending},
		{"no containers", worker{}, corev1.PodPending},
		{"running", worker{ctrs: []*ctr{{running: true}, {}}}, corev1.PodRunning},
		{"waiting for a restart", worker{ctrs: []*ctr{{pending: true}}}, corev1.PodRunning},
		{"one done, one not started", worker{ctrs: []*ctr{exited(0), {}}}, corev1.PodRunning},
		{"all succeeded", worker{ctrs: []*ctr{exited(0), exited(0)}}, corev1.PodSucceeded},
		{"one failed", worker{ctrs: []*ctr{exited(0), exited(1)}}, corev1.PodFailed},
		{"setup failed", worker{ctrs: []*ctr{{running: true}}, failWhy: "InitContainerFailed"}, corev1.PodFailed},
	} {
		if got := tc.w.phase(); got != tc.want {
			t.Errorf("%s: phase = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestContainerStatus(t *testing.T) {
	spec := &corev1.Container{Name: "app", Image: "nginx"}
	prog := Program{Argv: []string{"/usr/sbin/nginx"}}
	w := &worker{}

	s := w.containerStatus(&ctr{spec: spec})
	if s.State.Waiting == nil || s.State.Waiting.Reason != "ContainerCreating" || *s.Started || s.ImageID != "" {
		t.Errorf("new: got %+v", s)
	}
	s = w.containerStatus(&ctr{spec: spec, prog: prog, waitWhy: "CrashLoopBackOff", waitMsg: "back-off 2s", restarts: 3})
	if s.State.Waiting == nil || s.State.Waiting.Reason != "CrashLoopBackOff" || s.State.Waiting.Message != "back-off 2s" || s.RestartCount != 3 {
		t.Errorf("backing off: got %+v", s)
	}
	s = w.containerStatus(&ctr{spec: spec, prog: prog, running: true, ready: true, pid: 42})
	if s.State.Running == nil || !s.Ready || !*s.Started || s.ContainerID != "lab://42" || s.ImageID != "lab:///usr/sbin/nginx" {
		t.Errorf("running: got %+v", s)
	}
	term := &corev1.ContainerStateTerminated{ExitCode: 1, ContainerID: "lab://41"}
	s = w.containerStatus(&ctr{spec: spec, prog: prog, term: term, last: term})
	if s.State.Terminated != term || *s.Started || s.ContainerID != "lab://41" || s.LastTerminationState.Terminated != term {
		t.Errorf("terminated: got %+v", s)
	}
}
