package exchange

import (
	"strconv"
	"sync"
)

// Consistent choice of an endpoint by a key, for affinity's balanced mode
// and upstream-hash-by: rendezvous hashing (highest random weight). Each
// endpoint scores a key by a hash of both, and the best score wins, so
// that when an endpoint comes or goes only the keys it wins, or won, move
// (about 1/n of them), as with the ketama ring ingress-nginx uses. The
// hashes are fixed functions, not seeded: every replica, and a replica
// after a restart, makes the same choice.

// endpointHashes are what an Upstream derives from its endpoints for
// hashing, once, on first use.
type endpointHashes struct {
	once sync.Once
	hash []uint64 // of each endpoint's address
	key  []string // hash as 16 hex digits: the endpoint's affinity cookie value
}

func (u *Upstream) hashes() *endpointHashes {
	h := &u.hashed
	h.once.Do(func() {
		h.hash = make([]uint64, len(u.Addrs))
		h.key = make([]string, len(u.Addrs))
		for i, a := range u.Addrs {
			h.hash[i] = hashString(a)
			h.key[i] = strconv.FormatUint(h.hash[i], 16)
		}
	})
	return h
}

// choose returns the index of the endpoint a key with hash k goes to.
func (u *Upstream) choose(k uint64) int {
	best, top := 0, uint64(0)
	for i, e := range u.hashes().hash {
		if s := mix(k ^ e); s > top || i == 0 {
			best, top = i, s
		}
	}
	return best
}

// byKey returns the index of the endpoint whose affinity cookie value is
// key, or -1.
func (u *Upstream) byKey(key string) int {
	for i, k := range u.hashes().key {
		if k == key {
			return i
		}
	}
	return -1
}

// hashString is 64-bit FNV-1a, its result mixed.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix(h)
}

// mix is splitmix64's finalizer: every bit of x moves every bit of the
// result.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
