package bgp

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The BGP figures of DESIGN.md without Kubernetes: how long from Apply to
// the route in FRR, and what 10,000 prefixes cost. Run with
//
//	go test -run '^$' -bench FRR -benchtime 1x ./speaker/bgp/
//
// They print figures and assert nothing about time.

// BenchmarkFRRApplyToRoute adds 50 prefixes one at a time to an
// established session and reports p50 and p99 of Apply-to-route-in-FRR.
func BenchmarkFRRApplyToRoute(b *testing.B) {
	l := newLab(b)
	r := l.startFRR("frr", frrConf(64500, "192.0.2.2 64512"))
	s := l.startSpeaker("speaker")
	edge := testSession("edge", 64512, 64500, "192.0.2.1")
	s.apply([]Session{edge}, nil)
	l.eventually(20*time.Second, func() error { return r.established("192.0.2.2") })
	b.ResetTimer()
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		var paths []Path
		for j := range 50 {
			p := path(fmt.Sprintf("198.18.%d.%d/32", i%256, j))
			paths = append(paths, p)
			start := time.Now()
			s.apply([]Session{edge}, map[string][]Path{"edge": paths})
			took = append(took, r.routedAfter(p.Prefix, start))
		}
		s.apply([]Session{edge}, nil)
		l.eventually(10*time.Second, func() error { return prefixesIn(r, "192.0.2.2", 0) })
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkFRR10000Prefixes applies a Plan of 10,000 prefixes at once and
// reports the time until FRR holds them all and the speaker's memory.
func BenchmarkFRR10000Prefixes(b *testing.B) {
	l := newLab(b)
	r := l.startFRR("frr", frrConf(64500, "192.0.2.2 64512"))
	s := l.startSpeaker("speaker")
	edge := testSession("edge", 64512, 64500, "192.0.2.1")
	s.apply([]Session{edge}, nil)
	l.eventually(20*time.Second, func() error { return r.established("192.0.2.2") })
	const n = 10000
	paths := make([]Path, n)
	base := netip.MustParseAddr("198.18.0.0").As4()
	for i := range paths {
		a := base
		a[2], a[3] = byte(i>>8), byte(i)
		paths[i] = Path{Prefix: netip.PrefixFrom(netip.AddrFrom4(a), 32), Communities: []uint32{64512<<16 | 1}}
	}
	rss0 := rssKiB(b, s)
	b.ResetTimer()
	var applyTook, totalTook time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		s.apply([]Session{edge}, map[string][]Path{"edge": paths})
		applyTook += time.Since(start)
		l.eventually(120*time.Second, func() error { return prefixesIn(r, "192.0.2.2", n) })
		totalTook += time.Since(start)
		if i < b.N-1 {
			s.apply([]Session{edge}, nil)
			l.eventually(60*time.Second, func() error { return prefixesIn(r, "192.0.2.2", 0) })
		}
	}
	b.StopTimer()
	b.ReportMetric(applyTook.Seconds()/float64(b.N), "apply-s")
	b.ReportMetric(totalTook.Seconds()/float64(b.N), "to-frr-s")
	b.ReportMetric(float64(rss0)/1024, "rss-before-MiB")
	b.ReportMetric(float64(rssKiB(b, s))/1024, "rss-MiB")
}

// prefixesIn checks that FRR has received exactly n prefixes from addr.
func prefixesIn(r *frr, addr string, n int) error {
	var sum struct {
		IPv4 struct {
			Peers map[string]struct {
				PfxRcd int `json:"pfxRcd"`
			} `json:"peers"`
		} `json:"ipv4Unicast"`
	}
	if err := r.json("show bgp summary json", &sum); err != nil {
		return err
	}
	if got := sum.IPv4.Peers[addr].PfxRcd; got != n {
		return fmt.Errorf("FRR has %d prefixes from %s, want %d", got, addr, n)
	}
	return nil
}

// rssKiB is the speaker process's resident memory.
func rssKiB(b *testing.B, s *speakerProc) int {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
