package proxy

import (
	"net"
	"sync/atomic"
	"time"
)

// join copies bytes both ways between a client and an endpoint whose
// connection switched protocols (WebSocket), starting with what each side
// had sent already (pending), until either side ends, a write fails, or
// neither side sent anything for idle. Both connections are closed then.
func join(client, endpoint net.Conn, clientPending, endpointPending []byte, idle time.Duration) {
	var last atomic.Int64 // when a byte last went either way
	last.Store(time.Now().UnixNano())
	pipe := func(dst, src net.Conn, pending []byte) {
		if len(pending) > 0 {
			_ = dst.SetWriteDeadline(time.Now().Add(idle))
			if _, err := dst.Write(pending); err != nil {
				return
			}
		}
		buf := make([]byte, 32<<10)
		for {
			_ = src.SetReadDeadline(time.Now().Add(idle))
			n, err := src.Read(buf)
			if n > 0 {
				last.Store(time.Now().UnixNano())
				_ = dst.SetWriteDeadline(time.Now().Add(idle))
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if isTimeout(err) && time.Since(time.Unix(0, last.Load())) < idle {
					continue // the other way is busy: the tunnel is not idle
				}
				return
			}
		}
	}
	// When one way is finished, closing both ends the other.
	done := make(chan struct{})
	go func() {
		pipe(endpoint, client, clientPending)
		_ = client.Close()
		_ = endpoint.Close()
		close(done)
	}()
	pipe(client, endpoint, endpointPending)
	_ = client.Close()
	_ = endpoint.Close()
	<-done
}
