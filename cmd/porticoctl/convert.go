package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// exitIncomplete is convert's exit code when something was not converted;
// what was converted is printed all the same.
const exitIncomplete = 3

// exitError ends porticoctl with code after saying msg on stderr.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// metallbKinds are the configuration kinds read from a cluster, each at the
// versions tried in turn.
var metallbKinds = []struct {
	kind     string
	versions []string
}{
	{"IPAddressPool", []string{"v1beta1"}},
	{"L2Advertisement", []string{"v1beta1"}},
	{"BGPPeer", []string{"v1beta2", "v1beta1"}},
	{"BGPAdvertisement", []string{"v1beta1"}},
	{"Community", []string{"v1beta1"}},
	{"BFDProfile", []string{"v1beta1"}},
}

func convertCommand(e *env, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "convert",
		Short: "Convert another load balancer's configuration into Portico's",
		Args:  exactArgs(0),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var files []string
	var output string
	metallb := &cobra.Command{
		Use:   "metallb",
		Short: "Print the Portico objects equivalent to MetalLB's configuration",
		Long: `Print the Portico objects equivalent to MetalLB's configuration (metallb.io
IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer v1beta1 and v1beta2,
Community, BFDProfile; MetalLB v0.14 to v0.16).

With -f it reads files (multi-document YAML or JSON, kind: List too), every
*.yaml, *.yml and *.json file of a directory, or standard input (-f -).
Without -f it lists MetalLB's objects in every namespace of the cluster.

The objects go to standard output; on standard error, every field or object
that has no Portico equivalent ("not converted") and every step left to you
("note", such as copying a BGP password Secret into portico-system).

Exit codes: 0 everything converted; 3 something was not converted (what was
is printed all the same); 1 an error; 2 a wrong command line.`,
		Example: "  kubectl get ipaddresspools,l2advertisements -n metallb-system -o yaml | " + name() + " convert metallb -f -\n" +
			"  " + name() + " convert metallb -f metallb-config/ > portico.yaml\n" +
			"  " + name() + " convert metallb --context prod -o json",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != outputYAML && output != outputJSON {
				return usageError{fmt.Errorf("unknown output format %q: use yaml or json", output)}
			}
			var objs []*unstructured.Unstructured
			var err error
			if len(files) > 0 {
				objs, err = readObjects(files, cmd.InOrStdin())
			} else {
				objs, err = listMetalLB(cmd.Context(), e)
			}
			if err != nil {
				return err
			}
			conv := convertMetalLB(objs)
			if err := writeConversion(e.out, output, conv); err != nil {
				return err
			}
			for _, f := range conv.Findings {
				fmt.Fprintln(stderr, f)
			}
			if !conv.Complete() {
				return exitError{exitIncomplete, fmt.Sprintf("%d objects converted; some fields or objects were not converted (listed above): exit code %d", len(conv.Objects), exitIncomplete)}
			}
			return nil
		},
	}
	metallb.Flags().StringSliceVarP(&files, "filename", "f", nil, "file, directory or - (standard input) of MetalLB objects; repeatable (default: read the cluster)")
	metallb.Flags().StringVarP(&output, "output", "o", outputYAML, "output format: yaml or json")
	cmd.AddCommand(metallb)
	return cmd
}

// readObjects reads the objects of every file, directory or - in names.
func readObjects(names []string, stdin io.Reader) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, n := range names {
		if n == "-" {
			got, err := decodeObjects(stdin, "standard input")
			if err != nil {
				return nil, err
			}
			objs = append(objs, got...)
			continue
		}
		paths := []string{n}
		if st, err := os.Stat(n); err != nil {
			return nil, err
		} else if st.IsDir() {
			entries, err := os.ReadDir(n)
			if err != nil {
				return nil, err
			}
			paths = nil
			for _, en := range entries {
				if ext := filepath.Ext(en.Name()); !en.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
					paths = append(paths, filepath.Join(n, en.Name()))
				}
			}
		}
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			got, err := decodeObjects(f, p)
			f.Close()
			if err != nil {
				return nil, err
			}
			objs = append(objs, got...)
		}
	}
	return objs, nil
}

// decodeObjects reads YAML documents or JSON objects, unpacking lists.
func decodeObjects(r io.Reader, source string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var objs []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.IsList() {
			err := u.EachListItem(func(o runtime.Object) error {
				objs = append(objs, o.(*unstructured.Unstructured))
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", source, doc, err)
			}
			continue
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("%s: document %d: not a Kubernetes object (no apiVersion or kind)", source, doc)
		}
		objs = append(objs, u)
	}
}

// listMetalLB lists MetalLB's configuration in every namespace.
func listMetalLB(ctx context.Context, e *env) ([]*unstructured.Unstructured, error) {
	c, err := e.client()
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	found := false
	for _, k := range metallbKinds {
		for _, v := range k.versions {
			list := &unstructured.UnstructuredList{}
			gvk := schema.GroupVersionKind{Group: metallbGroup, Version: v, Kind: k.kind + "List"}
			list.SetGroupVersionKind(gvk)
			if err := c.List(ctx, list); err != nil {
				if apimeta.IsNoMatchError(err) {
					continue // try the next version; the kind may be absent
				}
				return nil, fmt.Errorf("listing %s.%s: %w", strings.ToLower(k.kind)+"s", metallbGroup, err)
			}
			found = true
			for i := range list.Items {
				o := &list.Items[i]
				o.SetGroupVersionKind(gvk.GroupVersion().WithKind(k.kind))
				objs = append(objs, o)
			}
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("the cluster serves no %s objects (MetalLB's CRDs are not installed): give MetalLB's configuration with -f", metallbGroup)
	}
	return objs, nil
}

// writeConversion prints the converted objects as YAML documents, each
// under a comment naming its source, or as a JSON List.
func writeConversion(out io.Writer, format string, conv *Conversion) error {
	if format == outputJSON {
		items := make([]any, 0, len(conv.Objects))
		for _, o := range conv.Objects {
			items = append(items, o.Object.Object)
		}
		b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	var b strings.Builder
	b.WriteString("# Portico's equivalent of MetalLB's configuration, by porticoctl convert metallb.\n")
	b.WriteString("# MetalLB's objects are namespaced")
	if ns := slices.DeleteFunc(slices.Clone(conv.Namespaces), func(s string) bool { return s == "" }); len(ns) > 0 {
		fmt.Fprintf(&b, " (these came from %s)", strings.Join(ns, ", "))
	}
	b.WriteString(";\n# Portico's AddressPool, L2Advertisement, BGPPeer and BGPAdvertisement are\n")
	b.WriteString("# cluster-scoped: these have no namespace. BGP password Secrets are read\n")
	b.WriteString("# from portico-system.\n")
	for _, o := range conv.Objects {
		y, err := yaml.Marshal(o.Object.Object)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "---\n# from %s\n%s", o.From, y)
	}
	_, err := io.WriteString(out, b.String())
	return err
}
