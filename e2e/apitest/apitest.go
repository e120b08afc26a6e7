// Package apitest starts a real etcd and kube-apiserver for integration
// tests, from the binaries `make k8s-bins` builds (KUBEBUILDER_ASSETS), with
// Portico's CRDs installed and dual-stack Service CIDRs.
package apitest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// Env is a running API server.
type Env struct {
	Config     *rest.Config
	Client     client.Client
	Scheme     *kruntime.Scheme
	Kubeconfig string // path of an admin kubeconfig file
	Kubectl    string // path of kubectl
	env        *envtest.Environment
	dir        string
}

// Start starts etcd and kube-apiserver. The caller must Stop it.
func Start() (*Env, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds etcd and kube-apiserver into .cache/")
	}
	for _, bin := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("%s missing from %s: run `make k8s-bins`", bin, assets)
		}
	}
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	e := &Env{Scheme: scheme, Kubectl: filepath.Join(assets, "kubectl")}
	e.env = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot(), "manifests", "crd")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		Scheme:                scheme,
	}
	// Dual-stack Services need both service CIDRs.
	e.env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16,fd00:10:96::/112")
	cfg, err := e.env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	e.Config = cfg
	if e.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		e.Stop()
		return nil, err
	}
	if e.dir, err = os.MkdirTemp("", "portico-apitest-"); err != nil {
		e.Stop()
		return nil, err
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, e.env.KubeConfig, 0o600); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

// Stop stops the API server and etcd and removes their files.
func (e *Env) Stop() {
	if e.env != nil {
		_ = e.env.Stop()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}

// mainErr is why Main has no API server for the tests; nil when it has one.
var mainErr = errors.New("apitest.Main did not run")

// Main runs a test binary around one API server: it starts the server,
// calls setup with it, runs the tests and stops the server. If the server
// cannot start, the tests still run, and each that calls Require fails
// under CI or skips elsewhere.
func Main(m *testing.M, setup func(*Env) error) {
	os.Exit(func() int {
		env, err := Start()
		if err == nil {
			defer env.Stop()
			err = setup(env)
		}
		if mainErr = err; err != nil {
			fmt.Fprintln(os.Stderr, "integration tests cannot run:", err)
		}
		return m.Run()
	}())
}

// Require is Need for tests run by Main.
func Require(t testing.TB) {
	t.Helper()
	Need(t, mainErr)
}

// Need fails the test under CI (CI=true), where an integration test must
// never be skipped, and skips it elsewhere, when the API server could not
// start (err).
func Need(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("the API server is required under CI: %v", err)
	}
	t.Skipf("no API server: %v", err)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
