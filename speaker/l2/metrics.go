package l2

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics, labelled by interface and protocol (arp or ndp), on
// controller-runtime's registry so the speaker's one endpoint serves them.
var (
	requestsReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "portico", Subsystem: "l2", Name: "requests_received_total",
		Help: "ARP requests and neighbor solicitations received for an address this node owns.",
	}, []string{"interface", "protocol"})
	responsesSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "portico", Subsystem: "l2", Name: "responses_sent_total",
		Help: "ARP replies and neighbor advertisements sent in answer to a request.",
	}, []string{"interface", "protocol"})
	gratuitousSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "portico", Subsystem: "l2", Name: "gratuitous_sent_total",
		Help: "Gratuitous ARP packets and unsolicited neighbor advertisements sent.",
	}, []string{"interface", "protocol"})
	ownedAddresses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "portico", Subsystem: "l2", Name: "owned_addresses",
		Help: "Addresses this node answers for, per interface.",
	}, []string{"interface"})
)

func init() {
	metrics.Registry.MustRegister(requestsReceived, responsesSent, gratuitousSent, ownedAddresses)
}
