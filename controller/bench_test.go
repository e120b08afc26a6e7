package controller_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// BenchmarkServices5000 is the end-to-end allocation figure: 5,000
// LoadBalancer Services created against the real API server, and the time
// until every one has an address, with the controller running as its own
// process (bin/controller) so its CPU time and peak RSS can be read from
// /proc. Two runs: "running", the controller up while the Services pour in
// (the API server's create rate bounds it), and "backlog", the controller
// started after all 5,000 exist (its own rate). Run it with
// `make bench-alloc`; it prints figures and asserts no time.
func BenchmarkServices5000(b *testing.B) {
	b.Run("running", func(b *testing.B) { benchServices(b, false) })
	b.Run("backlog", func(b *testing.B) { benchServices(b, true) })
}

func benchServices(b *testing.B, backlog bool) {
	needAPI(b)
	const n = 5000
	bin := os.Getenv("PORTICO_CONTROLLER_BIN")
	if bin == "" {
		bin = filepath.Join(b.TempDir(), "controller")
		out, err := exec.Command("go", "build", "-o", bin, "../cmd/controller").CombinedOutput()
		if err != nil {
			b.Fatalf("building the controller: %v\n%s", err, out)
		}
	}
	cs, err := kubernetes.NewForConfig(apiConfig)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	makePool(b, "bench", []string{"10.200.0.0/16"})
	b.Cleanup(func() {
		_ = apiClient.Delete(ctx, getPool(b, "bench"))
		waitUntil(b, "bench pool gone", func() (bool, string) {
			var pl v1alpha1.AddressPoolList
			_ = apiClient.List(ctx, &pl)
			return len(pl.Items) == 0, ""
		})
	})

	for i := 0; i < b.N; i++ {
		ns := fmt.Sprintf("bench-%d-%d", time.Now().Unix(), i)
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}

		// Count Services with an address as a watch sees them.
		var withIP atomic.Int64
		allDone := make(chan time.Time, 1)
		seen := sync.Map{}
		f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
		inf := f.Core().V1().Services().Informer()
		onChange := func(obj any) {
			s := obj.(*corev1.Service)
			if len(s.Status.LoadBalancer.Ingress) == 0 {
				return
			}
			if _, loaded := seen.LoadOrStore(s.Name, true); !loaded && withIP.Add(1) == n {
				allDone <- time.Now()
			}
		}
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onChange, UpdateFunc: func(_, o any) { onChange(o) }})
		wctx, cancel := context.WithCancel(ctx)
		f.Start(wctx.Done())
		f.WaitForCacheSync(wctx.Done())

		cmd := exec.Command(bin, "--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0", "--log-level=warn")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
		startController := func() {
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
		}
		if !backlog {
			startController()
		}

		start := time.Now()
		var wg sync.WaitGroup
		var next, failed atomic.Int64
		for range 16 {
			wg.Go(func() {
				for {
					j := next.Add(1) - 1
					if j >= n {
						return
					}
					svc := &corev1.Service{
						ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%05d", j), Namespace: ns},
						// 5,000 node ports would not fit the default node-port range.
						Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "x"},
							AllocateLoadBalancerNodePorts: ptr.To(false), Ports: []corev1.ServicePort{{Port: 80}}},
					}
					var err error
					for try := 0; try < 5; try++ {
						if _, err = cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err == nil {
							break
						}
						time.Sleep(100 * time.Millisecond)
					}
					if err != nil {
						fmt.Printf("creating %s: %v\n", svc.Name, err)
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		created := time.Since(start)
		if backlog {
			startController()
			start = time.Now()
		}
		if failed.Load() > 0 {
			b.Fatalf("%d services could not be created", failed.Load())
		}
		var end time.Time
		tick := time.NewTicker(10 * time.Second)
		deadline := time.After(10 * time.Minute)
	wait:
		for {
			select {
			case end = <-allDone:
				break wait
			case <-tick.C:
				fmt.Printf("  %s: %d of %d services have an address\n", time.Since(start).Round(time.Second), withIP.Load(), n)
			case <-deadline:
				b.Fatalf("only %d of %d services got an address in 10 minutes", withIP.Load(), n)
			}
		}
		tick.Stop()
		total := end.Sub(start)
		rss, cpu := procStats(cmd.Process.Pid)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cancel()

		b.ReportMetric(created.Seconds(), "s-to-create")
		b.ReportMetric(total.Seconds(), "s-to-all-IPs")
		b.ReportMetric(float64(n)/total.Seconds(), "services/s")
		b.ReportMetric(rss, "controller-peak-RSS-MiB")
		b.ReportMetric(cpu, "controller-CPU-s")
		if backlog {
			fmt.Printf("allocation, backlog: %d services created in %.1fs, then the controller started; all had an address %.1fs later (%.0f/s); controller peak RSS %.1f MiB, CPU %.1fs\n",
				n, created.Seconds(), total.Seconds(), float64(n)/total.Seconds(), rss, cpu)
		} else {
			fmt.Printf("allocation, running: %d services created in %.1fs; all had an address after %.1fs (%.0f/s); controller peak RSS %.1f MiB, CPU %.1fs\n",
				n, created.Seconds(), total.Seconds(), float64(n)/total.Seconds(), rss, cpu)
		}
		_ = cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	}
}

// procStats reads a process's peak resident set (MiB) and CPU time (s).
func procStats(pid int) (rssMiB, cpuSec float64) {
	if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
				kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
				rssMiB = kb / 1024
			}
		}
		f.Close()
	}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name: utime and stime are 14th and 15th.
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseFloat(fields[11], 64)
		st, _ := strconv.ParseFloat(fields[12], 64)
		cpuSec = (ut + st) / 100 // USER_HZ
	}
	return rssMiB, cpuSec
}
