package nodeagent

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestEnsureMountpoint(t *testing.T) {
	root := t.TempDir()
	dirSrc := t.TempDir()
	fileSrc := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(fileSrc, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory mount creates every missing level and reports each.
	target := filepath.Join(root, "a", "b")
	created, err := ensureMountpoint(Mount{Source: dirSrc, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(root, "a"), target}; !reflect.DeepEqual(created, want) {
		t.Errorf("created %v, want %v", created, want)
	}
	// A file mount creates an empty file to mount on.
	ftarget := filepath.Join(root, "a", "c.txt")
	created, err = ensureMountpoint(Mount{Source: fileSrc, Target: ftarget})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{ftarget}; !reflect.DeepEqual(created, want) {
		t.Errorf("created %v, want %v", created, want)
	}
	if st, err := os.Stat(ftarget); err != nil || st.IsDir() || st.Size() != 0 {
		t.Errorf("file mount point: %v, %v", st, err)
	}
	// What exists is left alone and not reported.
	if created, err := ensureMountpoint(Mount{Source: dirSrc, Target: target}); err != nil || created != nil {
		t.Errorf("existing target: created %v, %v", created, err)
	}
}

func TestRunAs(t *testing.T) {
	id := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name     string
		pod, ctr *corev1.SecurityContext
		podSC    *corev1.PodSecurityContext
		uid, gid *int
	}{
		{name: "nothing set"},
		{name: "pod's user, group follows", podSC: &corev1.PodSecurityContext{RunAsUser: id(1000)}, uid: ptr.To(1000), gid: ptr.To(1000)},
		{name: "container's over pod's", podSC: &corev1.PodSecurityContext{RunAsUser: id(1000), RunAsGroup: id(2000)},
			ctr: &corev1.SecurityContext{RunAsUser: id(101)}, uid: ptr.To(101), gid: ptr.To(2000)},
		{name: "group alone", ctr: &corev1.SecurityContext{RunAsGroup: id(5)}, gid: ptr.To(5)},
		{name: "added capabilities run as root", ctr: &corev1.SecurityContext{RunAsUser: id(101),
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}},
	} {
		w := &worker{log: slog.New(slog.DiscardHandler), pod: &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: tc.podSC}}}
		uid, gid := w.runAs(&corev1.Container{Name: "c", SecurityContext: tc.ctr})
		if !reflect.DeepEqual(uid, tc.uid) || !reflect.DeepEqual(gid, tc.gid) {
			t.Errorf("%s: runAs = %v, %v; want %v, %v", tc.name, deref(uid), deref(gid), deref(tc.uid), deref(tc.gid))
		}
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
