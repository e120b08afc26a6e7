package controller

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/pools"
)

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
		canon, ok := lbservice.RequestAnnotation(k)
		if !ok {
			if lbservice.Unknown(k) {
				errs = append(errs, fmt.Sprintf("unknown annotation %q (known: %s, %s, %s)", k, lbservice.AnnotationPool, lbservice.AnnotationIPs, lbservice.AnnotationSharing))
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

	req.Pool = values[lbservice.AnnotationPool]
	req.SharingKey = values[lbservice.AnnotationSharing]
	if s, ok := values[lbservice.AnnotationIPs]; ok {
		ips, err := parseIPs(s)
		if err != nil {
			errs = append(errs, fmt.Sprintf("annotation %s: %v", lbservice.AnnotationIPs, err))
		}
		req.IPs = ips
	}
	if s := strings.TrimSpace(svc.Spec.LoadBalancerIP); s != "" {
		ip, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("spec.loadBalancerIP %q is not an IP address", s))
		case len(req.IPs) > 0 && !slices.Contains(req.IPs, ip):
			errs = append(errs, fmt.Sprintf("spec.loadBalancerIP %s disagrees with annotation %s; set only one", s, lbservice.AnnotationIPs))
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
