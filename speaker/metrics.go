package speaker

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// announcements is how many Service IPs this node announces, by protocol:
// a Service and one of its addresses count once per protocol, whatever the
// interfaces or peers (metallb_speaker_announced, summed).
var announcements = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "portico_speaker_announcements",
	Help: "Service IPs this node announces, by protocol (layer2, bgp).",
}, []string{"protocol"})

func init() { metrics.Registry.MustRegister(announcements) }

// countAnnouncements sets the gauge from what the announcers report. Both
// protocols always have a series, so "none" reads 0, not absent.
func countAnnouncements(now map[announceKey]Announcement) {
	n := map[string]int{ProtocolL2: 0, ProtocolBGP: 0}
	for k := range now {
		n[k.protocol]++
	}
	for p, c := range n {
		announcements.WithLabelValues(p).Set(float64(c))
	}
}
