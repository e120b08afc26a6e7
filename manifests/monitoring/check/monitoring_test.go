// Package check tests the monitoring component's alert rules and dashboard
// with Prometheus's own parsers, and pins the Prometheus module that
// promtool (make promtool) is built from. It is a module of its own so
// that the Prometheus module's requirements do not raise Portico's.
package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// metric is one line of ../metrics.txt.
type metric struct{ component, name, typ string }

func listed(t *testing.T) map[string]metric {
	t.Helper()
	b, err := os.ReadFile("../metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]metric{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || !slices.Contains([]string{"controller", "speaker", "ingress"}, f[0]) ||
			!slices.Contains([]string{"counter", "gauge", "histogram"}, f[2]) {
			t.Fatalf("metrics.txt: %q is not \"controller|speaker|ingress NAME counter|gauge|histogram\"", line)
		}
		if _, dup := m[f[1]]; dup {
			t.Fatalf("metrics.txt lists %s twice", f[1])
		}
		m[f[1]] = metric{f[0], f[1], f[2]}
	}
	return m
}

// family maps a series name to the listed metric it belongs to: a
// histogram's _bucket, _sum and _count series belong to the histogram.
func family(list map[string]metric, name string) (metric, bool) {
	if m, ok := list[name]; ok && m.typ != "histogram" {
		return m, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if m, ok := list[strings.TrimSuffix(name, suffix)]; ok && m.typ == "histogram" && strings.HasSuffix(name, suffix) {
			return m, true
		}
	}
	return metric{}, false
}

var promql = parser.NewParser(parser.Options{})

// names returns the metric names expr selects. A selector without a
// metric name (a bare {__name__=~...}) is an error: the test could not say
// what it reads.
func names(expr string) ([]string, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				err = fmt.Errorf("selector %s names no metric", vs)
			}
			out = append(out, vs.Name)
		}
		return nil
	})
	return out, err
}

// rules returns the PrometheusRule's spec as a Prometheus rules file.
func rules(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Spec       json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &obj); err != nil {
		t.Fatal(err)
	}
	if obj.APIVersion != "monitoring.coreos.com/v1" || obj.Kind != "PrometheusRule" {
		t.Fatalf("prometheusrule.yaml is a %s %s", obj.APIVersion, obj.Kind)
	}
	spec, err := yaml.JSONToYAML(obj.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// queries returns every PromQL query of the dashboard, by where it is:
// panel targets and the template variables' label_values(...) queries.
// Grafana's interval variables become a duration the parser accepts.
func queries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	interval := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")
	q := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				q[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = interval.Replace(tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var query struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &query); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		m := labelValues.FindStringSubmatch(query.Query)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(SELECTOR, LABEL)", v.Name, query.Query)
		}
		q["variable "+v.Name] = m[1]
	}
	return q
}

type panel struct {
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// parsedRules parses and validates the rules as Prometheus loads them
// (what promtool check rules checks).
func parsedRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.Parse(rules(t), false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil || len(errs) > 0 {
		t.FailNow()
	}
	return groups
}

// The rules are a valid Prometheus rules file, and every alert says what
// happened, what it means and where its runbook is.
func TestRulesParse(t *testing.T) {
	groups := parsedRules(t)
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, a)
				}
			}
			if want := "#" + strings.ToLower(r.Alert); !strings.HasSuffix(r.Annotations["runbook_url"], want) {
				t.Errorf("alert %s: runbook_url %q does not end in %s (the README's heading)", r.Alert, r.Annotations["runbook_url"], want)
			}
			if !bytes.Contains(readme, []byte("\n#### "+r.Alert+"\n")) {
				t.Errorf("alert %s: the README has no heading #### %s, its runbook", r.Alert, r.Alert)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
		}
	}
	if n == 0 {
		t.Error("no alert in prometheusrule.yaml")
	}
}

// Every metric an alert or a panel reads is in metrics.txt, and every
// metric there is read by one: the list the lab test checks against
// scrapes is exactly what the rules and the dashboard need.
func TestMetricsListed(t *testing.T) {
	list := listed(t)
	used := map[string]bool{}
	check := func(where, expr string) {
		ns, err := names(expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", where, err, expr)
			return
		}
		for _, n := range ns {
			m, ok := family(list, n)
			if !ok {
				t.Errorf("%s reads %s, which metrics.txt does not list", where, n)
				continue
			}
			used[m.name] = true
		}
	}
	for _, g := range parsedRules(t).Groups {
		for _, r := range g.Rules {
			check("rule "+r.Alert+r.Record, r.Expr)
		}
	}
	qs := queries(t)
	if len(qs) == 0 {
		t.Fatal("the dashboard has no query")
	}
	for where, expr := range qs {
		check("dashboard "+where, expr)
	}
	for name := range list {
		if !used[name] {
			t.Errorf("metrics.txt lists %s, which no alert or panel reads", name)
		}
	}
}

// The checker itself: a histogram's series resolve to it, unlisted and
// unnamed selectors are refused.
func TestNames(t *testing.T) {
	list := map[string]metric{
		"a_total":   {"ingress", "a_total", "counter"},
		"h_seconds": {"ingress", "h_seconds", "histogram"},
	}
	got, err := names(`histogram_quantile(0.99, sum by (le) (rate(h_seconds_bucket{x="$y"}[5m]))) / on() group_left sum(rate(a_total[5m])) or vector(0)`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"h_seconds_bucket", "a_total"}; !slices.Equal(got, want) {
		t.Errorf("names = %v, want %v", got, want)
	}
	for name, want := range map[string]bool{"h_seconds_bucket": true, "h_seconds_count": true, "h_seconds": false, "a_total": true, "a_total_count": false, "b": false} {
		if _, ok := family(list, name); ok != want {
			t.Errorf("family(%s) = %v, want %v", name, ok, want)
		}
	}
	if _, err := names(`{__name__=~"portico_.*"}`); err == nil {
		t.Error("a selector without a metric name was accepted")
	}
	if _, err := names(`sum(rate(a_total[5m])`); err == nil {
		t.Error("an unbalanced expression was accepted")
	}
}

// The component names files that exist, and puts the dashboard in a
// ConfigMap labelled for Grafana's sidecar. (kustomize itself is not run
// here: the lab has no Prometheus Operator CRDs to apply it to.)
func TestComponent(t *testing.T) {
	b, err := os.ReadFile("../kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion         string   `json:"apiVersion"`
		Kind               string   `json:"kind"`
		Resources          []string `json:"resources"`
		ConfigMapGenerator []struct {
			Name      string   `json:"name"`
			Namespace string   `json:"namespace"`
			Files     []string `json:"files"`
			Options   struct {
				DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
				Labels                map[string]string `json:"labels"`
				Annotations           map[string]string `json:"annotations"`
			} `json:"options"`
		} `json:"configMapGenerator"`
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.Kind != "Component" {
		t.Errorf("kustomization.yaml is a %q, want a Component", k.Kind)
	}
	files := slices.Clone(k.Resources)
	dashboard := false
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			_, file, _ := strings.Cut(f, "=")
			if file == "" {
				file = f
			}
			files = append(files, file)
			dashboard = dashboard || (file == "dashboard.json" && g.Options.Labels["grafana_dashboard"] == "1" && g.Options.DisableNameSuffixHash)
		}
	}
	for _, f := range files {
		if _, err := os.Stat("../" + f); err != nil {
			t.Errorf("kustomization.yaml names %s: %v", f, err)
		}
	}
	if !dashboard {
		t.Error("no ConfigMap generated from dashboard.json with the label grafana_dashboard: \"1\" and a stable name")
	}
}
