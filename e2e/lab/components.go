package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func join(ps ...fmt.Stringer) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

// controlPlane is etcd and the three control-plane components, all in the cp
// namespace and talking to each other over its loopback.
func controlPlane(c Config, plan Plan) []daemon {
	d := c.Dirs()
	pki := func(f string) string { return filepath.Join(d.PKI(), f) }
	bin := func(b string) string { return filepath.Join(c.Bins, b) }
	ns := plan.CP.Netns()
	return []daemon{
		{Name: "etcd", Netns: ns, Argv: []string{bin("etcd"),
			"--name=cp", "--data-dir=" + d.Data("etcd"),
			"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
			"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
			"--initial-cluster=cp=http://127.0.0.1:2380",
			// A throw-away cluster on a shared machine: durability is not worth the fsyncs.
			"--unsafe-no-fsync", "--log-level=warn"}},
		{Name: "kube-apiserver", Netns: ns, Argv: []string{bin("kube-apiserver"),
			"--advertise-address=" + plan.CP.V4.String(),
			"--bind-address=::", fmt.Sprintf("--secure-port=%d", APIPort),
			"--etcd-servers=http://127.0.0.1:2379",
			"--client-ca-file=" + pki("ca.crt"),
			"--tls-cert-file=" + pki("apiserver.crt"), "--tls-private-key-file=" + pki("apiserver.key"),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + pki("sa.pub"),
			"--service-account-signing-key-file=" + pki("sa.key"),
			"--service-cluster-ip-range=" + join(ServiceV4, ServiceV6),
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--allow-privileged=true",
			// kubectl logs: the API server calls the node agents' kubelet API.
			"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority=" + pki("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
			"--profiling=false"}},
		{Name: "kube-controller-manager", Netns: ns, Argv: []string{bin("kube-controller-manager"),
			"--kubeconfig=" + pki("controller-manager.kubeconfig"),
			"--authentication-kubeconfig=" + pki("controller-manager.kubeconfig"),
			"--authorization-kubeconfig=" + pki("controller-manager.kubeconfig"),
			"--bind-address=127.0.0.1",
			"--leader-elect=false",
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + pki("sa.key"),
			"--root-ca-file=" + pki("ca.crt"),
			"--cluster-signing-cert-file=" + pki("ca.crt"), "--cluster-signing-key-file=" + pki("ca.key"),
			// Node agents set their own podCIDRs: the lab's routes are laid out
			// before any Node exists.
			"--allocate-node-cidrs=false",
			"--cluster-cidr=" + join(ClusterV4, ClusterV6),
			"--service-cluster-ip-range=" + join(ServiceV4, ServiceV6),
			// Tests stop an agent and wait for NotReady; the default 50s is slow.
			"--node-monitor-grace-period=20s", "--node-monitor-period=2s",
			"--profiling=false"}},
		{Name: "kube-scheduler", Netns: ns, Argv: []string{bin("kube-scheduler"),
			"--kubeconfig=" + pki("scheduler.kubeconfig"),
			"--authentication-kubeconfig=" + pki("scheduler.kubeconfig"),
			"--authorization-kubeconfig=" + pki("scheduler.kubeconfig"),
			"--bind-address=127.0.0.1",
			"--leader-elect=false",
			"--profiling=false"}},
	}
}

// nodeDaemons is the node agent and kube-proxy of every node.
func nodeDaemons(c Config, plan Plan) []daemon {
	d := c.Dirs()
	var ds []daemon
	for _, n := range plan.Nodes {
		ds = append(ds, daemon{Name: n.Name + ".agent", Netns: n.Netns(), HostMounts: true, Argv: []string{
			filepath.Join(c.Repo, "bin", "nodeagent"),
			"--node-name=" + n.Name,
			"--kubeconfig=" + filepath.Join(d.PKI(), n.Name+".kubeconfig"),
			"--node-ips=" + n.V4.String() + "," + n.V6.String(),
			"--pod-cidrs=" + join(n.PodCIDRv4, n.PodCIDRv6),
			"--bridge=cbr0",
			"--netns-prefix=" + plan.Prefix + "pod-",
			"--repo=" + c.Repo,
			"--state-dir=" + d.Data(n.Name),
			"--log-dir=" + filepath.Join(d.Logs(), "pods"),
			"--tls-cert=" + filepath.Join(d.PKI(), n.Name+"-kubelet.crt"),
			"--tls-key=" + filepath.Join(d.PKI(), n.Name+"-kubelet.key"),
			"--client-ca=" + filepath.Join(d.PKI(), "ca.crt"),
		}})
		ds = append(ds, daemon{Name: n.Name + ".kube-proxy", Netns: n.Netns(), Argv: []string{
			filepath.Join(c.Bins, "kube-proxy"),
			"--kubeconfig=" + filepath.Join(d.PKI(), "kube-proxy.kubeconfig"),
			"--hostname-override=" + n.Name,
			"--proxy-mode=nftables",
			"--cluster-cidr=" + join(ClusterV4, ClusterV6),
			// Masquerading all Service traffic makes replies return through
			// the node that did the DNAT, whatever path the request took: a
			// pod reaching itself through its Service (hairpin), a pod on the
			// same bridge, or a client on the LAN.
			"--masquerade-all",
			// The conntrack table size is global to the host, not ours to set.
			"--conntrack-max-per-core=0",
			"--metrics-bind-address=127.0.0.1:10249",
			"--healthz-bind-address=127.0.0.1:10256",
		}})
	}
	return ds
}

// routerDaemons writes the FRR configuration and returns zebra and bgpd.
// bgpd accepts a session from any host of the LAN in another AS (dynamic
// neighbours of the peer group "nodes"), so a BGPPeer naming the router
// works with no router configuration, as README's BGP example shows.
// Each runs in the router namespace with sockets and config in the lab's own
// directory, so the host's FRR (if any) is untouched.
func routerDaemons(c Config, plan Plan) ([]daemon, error) {
	dir := frrDir(c.Dirs())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	uid, gid, err := lookupUser("frr")
	if err != nil {
		return nil, fmt.Errorf("FRR's user: %w (is the frr package installed?)", err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	files := map[string]string{
		"zebra.conf": "hostname router\nlog stdout informational\n!\n",
		"bgpd.conf": fmt.Sprintf(`hostname router
log stdout informational
!
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp bestpath as-path multipath-relax
 neighbor nodes peer-group
 neighbor nodes remote-as external
 bgp listen range %s peer-group nodes
 bgp listen range %s peer-group nodes
 address-family ipv4 unicast
  neighbor nodes activate
  maximum-paths 32
  maximum-paths ibgp 32
 exit-address-family
 address-family ipv6 unicast
  neighbor nodes activate
  maximum-paths 32
  maximum-paths ibgp 32
 exit-address-family
!
`, RouterASN, plan.Router.V4, LANv4, LANv6),
		// vtysh reads this from the socket directory; without it vtysh
		// would complain about the host's /etc/frr.
		"vtysh.conf": "service integrated-vtysh-config\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
			return nil, err
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return nil, err
		}
	}
	zserv := filepath.Join(dir, "zserv.api")
	common := func(daemonName string) []string {
		return []string{"/usr/lib/frr/" + daemonName,
			"-f", filepath.Join(dir, daemonName+".conf"),
			"-i", filepath.Join(dir, daemonName+".pid"),
			"-z", zserv, "--vty_socket", dir,
			"-u", "frr", "-g", "frr", "-P", "0"}
	}
	ns := plan.Router.Netns()
	return []daemon{
		{Name: "router.zebra", Netns: ns, Argv: common("zebra")},
		{Name: "router.bgpd", Netns: ns, Argv: append(common("bgpd"), "-p", "179")},
	}, nil
}

// waitNodes waits until n Nodes are Ready and the cluster takes Pods.
func waitNodes(ctx context.Context, kubeconfig string, n int, timeout time.Duration) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			ready := 0
			for _, nd := range nodes.Items {
				for _, c := range nd.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
			// A user's first Pod is refused until the controller manager
			// made the default ServiceAccount: wait for that too.
			_, saErr := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
			if ready == n && saErr == nil {
				return nil
			}
			last = fmt.Sprintf("%d of %d nodes Ready, default ServiceAccount: %v", ready, n, saErr)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("nodes: %s after %s (see .lab/logs/node-*.agent.log)", last, timeout)
}
