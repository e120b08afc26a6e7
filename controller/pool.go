package controller

import (
	"fmt"
	"math"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/pools"
)

// PoolConfig converts an AddressPool into the allocator's plain form. An
// error means the object got past admission but still cannot be used (an
// object stored before a validation rule existed, say); the pool is then
// reported not Ready and left out.
func PoolConfig(p *v1alpha1.AddressPool) (pools.Pool, error) {
	out := pools.Pool{
		Name:          p.Name,
		AutoAssign:    p.Spec.AutoAssign == nil || *p.Spec.AutoAssign,
		AvoidBuggyIPs: p.Spec.AvoidBuggyIPs,
		Created:       p.CreationTimestamp.Time,
	}
	for _, a := range p.Spec.Addresses {
		r, err := pools.ParseRange(string(a))
		if err != nil {
			return out, fmt.Errorf("addresses: %w", err)
		}
		out.Ranges = append(out.Ranges, r)
	}
	if sa := p.Spec.ServiceAllocation; sa != nil {
		out.Priority = int(sa.Priority)
		out.Namespaces = sa.Namespaces
		for i := range sa.NamespaceSelectors {
			s, err := selector(&sa.NamespaceSelectors[i])
			if err != nil {
				return out, fmt.Errorf("serviceAllocation.namespaceSelectors[%d]: %w", i, err)
			}
			out.NamespaceSelectors = append(out.NamespaceSelectors, s)
		}
		for i := range sa.ServiceSelectors {
			s, err := selector(&sa.ServiceSelectors[i])
			if err != nil {
				return out, fmt.Errorf("serviceAllocation.serviceSelectors[%d]: %w", i, err)
			}
			out.ServiceSelectors = append(out.ServiceSelectors, s)
		}
	}
	return out, nil
}

func selector(ls *metav1.LabelSelector) (pools.Selector, error) {
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, err
	}
	return func(l map[string]string) bool { return sel.Matches(labels.Set(l)) }, nil
}

// clampCount turns the allocator's unsigned counts into the int64 of the
// API, capping what does not fit (a /64 has 2^64 addresses).
func clampCount(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

// humanCount writes a free-address count for the FREE printer column.
func humanCount(v4, v6 uint64) string {
	sum := v4 + v6
	if sum < v4 { // overflow: more than 2^64 addresses
		return strconv.FormatFloat(float64(v4)+float64(v6), 'e', 2, 64)
	}
	if sum >= 1e12 {
		return strconv.FormatFloat(float64(sum), 'e', 2, 64)
	}
	return strconv.FormatUint(sum, 10)
}
