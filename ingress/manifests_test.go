package ingress_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The install manifests are accepted by a real API server (server-side dry
// run: schema, defaults, RBAC objects), with and without the
// not-default-class component; the class is the default exactly without it.
func TestManifestsApply(t *testing.T) {
	needAPI(t)
	root, err := filepath.Abs(filepath.Join("..", "manifests", "ingress"))
	if err != nil {
		t.Fatal(err)
	}
	notDefault := t.TempDir()
	rel, err := filepath.Rel(notDefault, root) // kustomize refuses absolute roots
	if err != nil {
		t.Fatal(err)
	}
	kust := "resources: [" + rel + "]\ncomponents: [" + filepath.Join(rel, "not-default-class") + "]\n"
	if err := os.WriteFile(filepath.Join(notDefault, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{root, notDefault} {
		out, err := exec.Command(api.Kubectl, "--kubeconfig", api.Kubeconfig, "apply", "--dry-run=server", "-k", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl apply -k %s: %v\n%s", dir, err, out)
		}
		for _, want := range []string{"deployment.apps/portico-ingress", "service/portico-ingress", "ingressclass.networking.k8s.io/portico", "clusterrole.rbac.authorization.k8s.io/portico-ingress", "poddisruptionbudget.policy/portico-ingress"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("kubectl apply -k %s did not apply %s:\n%s", dir, want, out)
			}
		}
	}
	const mark = `ingressclass.kubernetes.io/is-default-class: "true"`
	out, err := exec.Command(api.Kubectl, "kustomize", root).CombinedOutput()
	if err != nil || !strings.Contains(string(out), mark) {
		t.Errorf("the install does not make the class the default: %v\n%s", err, out)
	}
	out, err = exec.Command(api.Kubectl, "kustomize", notDefault).CombinedOutput()
	if err != nil || strings.Contains(string(out), "is-default-class") || !strings.Contains(string(out), "controller: portico.dev/ingress") {
		t.Errorf("the not-default-class component does not take the default mark off: %v\n%s", err, out)
	}
}
