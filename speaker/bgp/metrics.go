package bgp

import (
	"context"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/prometheus/client_golang/prometheus"
)

// The session metrics, labelled by BGPPeer name. Register the Announcer
// with the speaker's registry to export them.
var (
	sessionUpDesc = prometheus.NewDesc("portico_speaker_bgp_sessions_up",
		"1 when the BGP session to the BGPPeer is established, 0 otherwise (metallb_bgp_session_up).", []string{"peer"}, nil)
	prefixesDesc = prometheus.NewDesc("portico_speaker_bgp_prefixes_advertised",
		"Prefixes advertised to the BGPPeer; 0 while the session is down (metallb_bgp_announced_prefixes_total).", []string{"peer"}, nil)
	updatesDesc = prometheus.NewDesc("portico_speaker_bgp_updates_sent_total",
		"BGP UPDATE messages sent to the BGPPeer, as GoBGP counts them; starts again from 0 when the session is reset for a configuration change (metallb_bgp_updates_total).", []string{"peer"}, nil)
)

// Describe implements prometheus.Collector.
func (a *Announcer) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionUpDesc
	ch <- prefixesDesc
	ch <- updatesDesc
}

// Collect implements prometheus.Collector. It reads Status and GoBGP's
// message counters at scrape time, so the metrics cannot drift from what
// Status reports.
func (a *Announcer) Collect(ch chan<- prometheus.Metric) {
	for _, st := range a.Status() {
		up := 0.0
		if st.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(sessionUpDesc, prometheus.GaugeValue, up, st.Name)
		ch <- prometheus.MustNewConstMetric(prefixesDesc, prometheus.GaugeValue, float64(st.Prefixes), st.Name)
	}
	for name, n := range a.updatesSent() {
		ch <- prometheus.MustNewConstMetric(updatesDesc, prometheus.CounterValue, float64(n), name)
	}
}

// updatesSent asks each session's GoBGP server how many UPDATEs it sent.
// Each server has one neighbor, so listing them all is one small call.
func (a *Announcer) updatesSent() map[string]uint64 {
	a.statusMu.Lock()
	servers := make(map[string]*session, len(a.running))
	for name, s := range a.running {
		servers[name] = s
	}
	a.statusMu.Unlock()
	out := make(map[string]uint64, len(servers))
	for name, s := range servers {
		out[name] = 0 // the neighbor is added after the first paths
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{Address: s.cfg.Address.String()}, func(p *api.Peer) {
			if m := p.GetState().GetMessages().GetSent(); m != nil {
				out[name] += m.Update
			}
		})
		cancel()
	}
	return out
}
