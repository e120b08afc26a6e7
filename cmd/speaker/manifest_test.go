package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/portico-lb/portico/e2e/apitest"
	"github.com/portico-lb/portico/lbservice"
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

// The beside-metallb component (README, "Moving from MetalLB") gives the
// controller and the speakers --require-class, which both binaries take,
// and asks for Portico by class on the ingress's Service, so that MetalLB
// leaves it alone.
func TestBesideMetalLBComponent(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		apitest.Need(t, errors.New("KUBEBUILDER_ASSETS is not set: kubectl is needed for kustomize"))
	}
	manifests, err := filepath.Abs(filepath.Join("..", "..", "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, manifests) // kustomize refuses absolute roots
	if err != nil {
		t.Fatal(err)
	}
	kust := "resources: [" + rel + "]\ncomponents: [" + filepath.Join(rel, "beside-metallb") + "]\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(assets, "kubectl"), "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	found := map[string]bool{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		var args []string
		switch meta.Kind + "/" + meta.Metadata.Name {
		case "Deployment/portico-controller":
			var d appsv1.Deployment
			if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
				t.Fatal(err)
			}
			args = container(t, d.Spec.Template.Spec, "controller").Args
		case "DaemonSet/portico-speaker":
			var d appsv1.DaemonSet
			if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
				t.Fatal(err)
			}
			args = container(t, d.Spec.Template.Spec, "speaker").Args
		case "Service/portico-ingress":
			var s corev1.Service
			if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
				t.Fatal(err)
			}
			if c := s.Spec.LoadBalancerClass; c == nil || *c != lbservice.Class {
				t.Errorf("the ingress Service's loadBalancerClass is %v, want %s", c, lbservice.Class)
			}
			found[meta.Kind] = true
			continue
		default:
			continue
		}
		found[meta.Kind] = true
		if !slices.Contains(args, "--require-class") {
			t.Errorf("%s %s args %q lack --require-class", meta.Kind, meta.Metadata.Name, args)
		}
	}
	if len(found) != 3 {
		t.Fatalf("found only %v in the kustomized install", found)
	}

	// Both binaries take the flag.
	bin := t.TempDir()
	for _, cmd := range []string{"controller", "speaker"} {
		build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", filepath.Join(bin, cmd), "../"+cmd)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
		if out, err := exec.Command(filepath.Join(bin, cmd), "--require-class", "--version").CombinedOutput(); err != nil {
			t.Errorf("%s --require-class: %v\n%s", cmd, err, out)
		}
	}
}
