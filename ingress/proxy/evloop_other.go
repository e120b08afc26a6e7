//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// Event loops are Linux's (evloop_linux.go); elsewhere the goroutine loop
// serves every connection.
type evLoops struct{}

func newEvLoops(*front) (*evLoops, error) {
	return nil, errors.New("event loops need Linux")
}

func (*evLoops) adopt(net.Conn) bool { return false }
func (*evLoops) stop(bool)           {}
func (*evLoops) wait()               {}
