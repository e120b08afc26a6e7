package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/portico-lb/portico/lbservice"
)

// printExplanation writes an Explanation for people, step by step, as
// kubectl describe does.
func printExplanation(out io.Writer, ex *Explanation, wide bool) error {
	w := &describer{out: out}
	w.line(0, "Service:   %s/%s (type %s)", ex.Namespace, ex.Name, ex.Type)
	w.line(0, "Class:     %s", ex.Class.Why)
	if r := ex.Request; r != nil {
		w.line(0, "Request:")
		if len(r.Annotations) == 0 && len(r.IPs) == 0 {
			w.line(1, "no pool, no address, no sharing asked for (annotations %s, %s, %s; spec.loadBalancerIP)", lbservice.AnnotationPool, lbservice.AnnotationIPs, lbservice.AnnotationSharing)
		}
		for _, a := range r.Annotations {
			if a.Means != "" {
				w.line(1, "%s: %s   (MetalLB's spelling of %s)", a.Key, a.Value, a.Means)
			} else {
				w.line(1, "%s: %s", a.Key, a.Value)
			}
		}
		if len(r.IPs) > 0 {
			w.line(1, "addresses asked for: %s", strings.Join(r.IPs, ","))
		}
		fams := strings.Join(r.Families, ",")
		if fams == "" {
			fams = "IPv4"
		}
		w.line(1, "families: %s, %s", fams, r.Policy)
		if r.Local {
			w.line(1, "externalTrafficPolicy: Local (only nodes with a ready endpoint announce)")
		}
		if r.Invalid != "" {
			w.line(1, "INVALID: %s", r.Invalid)
		}
	}
	if p := ex.Pool; p != nil {
		w.line(0, "Pool:      %s", orNone(p.Name))
		w.line(1, "why: %s", p.Why)
		if len(p.AutoAssignOrder) > 0 && (wide || len(p.Skipped) > 0) {
			w.line(1, "auto-assign order: %s", strings.Join(p.AutoAssignOrder, ", "))
		}
		for _, s := range p.Skipped {
			w.line(1, "skipped %s", s)
		}
	}
	if ex.Class.OK {
		w.line(0, "Addresses: %s", orNone(strings.Join(ex.Addresses, ", ")))
	}
	if ex.Pool != nil && ex.Pool.Name != "" {
		w.line(0, "Advertisements selecting pool %s:", ex.Pool.Name)
		if len(ex.Advertisements) == 0 {
			w.line(1, "none")
		}
		for _, a := range ex.Advertisements {
			w.line(1, "%s/%s: %s", a.Kind, a.Name, a.Why)
			if a.Applies {
				w.line(2, "applies to this Service: %s", a.Service)
			} else {
				w.line(2, "does not apply to this Service: %s", a.Service)
			}
		}
		w.line(0, "Nodes:")
		if len(ex.Nodes) == 0 {
			w.line(1, "no Node in the cluster")
		}
		for _, n := range ex.Nodes {
			if n.Eligible {
				extra := ""
				if len(n.WhyNot) > 0 {
					extra = " (not by every protocol: " + strings.Join(n.WhyNot, "; ") + ")"
				}
				w.line(1, "%s: may announce by %s%s", n.Node, strings.Join(n.Protocols, " and "), extra)
				continue
			}
			if len(n.WhyNot) == 0 {
				w.line(1, "%s: may not announce: no advertisement applies to this Service (see above)", n.Node)
				continue
			}
			w.line(1, "%s: may not announce: %s", n.Node, strings.Join(n.WhyNot, "; "))
		}
	}
	if len(ex.Addresses) > 0 && ex.Class.OK {
		w.line(0, "Announced (ServiceAnnouncements):")
		for _, a := range ex.Announcements {
			if !a.Announced {
				w.line(1, "%s: not announced by any node", a.IP)
				continue
			}
			for _, an := range a.Announcers {
				via := strings.Join(append(append([]string{}, an.Interfaces...), an.Peers...), ",")
				w.line(1, "%s: %s by %s via %s since %s", a.IP, an.Node, an.Protocol, orNone(via), an.Since.UTC().Format("2006-01-02 15:04:05Z"))
			}
		}
	}
	if len(ex.BGPPeers) > 0 {
		w.line(0, "BGP peers:")
		for _, p := range ex.BGPPeers {
			w.line(1, "%s (%s): %s", p.Name, p.Address, orNone(strings.Join(p.Sessions, "; ")))
		}
	}
	w.line(0, "Ingress routes to it (class %s):", "portico")
	if len(ex.Ingresses) == 0 {
		w.line(1, "none")
	}
	for _, i := range ex.Ingresses {
		w.line(1, "%s/%s: %s", i.Namespace, i.Name, strings.Join(i.Routes, ", "))
	}
	w.line(0, "")
	if len(ex.Problems) == 0 {
		w.line(0, "No problem found: Portico serves this Service and its addresses are announced.")
	} else {
		w.line(0, "Problems:")
		for i, p := range ex.Problems {
			w.line(1, "%d. %s", i+1, p)
		}
	}
	return w.err
}

type describer struct {
	out io.Writer
	err error
}

func (d *describer) line(indent int, format string, args ...any) {
	if d.err != nil {
		return
	}
	_, d.err = fmt.Fprintf(d.out, strings.Repeat("  ", indent)+format+"\n", args...)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
