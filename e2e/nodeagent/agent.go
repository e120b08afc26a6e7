package nodeagent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
)

// Config is one node's identity and where its pods live.
type Config struct {
	NodeName    string
	NodeIPs     []netip.Addr   // IPv4 then IPv6
	PodCIDRs    []netip.Prefix // IPv4 then IPv6
	Bridge      string         // pod bridge in the node namespace
	NetnsPrefix string         // pod namespaces are <prefix><node>-<uid>
	BinDir      string         // the repository's bin/
	StateDir    string         // volumes, launch files, pid files
	LogDir      string         // container logs: <ns>_<pod>_<container>.log
	// The kubelet API for `kubectl logs`: serving certificate and the CA
	// of the API server's client certificate. Empty TLSCert: no API.
	TLSCert, TLSKey, ClientCA string
}

// Agent is the lab's kubelet for one node.
type Agent struct {
	cfg Config
	cs  kubernetes.Interface
	log *slog.Logger

	svcLister corelisters.ServiceLister
	events    record.EventRecorder

	mu      sync.Mutex // guards workers and ipam
	workers map[types.UID]*worker
	ipam    *ipam
	wg      sync.WaitGroup
}

// New returns an agent; Run starts it.
func New(cfg Config, cs kubernetes.Interface, log *slog.Logger) (*Agent, error) {
	if len(cfg.NodeIPs) != 2 || len(cfg.PodCIDRs) != 2 || !cfg.PodCIDRs[0].Addr().Is4() || !cfg.PodCIDRs[1].Addr().Is6() {
		return nil, fmt.Errorf("want an IPv4 and an IPv6 node IP and pod CIDR, in that order")
	}
	return &Agent{cfg: cfg, cs: cs, log: log, workers: map[types.UID]*worker{},
		ipam: &ipam{v4: cfg.PodCIDRs[0], v6: cfg.PodCIDRs[1], used: map[int]bool{}, next: 1}}, nil
}

func (a *Agent) services() []*corev1.Service {
	if a.svcLister == nil {
		return nil
	}
	s, _ := a.svcLister.List(labels.Everything())
	return s
}

// Run registers the node, keeps it alive and runs its pods until ctx ends;
// then it stops every pod it started.
func (a *Agent) Run(ctx context.Context) error {
	a.cleanupLeftovers()
	// Events make `kubectl describe pod` explain what happened, as with
	// a kubelet: started, killed, unhealthy, back-off, image not mapped.
	eb := record.NewBroadcaster(record.WithContext(ctx))
	eb.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.cs.CoreV1().Events("")})
	defer eb.Shutdown()
	a.events = eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: a.cfg.NodeName})
	if err := a.serveLogs(ctx); err != nil {
		return fmt.Errorf("kubelet API: %w", err)
	}
	if err := a.register(ctx); err != nil {
		return err
	}
	go a.heartbeat(ctx)

	svcInf := informers.NewSharedInformerFactory(a.cs, 10*time.Minute)
	a.svcLister = svcInf.Core().V1().Services().Lister()
	podInf := informers.NewSharedInformerFactoryWithOptions(a.cs, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
		}))
	pods := podInf.Core().V1().Pods().Informer()
	_, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.dispatch(ctx, o.(*corev1.Pod), false) },
		UpdateFunc: func(_, o any) { a.dispatch(ctx, o.(*corev1.Pod), false) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				a.dispatch(ctx, p, true)
			}
		},
	})
	if err != nil {
		return err
	}
	svcInf.Start(ctx.Done())
	svcInf.WaitForCacheSync(ctx.Done())
	podInf.Start(ctx.Done())
	a.log.Info("node agent running", "node", a.cfg.NodeName)
	<-ctx.Done()
	podInf.Shutdown()
	a.wg.Wait() // each worker stops its pod's processes
	return nil
}

// dispatch hands the latest version of a Pod to its worker, creating the
// worker on first sight. Workers own all per-pod state.
func (a *Agent) dispatch(ctx context.Context, p *corev1.Pod, gone bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.workers[p.UID]
	if !ok {
		if gone {
			return
		}
		w = newWorker(a, p)
		a.workers[p.UID] = w
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			w.run(ctx)
			a.mu.Lock()
			delete(a.workers, p.UID)
			a.mu.Unlock()
		}()
	}
	w.send(p, gone)
}

func (a *Agent) allocIP() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ipam.alloc()
}

func (a *Agent) releaseIP(i int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ipam.release(i)
}

// cleanupLeftovers removes what a previous agent of this node left behind
// after a crash: pod processes and pod network namespaces.
func (a *Agent) cleanupLeftovers() {
	pidDir := filepath.Join(a.cfg.StateDir, "pids")
	entries, _ := os.ReadDir(pidDir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(pidDir, e.Name()))
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
		_ = os.Remove(filepath.Join(pidDir, e.Name()))
	}
	nss, _ := os.ReadDir("/run/netns")
	for _, e := range nss {
		if strings.HasPrefix(e.Name(), a.cfg.NetnsPrefix+a.cfg.NodeName+"-") {
			_ = ipCmd(context.Background(), "netns", "del", e.Name())
		}
	}
}

func (a *Agent) nodeStatus(now metav1.Time) corev1.NodeStatus {
	rl := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("8Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("20Gi"),
	}
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return corev1.NodeStatus{
		Capacity:    rl,
		Allocatable: rl,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "lab node agent"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "lab node agent"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "lab node agent"),
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "lab node agent is posting ready status"),
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: a.cfg.NodeIPs[0].String()},
			{Type: corev1.NodeInternalIP, Address: a.cfg.NodeIPs[1].String()},
			{Type: corev1.NodeHostName, Address: a.cfg.NodeName},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: KubeletPort}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          "v1.36.3-portico-lab",
			KernelVersion:           kernelVersion(),
			OSImage:                 osImage(),
			OperatingSystem:         "linux",
			Architecture:            "amd64",
			ContainerRuntimeVersion: "portico-lab://1",
		},
	}
}

// mergeConditions keeps LastTransitionTime of conditions whose status did
// not change, so transitions stay meaningful.
func mergeConditions(old, cur []corev1.NodeCondition) {
	for i := range cur {
		for _, o := range old {
			if o.Type == cur[i].Type && o.Status == cur[i].Status {
				cur[i].LastTransitionTime = o.LastTransitionTime
			}
		}
	}
}

func (a *Agent) register(ctx context.Context) error {
	now := metav1.Now()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: map[string]string{
			"kubernetes.io/hostname": a.cfg.NodeName,
			"kubernetes.io/os":       "linux",
			"kubernetes.io/arch":     "amd64",
		}},
		Spec: corev1.NodeSpec{
			PodCIDR:  a.cfg.PodCIDRs[0].String(),
			PodCIDRs: []string{a.cfg.PodCIDRs[0].String(), a.cfg.PodCIDRs[1].String()},
		},
		Status: a.nodeStatus(now),
	}
	var err error
	for attempt := 0; ; attempt++ {
		_, err = a.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			break
		}
		if attempt > 60 || ctx.Err() != nil {
			return fmt.Errorf("register node %s: %w", a.cfg.NodeName, err)
		}
		a.log.Warn("register node", "node", a.cfg.NodeName, "err", err)
		time.Sleep(time.Second)
	}
	return a.postStatus(ctx)
}

func (a *Agent) postStatus(ctx context.Context) error {
	n, err := a.cs.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	st := a.nodeStatus(metav1.Now())
	mergeConditions(n.Status.Conditions, st.Conditions)
	n.Status.Capacity, n.Status.Allocatable = st.Capacity, st.Allocatable
	n.Status.Conditions, n.Status.Addresses, n.Status.NodeInfo = st.Conditions, st.Addresses, st.NodeInfo
	n.Status.DaemonEndpoints = st.DaemonEndpoints
	_, err = a.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

// heartbeat renews the node's Lease every 5 s and posts status every 10 s,
// which is what the node lifecycle controller watches.
func (a *Agent) heartbeat(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for i := 0; ; i++ {
		if err := a.renewLease(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("renew lease", "node", a.cfg.NodeName, "err", err)
		}
		if i%2 == 1 {
			if err := a.postStatus(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("post node status", "node", a.cfg.NodeName, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) renewLease(ctx context.Context) error {
	leases := a.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		n, err := a.cs.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		_, err = leases.Create(ctx, &coordv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}},
			Spec: coordv1.LeaseSpec{HolderIdentity: ptr.To(a.cfg.NodeName), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.RenewTime = &now
	l.Spec.HolderIdentity = ptr.To(a.cfg.NodeName)
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

func kernelVersion() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func osImage() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "linux"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "linux"
}
