package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemon is a long-lived lab process: it outlives `lab up`, logs to
// .lab/logs/<name>.log and is remembered in .lab/run/<name>.pid.
type daemon struct {
	Name  string // unique, e.g. "apiserver" or "node-1.agent"
	Netns string // empty for the root namespace
	// HostMounts runs the daemon in the host's mount namespace (nsenter
	// --net) instead of ip-netns-exec's private one, for the node agent: the
	// pod network namespaces it creates must be visible to the host.
	HostMounts bool
	Argv       []string // program and arguments
	Sum        string   // SHA-256 of the program, for the lab's own binaries
}

func fileSum(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (d Dirs) start(dm daemon) (int, error) {
	for _, dir := range []string{d.Logs(), d.Run()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, err
		}
	}
	logf, err := os.OpenFile(filepath.Join(d.Logs(), dm.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	argv := dm.Argv
	switch {
	case dm.Netns != "" && dm.HostMounts:
		argv = append([]string{"nsenter", "--net=/run/netns/" + dm.Netns, "--"}, argv...)
	case dm.Netns != "":
		argv = append([]string{"ip", "netns", "exec", dm.Netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A session of its own: the daemon survives the terminal and `lab up`.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", dm.Name, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := os.WriteFile(d.pidFile(dm.Name), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return 0, err
	}
	return pid, nil
}

func (d Dirs) pidFile(name string) string { return filepath.Join(d.Run(), name+".pid") }

// pidOf reads a daemon's pid file and says whether that process still runs.
func (d Dirs) pidOf(name string) (int, bool) {
	b, err := os.ReadFile(d.pidFile(name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, alive(pid)
}

// alive is true for a running process; zombies (exited, not yet reaped by
// init) count as dead.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// stopPIDs sends SIGTERM, waits up to grace, then SIGKILLs what is left.
func stopPIDs(pids []int, grace time.Duration) {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		left := 0
		for _, p := range pids {
			if alive(p) {
				left++
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range pids {
		if alive(p) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// nsPIDs lists the processes whose network namespace is netns.
func nsPIDs(ctx context.Context, netns string) ([]int, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", netns).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("ip netns pids %s: %s", netns, ee.Stderr)
		}
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}
