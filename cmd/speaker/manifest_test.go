package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/portico-lb/portico/speaker/member"
)

// metallbMemberlistPort is where MetalLB's speaker gossips, on the node's
// own network like ours.
const metallbMemberlistPort = 7946

// The DaemonSet users install says the same memberlist port as the
// speaker's default, on its flag and on both container ports, and that port
// is neither MetalLB's nor any other port Portico's workloads open: a node
// must be able to run MetalLB's speaker beside ours while Services move.
func TestManifestMemberlistPort(t *testing.T) {
	if member.DefaultPort == metallbMemberlistPort {
		t.Fatalf("member.DefaultPort is %d, MetalLB's memberlist port", metallbMemberlistPort)
	}
	ds := readWorkload[appsv1.DaemonSet](t, "speaker", "daemonset.yaml")
	c := container(t, ds.Spec.Template.Spec, "speaker")
	flag := fmt.Sprintf("--memberlist-port=%d", member.DefaultPort)
	if !slices.Contains(c.Args, flag) {
		t.Errorf("speaker args %q lack %s", c.Args, flag)
	}
	for name, proto := range map[string]corev1.Protocol{"memberlist-tcp": corev1.ProtocolTCP, "memberlist-udp": corev1.ProtocolUDP} {
		i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name })
		if i < 0 {
			t.Errorf("speaker has no port %s", name)
			continue
		}
		if p := c.Ports[i]; p.ContainerPort != int32(member.DefaultPort) || p.Protocol != proto {
			t.Errorf("port %s is %d/%s, want %d/%s", name, p.ContainerPort, p.Protocol, member.DefaultPort, proto)
		}
	}

	// No other port of ours on the same number.
	var others []corev1.ContainerPort
	for _, p := range c.Ports {
		if p.Name != "memberlist-tcp" && p.Name != "memberlist-udp" {
			others = append(others, p)
		}
	}
	ctl := readWorkload[appsv1.Deployment](t, "controller", "deployment.yaml")
	ing := readWorkload[appsv1.Deployment](t, "ingress", "deployment.yaml")
	for _, spec := range []corev1.PodSpec{ctl.Spec.Template.Spec, ing.Spec.Template.Spec} {
		for _, c := range spec.Containers {
			others = append(others, c.Ports...)
		}
	}
	for _, p := range others {
		if p.ContainerPort == int32(member.DefaultPort) || p.HostPort == int32(member.DefaultPort) {
			t.Errorf("port %s (%d) collides with the memberlist port", p.Name, p.ContainerPort)
		}
	}
}

// readWorkload decodes manifests/<dir>/<file>, a single object.
func readWorkload[T any](t *testing.T, dir, file string) *T {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "manifests", dir, file))
	if err != nil {
		t.Fatal(err)
	}
	v := new(T)
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("manifests/%s/%s: %v", dir, file, err)
	}
	return v
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("no container %q", name)
	}
	return spec.Containers[i]
}
