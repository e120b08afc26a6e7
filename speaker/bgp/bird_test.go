package bgp

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bird is BIRD 2 in the router namespace.
type bird struct {
	l    *lab
	sock string
}

func (l *lab) startBIRD(conf string) *bird {
	l.t.Helper()
	dir := filepath.Join(l.dir, "bird")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	confPath := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		l.t.Fatal(err)
	}
	b := &bird{l: l, sock: filepath.Join(dir, "bird.ctl")}
	l.start(l.rtr, "bird", "bird", "-f", "-c", confPath, "-s", b.sock, "-P", filepath.Join(dir, "bird.pid"))
	l.eventually(10*time.Second, func() error { _, err := b.birdc("show status"); return err })
	return b
}

func (b *bird) birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("birdc %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// TestBIRD: a second, independent implementation takes the session and the
// route, and sees the withdrawal.
func TestBIRD(t *testing.T) {
	l := newLab(t)
	b := l.startBIRD(`router id 192.0.2.1;
protocol device {}
protocol bgp spk {
	local 192.0.2.1 as 64500;
	neighbor 192.0.2.2 as 64512;
	hold time 9;
	connect retry time 1;
	ipv4 { import all; export none; };
}
`)
	s := l.startSpeaker("speaker")
	edge := testSession("edge", 64512, 64500, "192.0.2.1")
	web := Path{Prefix: netip.MustParsePrefix("198.51.100.10/32"), Communities: []uint32{65000<<16 | 100}, LargeCommunities: []LargeCommunity{{64512, 1, 2}}}
	s.apply([]Session{edge}, map[string][]Path{"edge": {web, path("198.51.100.11/32")}})
	l.eventually(20*time.Second, func() error {
		out, err := b.birdc("show", "protocols", "spk")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "Established") {
			return fmt.Errorf("not established:\n%s", out)
		}
		return nil
	})
	l.eventually(10*time.Second, func() error {
		out, err := b.birdc("show", "route", "for", "198.51.100.10/32", "all")
		if err != nil {
			return err
		}
		for _, want := range []string{"198.51.100.10/32", "via 192.0.2.2", "BGP.next_hop: 192.0.2.2", "BGP.community: (65000,100)", "BGP.large_community: (64512, 1, 2)", "BGP.as_path: 64512"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("route lacks %q:\n%s", want, out)
			}
		}
		return nil
	})

	s.apply([]Session{edge}, map[string][]Path{"edge": {web}})
	l.eventually(10*time.Second, func() error {
		out, err := b.birdc("show", "route", "protocol", "spk")
		if err != nil {
			return err
		}
		if strings.Contains(out, "198.51.100.11/32") || !strings.Contains(out, "198.51.100.10/32") {
			return fmt.Errorf("want only 198.51.100.10/32:\n%s", out)
		}
		return nil
	})
}
