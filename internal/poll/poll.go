// Package poll lets idle connections wait to be readable without a
// goroutine each: one goroutine per process waits on an epoll instance
// for all of them, and starts a goroutine for a connection only once the
// client has sent something (or gone away).
//
// A connection is armed one shot at a time: after Arm, its ready function
// runs once, on a goroutine of its own, when the socket is readable, has
// reached EOF or failed; the connection is then not watched until it is
// armed again. Where there is no such poller (not Linux, not a plain
// socket) New returns nil and the caller keeps a goroutine in Read.
package poll

import (
	"errors"
	"sync"
	"syscall"
)

// ErrWouldBlock is returned by TryRead when the socket has nothing to
// read now.
var ErrWouldBlock = errors.New("nothing to read now")

// ErrUnavailable is returned by Arm when the poller could not take the
// connection (its epoll instance failed or is full): the caller reads in
// a goroutine of its own instead.
var ErrUnavailable = errors.New("poller unavailable")

// Waiter is one connection's registration with the poller. Its methods
// may be called from any goroutine.
type Waiter struct {
	rc    syscall.RawConn
	ready func()

	// Guarded by the poller's lock: id is the registration's number, 0
	// when the socket is not in the epoll set (before the first Arm and
	// after Done); done is set by Done.
	id   uint64
	done bool
}

// mu guards every Waiter's id and done and the table of registrations,
// and orders what a ready function's goroutine wrote before it armed
// again before what the next one reads.
var mu sync.Mutex

// Registered reports how many connections are in the poller.
func Registered() int {
	mu.Lock()
	defer mu.Unlock()
	return registered()
}
