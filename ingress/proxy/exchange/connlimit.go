package exchange

import (
	"hash/maphash"
	"net/netip"
	"sync"
)

// ConnLimit limits the requests each client address has in flight on a
// route at once, as nginx's limit_conn does for ingress-nginx's
// limit-connections: a request counts from its decision until its
// exchange ends (Exchange.End), and one over the limit is refused
// (Settings.LimitStatus, 503 as nginx). Every HTTP/2 stream is a request
// of its own, as in nginx. It counts per replica. It is safe for
// concurrent use, and outlives Configs: the controller hands the same
// ConnLimit to every Config while the Ingress's limit stays the same, so
// that requests decided under an old Config still count.
type ConnLimit struct {
	max    int32
	seed   maphash.Seed
	shards [64]connShard
}

type connShard struct {
	mu sync.Mutex
	// n holds the addresses with requests in flight; an address leaves
	// when its last one ends, so the map is as large as the concurrency.
	n map[netip.Addr]int32
}

// NewConnLimit returns a limit of max requests in flight per address.
func NewConnLimit(max int) *ConnLimit {
	return &ConnLimit{max: int32(max), seed: maphash.MakeSeed()}
}

func (l *ConnLimit) shard(a netip.Addr) *connShard {
	return &l.shards[maphash.Comparable(l.seed, a)%uint64(len(l.shards))]
}

// acquire counts a request of a in, reporting false, and counting
// nothing, when a has the most it may have in flight already.
func (l *ConnLimit) acquire(a netip.Addr) bool {
	s := l.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.n[a]
	if n >= l.max {
		return false
	}
	if s.n == nil {
		s.n = map[netip.Addr]int32{}
	}
	s.n[a] = n + 1
	return true
}

// release counts a request of a out.
func (l *ConnLimit) release(a netip.Addr) {
	s := l.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.n[a]; n > 1 {
		s.n[a] = n - 1
	} else {
		delete(s.n, a)
	}
}

// InFlight returns the requests in flight, from every address.
func (l *ConnLimit) InFlight() int {
	total := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for _, n := range s.n {
			total += int(n)
		}
		s.mu.Unlock()
	}
	return total
}

// hold counts x's request from a in l until x ends, reporting false when
// a is over the limit.
func (x *Exchange) hold(l *ConnLimit, a netip.Addr) bool {
	if !l.acquire(a) {
		return false
	}
	x.held, x.heldBy = l, a
	return true
}

// End releases what x's request holds (its place in a ConnLimit). A
// front-end calls it, or Finish, once the exchange is over, however it
// ended: answered, forwarded, failed, tunnelled, or cut off by the client
// or the server. It may be called more than once; Decide calls it too
// before it decides the next request on x.
func (x *Exchange) End() {
	if x.held != nil {
		x.held.release(x.heldBy)
		x.held = nil
	}
}
