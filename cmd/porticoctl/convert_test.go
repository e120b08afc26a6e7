package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/portico-lb/portico/e2e/apitest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/convert")

// convertCases are testdata/convert/NAME.yaml, each converted with these
// flags and compared with NAME.golden (exit code, stdout, stderr).
var convertCases = []struct {
	name, input string
	args        []string
}{
	{"pools", "pools.yaml", nil},
	{"layer2", "layer2.yaml", nil},
	{"bgp", "bgp.yaml", nil},
	{"list", "list.yaml", nil},
	{"complete", "complete.yaml", nil},
	{"complete-json", "complete.yaml", []string{"-o", "json"}},
}

// convertRun runs convert metallb offline (no kubeconfig needed with -f).
func convertRun(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(append([]string{"convert", "metallb"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func golden(code int, stdout, stderr string) string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", code, stdout, stderr)
}

func TestConvertMetalLB(t *testing.T) {
	for _, tc := range convertCases {
		t.Run(tc.name, func(t *testing.T) {
			in := filepath.Join("testdata", "convert", tc.input)
			got := golden(convertRun(append([]string{"-f", in}, tc.args...)...))
			path := filepath.Join("testdata", "convert", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if got != string(want) {
				t.Errorf("convert metallb -f %s %s differs from %s (run with -update to accept):\n%s", in, strings.Join(tc.args, " "), path, got)
			}
		})
	}
}

// Exit codes and the not-converted report say the same thing: 3 exactly
// when a "not converted" line is printed.
func TestConvertExitCode(t *testing.T) {
	for _, tc := range convertCases {
		code, _, stderr := convertRun("-f", filepath.Join("testdata", "convert", tc.input))
		lost := strings.Contains(stderr, "not converted: ")
		if (code == exitIncomplete) != lost || (code != 0 && code != exitIncomplete) {
			t.Errorf("%s: exit %d, not-converted lines: %v\n%s", tc.name, code, lost, stderr)
		}
	}
	if code, _, _ := convertRun("-f", filepath.Join("testdata", "convert", "complete.yaml")); code != 0 {
		t.Errorf("complete.yaml: exit %d, want 0", code)
	}
}

func TestConvertInputs(t *testing.T) {
	dir := filepath.Join("testdata", "convert")
	_, one, _ := convertRun("-f", filepath.Join(dir, "complete.yaml"))

	// Standard input.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "complete.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = w.Write(b); w.Close() }()
	stdin := os.Stdin
	os.Stdin = r
	code, out, errOut := convertRun("-f", "-")
	os.Stdin = stdin
	if code != 0 || out != one {
		t.Errorf("-f -: exit %d\n%s%s\nwant\n%s", code, out, errOut, one)
	}

	// A directory: every YAML file in it, not the golden files.
	code, out, errOut = convertRun("-f", dir)
	if code != exitIncomplete || !strings.Contains(out, "name: first-pool") || !strings.Contains(out, "name: tor-a") {
		t.Errorf("-f %s: exit %d\n%s%s", dir, code, out, errOut)
	}
	if strings.Contains(errOut, ".golden") {
		t.Errorf("-f %s read a golden file:\n%s", dir, errOut)
	}

	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"-f", filepath.Join(dir, "missing.yaml")}, 1, "no such file"},
		{[]string{"-f", filepath.Join(dir, "complete.golden")}, 1, "complete.golden: document 1"},
		{[]string{"-f", filepath.Join(dir, "complete.yaml"), "-o", "table"}, 2, `unknown output format "table"`},
		{[]string{"extra"}, 2, "accepts 0 arg"},
	} {
		code, _, errOut := convertRun(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.err) {
			t.Errorf("convert metallb %s: exit %d, want %d with %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.err, errOut)
		}
	}
}

// convertedObjects converts a testdata file and returns the objects.
func convertedObjects(t *testing.T, input string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := readObjects([]string{filepath.Join("testdata", "convert", input)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, c := range convertMetalLB(objs).Objects {
		out = append(out, c.Object)
	}
	return out
}

// What convert prints is accepted by a real API server with Portico's CRDs
// (schema and CEL rules), by a server-side dry run of each object.
func TestConvertedObjectsAreAccepted(t *testing.T) {
	apitest.Require(t)
	ctx := context.Background()
	seen := 0
	for _, tc := range convertCases {
		for _, o := range convertedObjects(t, tc.input) {
			seen++
			if err := api.Client.Create(ctx, o, client.DryRunAll); err != nil {
				t.Errorf("%s: %s %s refused: %v", tc.input, o.GetKind(), o.GetName(), err)
			}
		}
	}
	if seen < 10 {
		t.Fatalf("only %d objects converted: the cases lost their point", seen)
	}
}

// Without -f, convert reads MetalLB's objects from the cluster, in every
// namespace and at the versions the cluster serves, and prints what -f
// prints for the same objects. The test's CRDs stand in for MetalLB's: a
// group and kinds of the same names, with schemas that keep every field.
func TestConvertFromCluster(t *testing.T) {
	apitest.Require(t)
	ctx := context.Background()
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, k := range metallbKinds {
		plural := strings.ToLower(k.kind) + "s"
		if k.kind == "IPAddressPool" {
			plural = "ipaddresspools"
		}
		crd := &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: plural + "." + metallbGroup},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: metallbGroup,
				Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: k.kind, ListKind: k.kind + "List", Plural: plural, Singular: strings.ToLower(k.kind)},
				Scope: apiextensionsv1.NamespaceScoped,
			},
		}
		for i, v := range k.versions {
			crd.Spec.Versions = append(crd.Spec.Versions, apiextensionsv1.CustomResourceDefinitionVersion{
				Name: v, Served: true, Storage: i == 0,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptrBool(true),
				}},
			})
		}
		crds = append(crds, crd)
	}
	if _, err := envtest.InstallCRDs(api.Config, envtest.CRDInstallOptions{CRDs: crds}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, crd := range crds {
			_ = api.Client.Delete(ctx, crd)
		}
	})
	for _, ns := range []string{"metallb-system"} {
		if err := api.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); client.IgnoreAlreadyExists(err) != nil {
			t.Fatal(err)
		}
	}
	objs, err := readObjects([]string{filepath.Join("testdata", "convert", "bgp.yaml"), filepath.Join("testdata", "convert", "pools.yaml")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := api.Client.Create(ctx, o.DeepCopy()); err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	_, fromFiles, filesErr := convertRun("-f", filepath.Join("testdata", "convert", "bgp.yaml"), "-f", filepath.Join("testdata", "convert", "pools.yaml"))
	code, fromCluster, clusterErr := porticoctl(t, "convert", "metallb")
	if code != exitIncomplete {
		t.Errorf("exit %d, want %d\n%s", code, exitIncomplete, clusterErr)
	}
	// The cluster lists by kind, then name: compare the sets of documents.
	if a, b := documents(fromFiles), documents(fromCluster); strings.Join(a, "") != strings.Join(b, "") {
		t.Errorf("from the cluster:\n%s\nfrom the files:\n%s", fromCluster, fromFiles)
	}
	if a, b := sortedLines(filesErr), sortedLines(clusterErr); a != b {
		t.Errorf("findings from the cluster:\n%s\nfrom the files:\n%s", clusterErr, filesErr)
	}
}

func ptrBool(b bool) *bool { return &b }

// documents splits YAML output into its documents, sorted, without the
// "# from" comment, whose version is the one the cluster serves.
func documents(s string) []string {
	docs := strings.Split(s, "---\n")[1:]
	for i, d := range docs {
		_, docs[i], _ = strings.Cut(d, "\n")
	}
	slices.Sort(docs)
	return docs
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// Whatever the input, the converter reports and never panics, and what it
// reports as complete has no not-converted finding.
func FuzzConvertMetalLB(f *testing.F) {
	for _, tc := range convertCases {
		b, err := os.ReadFile(filepath.Join("testdata", "convert", tc.input))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"apiVersion":"metallb.io/v1beta2","kind":"BGPPeer","metadata":{"name":"x"},"spec":{"passwordSecret":"oops","holdTime":5}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				panic(fmt.Sprintf("converting %q takes over 5 s", b))
			}
		}()
		defer close(done)
		objs, err := decodeObjects(bytes.NewReader(b), "fuzz")
		if err != nil {
			return
		}
		conv := convertMetalLB(objs)
		var out bytes.Buffer
		if err := writeConversion(&out, outputYAML, conv); err != nil {
			t.Fatal(err)
		}
		for _, f := range conv.Findings {
			if f.Lost && conv.Complete() {
				t.Fatalf("complete with a not-converted finding: %v", f)
			}
		}
	})
}
