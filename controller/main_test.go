package controller_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/portico-lb/portico/e2e/apitest"
)

// The integration tests share one real etcd and kube-apiserver (package
// apitest). Each test runs its own controller against it and cleans up
// after itself.
var (
	api        *apitest.Env
	apiConfig  *rest.Config
	apiClient  client.Client
	kubeconfig string
	scheme     *runtime.Scheme
)

func TestMain(m *testing.M) {
	logf.SetLogger(testLogger())
	apitest.Main(m, func(e *apitest.Env) error {
		api, apiConfig, apiClient, kubeconfig, scheme = e, e.Config, e.Client, e.Kubeconfig, e.Scheme
		return makeNamespaces()
	})
}

func makeNamespaces() error {
	for _, ns := range []string{"portico-system", "team-a", "team-b"} {
		obj := &corev1.Namespace{}
		obj.Name = ns
		obj.Labels = map[string]string{"team": ns}
		if err := apiClient.Create(context.Background(), obj); err != nil {
			return err
		}
	}
	return nil
}

// needAPI fails (under CI) or skips (on a laptop without the binaries) a test
// that needs the API server.
func needAPI(t testing.TB) {
	t.Helper()
	apitest.Require(t)
}
