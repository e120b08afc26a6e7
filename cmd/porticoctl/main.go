// Command porticoctl shows what Portico did. `porticoctl status` lists
// every LoadBalancer Service Portico serves: its addresses, the pool they
// came from, and which node announces each address by which protocol.
//
// Who announces is read from the speakers' Announced and Withdrawn Events
// on the Service: the speakers keep no other record in the API, so an
// announcement older than the Events' lifetime (an hour by default) shows
// as unknown, and a node that died without withdrawing shows until another
// node announces the address.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const usage = `usage: porticoctl [--kubeconfig FILE] status [-n NAMESPACE]

  status   for each LoadBalancer Service Portico serves: its addresses,
           their pool, and the node announcing each one, by which protocol
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "porticoctl:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	global := flag.NewFlagSet("porticoctl", flag.ContinueOnError)
	kubeconfig := global.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)")
	global.Usage = func() { fmt.Fprint(global.Output(), usage); global.PrintDefaults() }
	if err := global.Parse(args); err != nil {
		return err
	}
	if global.NArg() == 0 {
		global.Usage()
		return fmt.Errorf("no command given")
	}
	switch cmd, rest := global.Arg(0), global.Args()[1:]; cmd {
	case "status":
		fs := flag.NewFlagSet("status", flag.ContinueOnError)
		ns := fs.String("n", "", "only this namespace (default: all)")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		c, err := newClient(*kubeconfig)
		if err != nil {
			return err
		}
		rows, err := Status(context.Background(), c, *ns)
		if err != nil {
			return err
		}
		sessions, err := Sessions(context.Background(), c)
		if err != nil {
			return err
		}
		return print(out, rows, sessions)
	default:
		global.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func newClient(kubeconfig string) (client.Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

func print(out io.Writer, rows []Row, sessions []Session) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tNAME\tIP\tPOOL\tANNOUNCED BY\tPROTOCOL\tVIA")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Name, dash(r.IP), dash(r.Pool), dash(r.Node), dash(r.Protocol), dash(r.Via))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(sessions) == 0 {
		return nil
	}
	fmt.Fprintln(out)
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "BGP PEER\tNODE\tADDRESS\tSTATE\tSINCE")
	for _, s := range sessions {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", s.Peer, s.Node, s.Address, s.State, s.Since.Format(time.RFC3339))
	}
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
