package pools

import "fmt"

// Reason classifies an allocation error, for Events and metrics.
type Reason int

// Reasons an allocation fails.
const (
	// BadRequest: the Service asks for something impossible whatever the
	// pools hold, such as two IPv4 addresses for a SingleStack Service.
	BadRequest Reason = iota + 1
	// UnknownPool: the requested pool does not exist, or no pool at all is
	// there to choose from.
	UnknownPool
	// PoolUnusable: the requested pool, or the pool holding the requested
	// IP, exists but is invalid or conflicts with an older pool.
	PoolUnusable
	// NotInPool: a requested IP is not an address of any usable pool, or not
	// of the requested one.
	NotInPool
	// InUse: a requested IP is held by a Service it cannot be shared with.
	InUse
	// Exhausted: no pool the Service may use has a free address it needs.
	Exhausted
	// NotAllowed: a pool's namespace or selector restrictions exclude the
	// Service.
	NotAllowed
	// Reserved: the requested IP is kept for the ingress Service.
	Reserved
)

func (r Reason) String() string {
	switch r {
	case BadRequest:
		return "BadRequest"
	case UnknownPool:
		return "UnknownPool"
	case PoolUnusable:
		return "PoolUnusable"
	case NotInPool:
		return "NotInPool"
	case InUse:
		return "InUse"
	case Exhausted:
		return "Exhausted"
	case NotAllowed:
		return "NotAllowed"
	case Reserved:
		return "Reserved"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Error is the error the allocator returns. Msg is written for a person
// reading `kubectl describe service`.
type Error struct {
	Reason Reason
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}
