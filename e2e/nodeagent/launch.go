package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// Launch is everything a container process needs set up before its
// program starts. The agent writes it as JSON and re-executes itself as
// `nodeagent init FILE` in a fresh mount (and, for pod networking, UTS)
// namespace; Init applies it and execs the program.
type Launch struct {
	Netns    string  `json:"netns,omitempty"` // path of the pod's network namespace; empty for hostNetwork
	Hostname string  `json:"hostname,omitempty"`
	Mounts   []Mount `json:"mounts,omitempty"`
	Argv     []string
	Env      []string
	Dir      string `json:"dir,omitempty"`
	// UID and GID, when set, are the user the program runs as
	// (securityContext.runAsUser / runAsGroup).
	UID *int `json:"uid,omitempty"`
	GID *int `json:"gid,omitempty"`
}

// Mount binds Source onto Target inside the container's mount namespace.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Init is the hidden `init` mode. It never returns on success: the calling
// thread becomes the container's program.
func Init(file string) error {
	// Namespaces joined with setns belong to the thread; the program must be
	// exec'd from this same thread.
	runtime.LockOSThread()
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var l Launch
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if len(l.Argv) == 0 {
		return errors.New("no program to run")
	}
	if l.Netns != "" {
		f, err := os.Open(l.Netns)
		if err != nil {
			return err
		}
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("join %s: %w", l.Netns, err)
		}
		f.Close()
	}
	// Our mounts must not leak back to the host's mount namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	// A sysfs of this network namespace, so /sys/class/net shows the
	// container's interfaces, as it would in a real container.
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err == nil {
		_ = unix.Mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV, "")
	}
	if l.Hostname != "" {
		if err := unix.Sethostname([]byte(l.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	// Hold every source, and the program, by a descriptor before the
	// first mount: a mount may cover where the others are (an emptyDir on
	// /tmp over a lab that lives under /tmp), and they are reached through
	// /proc/self/fd then, as runc does.
	held := make([]string, len(l.Mounts))
	for i, m := range l.Mounts {
		fd, err := unix.Open(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("volume source %s: %w", m.Source, err)
		}
		held[i] = fmt.Sprintf("/proc/self/fd/%d", fd)
	}
	prog := l.Argv[0]
	if !filepath.IsAbs(prog) {
		return fmt.Errorf("program %q is not an absolute path", prog)
	}
	exe, err := holdProgram(prog)
	if err != nil {
		return err
	}
	for i, m := range l.Mounts {
		if err := unix.Mount(held[i], m.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Source, m.Target, err)
		}
		if m.ReadOnly {
			if err := unix.Mount("", m.Target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("make %s read-only: %w", m.Target, err)
			}
		}
	}
	dir := l.Dir
	if dir == "" {
		dir = "/"
	}
	if err := os.Chdir(dir); err != nil {
		return fmt.Errorf("workingDir %s: %w", dir, err)
	}
	// Drop to the Pod's user last: everything above needs root.
	if l.GID != nil {
		if err := syscall.Setgroups([]int{*l.GID}); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(*l.GID); err != nil {
			return fmt.Errorf("setgid %d: %w", *l.GID, err)
		}
	}
	if l.UID != nil {
		if err := syscall.Setuid(*l.UID); err != nil {
			return fmt.Errorf("setuid %d: %w", *l.UID, err)
		}
	}
	return syscall.Exec(exe, l.Argv, l.Env)
}

// holdProgram returns the path to exec prog by once the mounts are made:
// a binary through a descriptor held now; a script by its own path (its
// interpreter would find a descriptor closed by the exec).
func holdProgram(prog string) (string, error) {
	f, err := os.Open(prog)
	if err != nil {
		return "", fmt.Errorf("program %s: %w", prog, err)
	}
	magic := make([]byte, 2)
	if n, _ := f.Read(magic); n == 2 && string(magic) == "#!" {
		f.Close()
		return prog, nil
	}
	fd, err := unix.Open(prog, unix.O_PATH|unix.O_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("program %s: %w", prog, err)
	}
	return fmt.Sprintf("/proc/self/fd/%d", fd), nil
}

// ensureMountpoint creates Target on the host file system when it is
// missing (a directory, or an empty file for a file bind) and returns what
// it created, so the lab can remove it at teardown.
func ensureMountpoint(m Mount) ([]string, error) {
	if _, err := os.Lstat(m.Target); err == nil {
		return nil, nil
	}
	st, err := os.Stat(m.Source)
	if err != nil {
		return nil, err
	}
	var created []string
	dir := m.Target
	if !st.IsDir() {
		dir = filepath.Dir(m.Target)
	}
	// Record each directory level we create, outermost first.
	var missing []string
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		missing = append([]string{d}, missing...)
	}
	for _, d := range missing {
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			return created, err
		}
		created = append(created, d)
	}
	if !st.IsDir() {
		f, err := os.OpenFile(m.Target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil && !os.IsExist(err) {
			return created, err
		}
		if err == nil {
			f.Close()
			created = append(created, m.Target)
		}
	}
	return created, nil
}

func (w *worker) startProcess(ctx context.Context, c *ctr) error {
	env, err := w.containerEnv(ctx, c.spec)
	if err != nil {
		return err
	}
	var e envList
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		e.set(k, v)
	}
	argv := make([]string, len(c.prog.Argv))
	for i, a := range c.prog.Argv {
		argv[i] = expand(a, e.lookup)
	}
	ms, err := mounts(c.spec, w.vols)
	if err != nil {
		return err
	}
	if c.prog.Nginx {
		var extra []Mount
		argv, extra, err = w.nginx(c, ms)
		if err != nil {
			return err
		}
		ms = append(extra, ms...)
	}
	l := Launch{Argv: argv, Env: env, Dir: c.spec.WorkingDir, Mounts: ms}
	l.UID, l.GID = w.runAs(c.spec)
	if w.netns != "" {
		l.Netns = "/run/netns/" + w.netns
		l.Hostname = w.pod.Name
	}
	for _, m := range ms {
		created, err := ensureMountpoint(m)
		w.a.recordMountpoints(created)
		if err != nil {
			return fmt.Errorf("mount point %s: %w", m.Target, err)
		}
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	spec := filepath.Join(w.dir, c.spec.Name+".launch.json")
	if err := os.WriteFile(spec, b, 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(w.a.cfg.LogDir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(w.a.logFile(w.pod.Namespace, w.pod.Name, c.spec.Name),
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "init", spec)
	cmd.Stdout, cmd.Stderr = logf, logf
	flags := uintptr(syscall.CLONE_NEWNS)
	if w.netns != "" {
		flags |= syscall.CLONE_NEWUTS
	}
	// Setpgid: signals go to the whole process group (nginx's workers too).
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.pid = cmd.Process.Pid
	pidFile := w.a.pidFile(w.pod.UID, c.spec.Name)
	_ = os.MkdirAll(filepath.Dir(pidFile), 0o755)
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(c.pid)), 0o644)
	gen := c.gen
	go func() {
		err := cmd.Wait()
		code := int32(0)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int32(ws.Signal())
			} else {
				code = int32(ee.ExitCode())
			}
		} else if err != nil {
			code = 128
		}
		w.emit(event{c: c, gen: gen, kind: evExited, code: code})
	}()
	return nil
}

// runAs is the user and group of securityContext, the container's over the
// Pod's. A container that adds capabilities keeps running as root: the lab
// does not implement ambient capabilities, and root has them all.
func (w *worker) runAs(c *corev1.Container) (uid, gid *int) {
	pick := func(ctr, pod *int64) *int {
		v := pod
		if ctr != nil {
			v = ctr
		}
		if v == nil {
			return nil
		}
		return ptr.To(int(*v))
	}
	var cu, cg, pu, pg *int64
	if sc := c.SecurityContext; sc != nil {
		cu, cg = sc.RunAsUser, sc.RunAsGroup
		if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
			if u := pick(cu, nil); u == nil || *u != 0 {
				w.log.Info("container adds capabilities: running it as root", "container", c.Name)
			}
			return nil, nil
		}
	}
	if sc := w.pod.Spec.SecurityContext; sc != nil {
		pu, pg = sc.RunAsUser, sc.RunAsGroup
	}
	uid, gid = pick(cu, pu), pick(cg, pg)
	if uid != nil && gid == nil {
		gid = uid
	}
	return uid, gid
}

func (a *Agent) pidFile(uid types.UID, container string) string {
	return filepath.Join(a.cfg.StateDir, "pids", string(uid), container+".pid")
}

var mountpointsMu sync.Mutex

// recordMountpoints notes paths created on the host for bind mounts, so
// `lab down` can remove them (they may be shared by pods of every node, so
// nothing removes them while the lab runs).
func (a *Agent) recordMountpoints(paths []string) {
	if len(paths) == 0 {
		return
	}
	mountpointsMu.Lock()
	defer mountpointsMu.Unlock()
	f, err := os.OpenFile(filepath.Join(a.cfg.StateDir, "mountpoints.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		a.log.Warn("record mount points", "err", err)
		return
	}
	defer f.Close()
	for _, p := range paths {
		fmt.Fprintln(f, p)
	}
}
