package bgp

import "github.com/prometheus/client_golang/prometheus"

var (
	sessionUpDesc = prometheus.NewDesc("portico_bgp_session_up",
		"1 when the BGP session to the peer is established, 0 otherwise.", []string{"peer", "address"}, nil)
	prefixesDesc = prometheus.NewDesc("portico_bgp_prefixes_advertised",
		"Prefixes advertised to the peer; 0 while the session is down.", []string{"peer", "address"}, nil)
)

// Describe implements prometheus.Collector; register the Announcer with
// the speaker's registry to export session metrics.
func (a *Announcer) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionUpDesc
	ch <- prefixesDesc
}

// Collect implements prometheus.Collector. It reads Status at scrape time,
// so the metrics cannot drift from what Status reports.
func (a *Announcer) Collect(ch chan<- prometheus.Metric) {
	for _, st := range a.Status() {
		up := 0.0
		if st.Up {
			up = 1
		}
		addr := st.Address.String()
		ch <- prometheus.MustNewConstMetric(sessionUpDesc, prometheus.GaugeValue, up, st.Name, addr)
		ch <- prometheus.MustNewConstMetric(prefixesDesc, prometheus.GaugeValue, float64(st.Prefixes), st.Name, addr)
	}
}
