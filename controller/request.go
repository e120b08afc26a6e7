package controller

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-lb/portico/pools"
)

// Annotation keys on Services. MetalLB's spellings of the three request
// annotations are accepted so that a MetalLB user's Services work unchanged.
const (
	AnnotationPool            = "portico.dev/address-pool"
	AnnotationIPs             = "portico.dev/load-balancer-ips"
	AnnotationSharing         = "portico.dev/allow-shared-ip"
	AnnotationAllocatedFrom   = "portico.dev/allocated-from-pool"
	annotationPrefix          = "portico.dev/"
	metallbPrefix, oldMetallb = "metallb.io/", "metallb.universe.tf/"
)

// LoadBalancerClass is the class Portico serves besides Services with none.
const LoadBalancerClass = "portico.dev/lb"

// requestAnnotations maps every accepted spelling to the Portico key.
var requestAnnotations = map[string]string{
	AnnotationPool:                    AnnotationPool,
	AnnotationIPs:                     AnnotationIPs,
	AnnotationSharing:                 AnnotationSharing,
	metallbPrefix + "address-pool":    AnnotationPool,
	metallbPrefix + "loadBalancerIPs": AnnotationIPs,
	metallbPrefix + "allow-shared-ip": AnnotationSharing,
	oldMetallb + "address-pool":       AnnotationPool,
	oldMetallb + "loadBalancerIPs":    AnnotationIPs,
	oldMetallb + "allow-shared-ip":    AnnotationSharing,
}

// otherKnownAnnotations are portico.dev/ Service annotations that the
// controller does not read but are not typos either.
var otherKnownAnnotations = map[string]bool{
	AnnotationAllocatedFrom: true,
}

// RequestAnnotation tells whether key is one of the Service annotations
// the controller reads, in any of its spellings, and returns the Portico
// key it stands for.
func RequestAnnotation(key string) (canonical string, ok bool) {
	canonical, ok = requestAnnotations[key]
	return canonical, ok
}

// Managed reports whether Portico is the load balancer of svc.
func Managed(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	return svc.Spec.LoadBalancerClass == nil || *svc.Spec.LoadBalancerClass == LoadBalancerClass
}

// Request turns a Service into an allocation request. The error says, for
// the person who wrote the Service, what is wrong and how to fix it.
func Request(svc *corev1.Service, nsLabels map[string]string, ingress bool) (pools.Service, error) {
	req := pools.Service{
		Key:             svc.Namespace + "/" + svc.Name,
		Namespace:       svc.Namespace,
		Labels:          svc.Labels,
		NamespaceLabels: nsLabels,
		Local:           svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		Selector:        canonicalSelector(svc.Spec.Selector),
		Ingress:         ingress,
	}

	values := map[string]string{}
	var errs []string
	keys := make([]string, 0, len(svc.Annotations))
	for k := range svc.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := svc.Annotations[k]
		canon, ok := requestAnnotations[k]
		if !ok {
			if strings.HasPrefix(k, annotationPrefix) && !otherKnownAnnotations[k] {
				errs = append(errs, fmt.Sprintf("unknown annotation %q (known: %s, %s, %s)", k, AnnotationPool, AnnotationIPs, AnnotationSharing))
			}
			continue
		}
		v = strings.TrimSpace(v)
		if prev, seen := values[canon]; seen && prev != v {
			errs = append(errs, fmt.Sprintf("annotations for %s disagree: %q and %q", canon, prev, v))
			continue
		}
		values[canon] = v
	}

	req.Pool = values[AnnotationPool]
	req.SharingKey = values[AnnotationSharing]
	if s, ok := values[AnnotationIPs]; ok {
		ips, err := parseIPs(s)
		if err != nil {
			errs = append(errs, fmt.Sprintf("annotation %s: %v", AnnotationIPs, err))
		}
		req.IPs = ips
	}
	if s := strings.TrimSpace(svc.Spec.LoadBalancerIP); s != "" {
		ip, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("spec.loadBalancerIP %q is not an IP address", s))
		case len(req.IPs) > 0 && !slices.Contains(req.IPs, ip):
			errs = append(errs, fmt.Sprintf("spec.loadBalancerIP %s disagrees with annotation %s; set only one", s, AnnotationIPs))
		case len(req.IPs) == 0:
			req.IPs = []netip.Addr{ip}
		}
	}

	for _, f := range svc.Spec.IPFamilies {
		if f == corev1.IPv6Protocol {
			req.Families = append(req.Families, pools.IPv6)
		} else {
			req.Families = append(req.Families, pools.IPv4)
		}
	}
	req.Policy = pools.SingleStack
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicyPreferDualStack:
			req.Policy = pools.PreferDualStack
		case corev1.IPFamilyPolicyRequireDualStack:
			req.Policy = pools.RequireDualStack
		}
	}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		req.Ports = append(req.Ports, pools.Port{Protocol: proto, Port: p.Port})
	}

	if len(errs) > 0 {
		return req, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return req, nil
}

func parseIPs(s string) ([]netip.Addr, error) {
	var ips []netip.Addr
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		ip, err := netip.ParseAddr(f)
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IP address (want a comma-separated list such as 192.0.2.10,2001:db8::10)", f)
		}
		ips = append(ips, ip.Unmap())
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address given")
	}
	return ips, nil
}

func canonicalSelector(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(sel[k])
	}
	return b.String()
}
