package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
)

// debianNeeds maps a program the lab runs (a name looked up in PATH, or an
// absolute path for daemons outside PATH) to the Debian package that ships it.
var debianNeeds = map[string]string{
	"ip":                 "iproute2",
	"nft":                "nftables",
	"iptables":           "iptables",
	"conntrack":          "conntrack",
	"/usr/lib/frr/zebra": "frr",
	"/usr/lib/frr/bgpd":  "frr",
	"vtysh":              "frr",
	"arping":             "iputils-arping",
	"ndisc6":             "ndisc6",
	"curl":               "curl",
	"nginx":              "nginx",
	"sysctl":             "procps",
	"nsenter":            "util-linux",
}

// sbinOnPath makes sure the programs the lab runs by name (ip, nft,
// sysctl) are found even when the caller's PATH lacks the sbin directories,
// as a non-login shell or a CI runner may.
func sbinOnPath() {
	path := os.Getenv("PATH")
	for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		if !slices.Contains(filepath.SplitList(path), d) {
			path += string(filepath.ListSeparator) + d
		}
	}
	os.Setenv("PATH", path)
}

// EnsurePackages installs, with apt-get, the Debian packages whose programs
// are missing. It runs apt only when something is missing, so a prepared
// machine never touches the network.
func EnsurePackages(ctx context.Context, out io.Writer) error {
	want := map[string]bool{}
	for path, pkg := range debianNeeds {
		if _, err := exec.LookPath(path); err != nil {
			want[pkg] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	var pkgs []string
	for p := range want {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages %v: run as root or apt-get install them", pkgs)
	}
	fmt.Fprintf(out, "installing Debian packages %v\n", pkgs)
	// nginx and frr start their services on install; the lab runs its own
	// copies inside namespaces and wants none on the host. A policy-rc.d
	// that says "no" is the Debian way to stop that; it is removed after.
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\n# portico lab: no services started during apt-get install\nexit 101\n"), 0o755); err == nil {
			defer os.Remove(policy)
		}
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"apt-get", "update", "-qq"},
		append([]string{"apt-get", "install", "-y", "-qq", "--no-install-recommends"}, pkgs...),
	} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%v: %w", args, err)
		}
	}
	return nil
}
