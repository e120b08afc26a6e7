package nodeagent

import (
	"net/netip"
	"testing"
)

func TestNthAddr(t *testing.T) {
	for _, c := range []struct {
		prefix string
		i      int
		want   string
	}{
		{"10.244.1.0/24", 1, "10.244.1.1"},
		{"10.244.1.0/24", 254, "10.244.1.254"},
		{"10.244.0.0/16", 256, "10.244.1.0"},
		{"fd44:0:0:1::/64", 2, "fd44:0:0:1::2"},
		{"fd44:0:0:1::/64", 255, "fd44:0:0:1::ff"},
	} {
		if got := nthAddr(netip.MustParsePrefix(c.prefix), c.i).String(); got != c.want {
			t.Errorf("nthAddr(%s, %d) = %s, want %s", c.prefix, c.i, got, c.want)
		}
	}
}

func TestIPAM(t *testing.T) {
	m := &ipam{v4: netip.MustParsePrefix("10.244.1.0/29"), used: map[int]bool{}, next: 1}
	// A /29 has hosts 2..6 for pods: .0 is the network, .1 the gateway,
	// .7 the broadcast address.
	var got []int
	for range 5 {
		i, err := m.alloc()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, i)
	}
	if want := []int{2, 3, 4, 5, 6}; !equal(got, want) {
		t.Fatalf("allocated %v, want %v", got, want)
	}
	if _, err := m.alloc(); err == nil {
		t.Fatal("allocated from a full CIDR")
	}
	m.release(4)
	if i, err := m.alloc(); err != nil || i != 4 {
		t.Fatalf("after release got %d, %v; want 4", i, err)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
