// Command porticoctl tells what Portico did and why. Installed as
// kubectl-portico it is the kubectl plugin `kubectl portico`.
//
//	status                who announces what: each LoadBalancer Service's
//	                      addresses, pool, and the nodes announcing them
//	pools                 usage of every address pool, per family
//	explain service NAME  the whole decision chain for one Service
//	convert metallb       MetalLB's configuration as Portico objects
//	version               the build's version
//
// It reads the API only: the speakers' ServiceAnnouncement objects, the
// pools' status, the advertisements, Nodes, speaker Pods and Ingresses.
// Choices are explained with the controller's and the allocator's own code
// (lbservice, controller.Request, pools.Allocator), not a copy of their rules.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/cmd/buildinfo"
)

// version is the release, set at build time with
// -ldflags "-X main.version=v1.2.3"; without it the module's build info
// says what it can.
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a command line that cannot be run as typed: exit code 2,
// with the usage, as getopt-style tools do.
type usageError struct{ error }

// run runs porticoctl with args and returns the exit code: 0 on success,
// 1 when the command failed, 2 when the command line is wrong, 3 when
// convert could not convert everything.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	if ee := (exitError{}); errors.As(err, &ee) {
		fmt.Fprintln(stderr, ee.msg)
		return ee.code
	}
	if ue := (usageError{}); errors.As(err, &ue) {
		fmt.Fprintf(stderr, "error: %v\n\n%s", ue.error, cmd.UsageString())
		return 2
	}
	fmt.Fprintf(stderr, "error: %v\n", err)
	return 1
}

// env is what every command needs: where to write, and the kubectl flags.
type env struct {
	out  io.Writer
	kube *genericclioptions.ConfigFlags
}

// client connects with the kubectl flags' configuration.
func (e *env) client() (client.Client, error) {
	cfg, err := e.kube.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

// namespace is -n, else the kubeconfig context's namespace, else default.
func (e *env) namespace() (string, error) {
	ns, _, err := e.kube.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	return ns, nil
}

// name is how the user called us: "kubectl portico" as a plugin.
func name() string {
	if strings.HasPrefix(filepath.Base(os.Args[0]), "kubectl-portico") {
		return "kubectl portico"
	}
	return "porticoctl"
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	e := &env{out: stdout, kube: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use: "porticoctl",
		// Help says "kubectl portico status" when run as the plugin.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: name()},
		Short:       "Tell what Portico did with LoadBalancer Services, and why",
		Long: `Tell what Portico did with LoadBalancer Services, and why.

  status                 who announces what: addresses, pool, announcing nodes
  pools                  usage of every address pool, per family
  explain service NAME   the whole decision chain for one Service
  convert metallb        MetalLB's configuration as Portico objects
  version                the build's version

The kubectl flags (--kubeconfig, --context, -n, ...) work as in kubectl.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// A word that is no command is a usage error, not a silent help.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		// --version, as the other binaries have it.
		Version: buildinfo.Version(version),
	}
	root.SetVersionTemplate(name() + " {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true
	e.kube.AddFlags(root.PersistentFlags())
	root.AddCommand(statusCommand(e), poolsCommand(e), explainCommand(e), convertCommand(e, stderr), versionCommand(stdout))
	return root
}

func versionCommand(out io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this build",
		Args:  exactArgs(0),
		Run: func(*cobra.Command, []string) {
			fmt.Fprintf(out, "%s %s\n", name(), buildinfo.Version(version))
		},
	}
}

// exactArgs is cobra.ExactArgs as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
