package l2

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics on controller-runtime's registry, so the speaker's one endpoint
// serves them. The request and response counters are labelled by interface
// and protocol (arp or ndp).
var (
	requestsReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "portico", Subsystem: "l2", Name: "requests_received_total",
		Help: "ARP requests and neighbor solicitations received for an address this node owns.",
	}, []string{"interface", "protocol"})
	responsesSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "portico", Subsystem: "l2", Name: "responses_sent_total",
		Help: "ARP replies and neighbor advertisements sent in answer to a request.",
	}, []string{"interface", "protocol"})
	// Labelled by family (ipv4, ipv6), not interface: what an alert asks
	// is whether failovers announce, not where.
	gratuitousSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_speaker_gratuitous_sent_total",
		Help: "Gratuitous ARP packets (ipv4) and unsolicited neighbor advertisements (ipv6) sent.",
	}, []string{"family"})
	ownerChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portico_speaker_l2_owner_changes_total",
		Help: "Times this node became or stopped being the layer 2 owner of an address.",
	})
	ownedAddresses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "portico", Subsystem: "l2", Name: "owned_addresses",
		Help: "Addresses this node answers for, per interface.",
	}, []string{"interface"})
)

func init() {
	metrics.Registry.MustRegister(requestsReceived, responsesSent, gratuitousSent, ownerChanges, ownedAddresses)
}
