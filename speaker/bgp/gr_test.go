package bgp

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestFRRGracefulRestart: with graceful restart, FRR keeps a speaker's
// routes (stale) while the speaker is gone and refreshes them when it is
// back; without it, they go with the session.
func TestFRRGracefulRestart(t *testing.T) {
	for _, gr := range []bool{true, false} {
		t.Run(fmt.Sprintf("gracefulRestart=%v", gr), func(t *testing.T) {
			l := newLab(t)
			conf := frrConf(64500, "192.0.2.2 64512")
			conf = strings.Replace(conf, " no bgp network import-check\n", " no bgp network import-check\n bgp graceful-restart\n", 1)
			r := l.startFRR("frr", conf)
			edge := testSession("edge", 64512, 64500, "192.0.2.1")
			edge.GracefulRestart = gr
			plan := map[string][]Path{"edge": {path("198.51.100.10/32")}}
			route := func() (frrPath, error) {
				paths, err := r.route("198.51.100.10/32")
				if err != nil {
					return frrPath{}, err
				}
				if len(paths) != 1 {
					return frrPath{}, fmt.Errorf("%d paths", len(paths))
				}
				return paths[0], nil
			}

			s1 := l.startSpeaker("speaker1")
			s1.apply([]Session{edge}, plan)
			l.eventually(20*time.Second, func() error { return r.established("192.0.2.2") })
			l.eventually(10*time.Second, func() error { _, err := route(); return err })

			s1.kill()
			l.eventually(15*time.Second, func() error {
				if r.established("192.0.2.2") == nil {
					return fmt.Errorf("FRR has not noticed the speaker is gone")
				}
				return nil
			})
			if !gr {
				l.eventually(5*time.Second, func() error {
					if _, err := route(); err == nil {
						return fmt.Errorf("route kept without graceful restart")
					}
					return nil
				})
				return
			}
			// The route stays, marked stale, for as long as the speaker is away.
			for range 10 {
				p, err := route()
				if err != nil || !p.Stale {
					t.Fatalf("while the speaker is away: route %+v, %v; want it kept as stale", p, err)
				}
				time.Sleep(300 * time.Millisecond)
			}

			start := time.Now()
			s2 := l.startSpeaker("speaker2")
			s2.apply([]Session{edge}, plan)
			l.eventually(20*time.Second, func() error {
				p, err := route()
				if err != nil {
					return fmt.Errorf("route lost during the restart: %v", err)
				}
				if p.Stale || r.established("192.0.2.2") != nil {
					return fmt.Errorf("not refreshed yet: %+v", p)
				}
				return nil
			})
			t.Logf("speaker back and route refreshed %s after its start", time.Since(start).Round(time.Millisecond))

			// Close is the deliberate stop: GoBGP's Cease goes out as a
			// Hard Reset (RFC 8538), so the router drops the routes at once
			// even with graceful restart. A restarting speaker exits
			// without Close, as s1 did.
			if _, err := s2.call(helperRequest{Op: "close"}); err != nil {
				t.Fatal(err)
			}
			l.eventually(5*time.Second, func() error {
				if p, err := route(); err == nil {
					return fmt.Errorf("route kept after Close: %+v", p)
				}
				return nil
			})
		})
	}
}
