package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Forward is how the host reaches the API server without touching the host's
// interfaces or routes: it listens on loopback in the root namespace and
// dials target from inside netns. It writes the chosen port to portFile and
// runs until ctx ends.
func Forward(ctx context.Context, netns, listen, target, portFile string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if err := os.WriteFile(portFile, []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
		return err
	}
	slog.Info("forwarding", "listen", ln.Addr().String(), "netns", netns, "target", target)
	// Outlive the lab never: when its namespace is gone (a `lab down` that
	// lost track of this process, say), stop.
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
			case <-t.C:
				if _, err := os.Stat("/run/netns/" + netns); err == nil {
					continue
				}
				slog.Info("namespace is gone, stopping", "netns", netns)
			}
			ln.Close()
			return
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			u, err := dialIn(netns, target)
			if err != nil {
				slog.Error("dial", "target", target, "err", err)
				return
			}
			defer u.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(u, c)
			go pipe(c, u)
			<-done
			<-done
		}()
	}
}

// dialIn opens a TCP connection from inside netns. A socket belongs to the
// namespace of the thread that created it, so the dial happens on a locked
// thread that has joined netns; that thread is never unlocked and so dies
// with its goroutine instead of returning to the scheduler in the wrong
// namespace.
func dialIn(netns, target string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + netns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", netns, err)}
			return
		}
		c, err := net.DialTimeout("tcp", target, 5*time.Second)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
