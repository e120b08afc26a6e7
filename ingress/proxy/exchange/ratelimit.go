package exchange

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// RateLimit limits the requests of each client address to a route, as
// nginx's limit_req with a burst and nodelay does (ingress-nginx's
// limit-rps and limit-rpm): each address has a bucket of Burst requests
// that refills at Rate a second; a request that finds it empty is refused
// (Settings.LimitStatus, 503 as nginx). It counts per replica. It is safe
// for concurrent use, and outlives Configs: the controller hands the same
// RateLimit to every Config while the Ingress's limits stay the same.
type RateLimit struct {
	rate, burst float64
	seed        maphash.Seed
	shards      [64]limitShard
}

type limitShard struct {
	mu      sync.Mutex
	buckets map[netip.Addr]bucket
}

type bucket struct {
	tokens float64
	at     int64 // unix nanoseconds of the last refill
}

// maxPerShard bounds the addresses a RateLimit remembers: 64 shards of
// 4,096, about 260,000 clients. Past it, an address whose bucket is full
// again (one that has been quiet) is forgotten to make room, else any.
const maxPerShard = 4096

// NewRateLimit returns a limit of rate requests a second with bursts of
// burst (at least 1).
func NewRateLimit(rate, burst float64) *RateLimit {
	return &RateLimit{rate: rate, burst: max(burst, 1), seed: maphash.MakeSeed()}
}

// Allow takes one request of a from its bucket, reporting false when there
// is none left.
func (l *RateLimit) Allow(a netip.Addr, now time.Time) bool {
	s := &l.shards[maphash.Comparable(l.seed, a)%uint64(len(l.shards))]
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[a]
	if !ok {
		if s.buckets == nil {
			s.buckets = map[netip.Addr]bucket{}
		}
		if len(s.buckets) >= maxPerShard {
			s.evict(l, t)
		}
		b = bucket{tokens: l.burst, at: t}
	}
	b.tokens = min(l.burst, b.tokens+float64(max(t-b.at, 0))/1e9*l.rate) // a clock set back refills nothing
	b.at = t
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	}
	s.buckets[a] = b
	return allowed
}

// evict forgets the addresses whose buckets are full again; if that
// frees too little, a sixteenth of the others too, so that a flood of new
// addresses pays for a sweep once in a while, not on every request.
func (s *limitShard) evict(l *RateLimit, now int64) {
	for a, b := range s.buckets {
		if b.tokens+float64(now-b.at)/1e9*l.rate >= l.burst {
			delete(s.buckets, a)
		}
	}
	for a := range s.buckets {
		if len(s.buckets) < maxPerShard-maxPerShard/16 {
			return
		}
		delete(s.buckets, a)
	}
}
