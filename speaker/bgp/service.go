package bgp

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// ServiceFromAPI converts a LoadBalancer Service, the pool its addresses
// came from (its portico.dev/allocated-from-pool annotation) and its
// EndpointSlices. The addresses are those in status.loadBalancer, that is,
// the ones the controller assigned. A node counts as having a ready
// endpoint when an endpoint on it is ready; an unknown readiness counts as
// ready, as the EndpointSlice API asks of consumers.
func ServiceFromAPI(svc *corev1.Service, pool string, slices []*discoveryv1.EndpointSlice) Service {
	out := Service{
		Name:         svc.Namespace + "/" + svc.Name,
		Pool:         pool,
		LocalTraffic: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(ing.IP); err == nil {
			out.IPs = append(out.IPs, ip.Unmap())
		}
	}
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || *ep.NodeName == "" {
				continue
			}
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			if out.ReadyNodes == nil {
				out.ReadyNodes = map[string]bool{}
			}
			out.ReadyNodes[*ep.NodeName] = true
		}
	}
	return out
}
