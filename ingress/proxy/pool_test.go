package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The idle pool under concurrent use: every connection put is either got
// back or closed, also when closeIdle drops endpoints at the same time.
func TestPoolConcurrent(t *testing.T) {
	p := newPool(Options{MaxIdleConnsPerHost: 1})
	var mu sync.Mutex
	open := map[*upConn]bool{}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := []string{"a:1", "b:1"}[g%2]
			for range 500 {
				c := p.get(p.list(addr), time.Now())
				if c == nil {
					c = &upConn{Conn: &closeCounter{}, list: p.list(addr)}
					mu.Lock()
					open[c] = true
					mu.Unlock()
				}
				p.put(c, time.Now())
				if g == 0 {
					p.closeIdle(true)
				}
			}
		}()
	}
	wg.Wait()
	p.closeIdle(true)
	for c := range open {
		if n := c.Conn.(*closeCounter).closed.Load(); n != 1 {
			t.Fatalf("a connection was closed %d times, want once", n)
		}
	}
}

// closeCounter is a net.Conn that counts its Close calls.
type closeCounter struct {
	net.Conn
	closed atomic.Int32
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }
