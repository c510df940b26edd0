//go:build linux

package poll

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// The process's epoll instance, made by the first Arm.
var (
	startOnce sync.Once
	startErr  error
	epfd      int

	table  = map[uint64]*Waiter{} // registrations by id; guarded by mu
	nextID uint64                 // guarded by mu

	// noRuntimePoll has run wait in epoll_wait, as where the runtime
	// cannot poll the instance (tests).
	noRuntimePoll bool

	// epollFile is the instance as a file, kept for the process's life:
	// once unreachable, its finalizer would close the instance under the
	// goroutine still waiting on it in epoll_wait.
	epollFile *os.File
)

// New returns a Waiter for the socket rc; ready is what runs, on a
// goroutine of its own, each time the armed socket becomes readable. It
// returns nil if rc is nil.
func New(rc syscall.RawConn, ready func()) *Waiter {
	if rc == nil {
		return nil
	}
	return &Waiter{rc: rc, ready: ready}
}

// start makes the epoll instance and its goroutine, once.
func start() error {
	startOnce.Do(func() {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			startErr = os.NewSyscallError("epoll_create1", err)
			return
		}
		epfd = fd
		go run(fd)
	})
	return startErr
}

// run waits for events, all the process's life. The epoll instance is
// itself readable when it has events: it waits in Go's own poller, like
// any socket, so that no thread is held in epoll_wait; if the runtime
// cannot poll it, run waits in epoll_wait instead.
func run(fd int) {
	events := make([]syscall.EpollEvent, 128)
	wait := func(timeout int) (bool, error) {
		for {
			n, err := syscall.EpollWait(fd, events, timeout)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || n <= 0 {
				return false, err
			}
			dispatch(events[:n])
			return true, nil
		}
	}
	if syscall.SetNonblock(fd, true) == nil {
		f := os.NewFile(uintptr(fd), "epoll")
		epollFile = f
		if rc, err := f.SyscallConn(); err == nil {
			var werr error
			if noRuntimePoll {
				err = errors.ErrUnsupported
			} else {
				err = rc.Read(func(uintptr) bool {
					// Go's poller reports the instance once per new event
					// (edge-triggered): take every event before waiting.
					for {
						more, err := wait(0)
						if err != nil {
							werr = err
							return true
						}
						if !more {
							return false
						}
					}
				})
			}
			if err == nil && werr == nil {
				return // not reached: the file is never closed
			}
		}
		// The instance cannot be polled: wait in epoll_wait.
		_ = syscall.SetNonblock(fd, false)
	}
	for {
		if _, err := wait(-1); err != nil {
			panic("poll: epoll_wait: " + err.Error())
		}
	}
}

// dispatch starts the ready function of each connection with an event.
// An event names its registration by id, not by file descriptor: a
// descriptor closed and reused since is another registration.
func dispatch(events []syscall.EpollEvent) {
	mu.Lock()
	defer mu.Unlock()
	for _, ev := range events {
		id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
		if w := table[id]; w != nil {
			go w.ready()
		}
	}
}

// Arm has ready run once when the socket is readable, has reached EOF or
// failed (which may be at once). It returns net.ErrClosed if the
// connection is closed or Done was called, ErrUnavailable if the poller
// cannot take it: then nothing is registered and the caller reads in a
// goroutine of its own.
func (w *Waiter) Arm() error {
	if start() != nil {
		return ErrUnavailable
	}
	mu.Lock()
	defer mu.Unlock()
	if w.done {
		return net.ErrClosed
	}
	op, id := syscall.EPOLL_CTL_MOD, w.id
	if id == 0 {
		nextID++
		op, id = syscall.EPOLL_CTL_ADD, nextID
	}
	var cerr error
	err := w.rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{
			Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
			Fd:     int32(uint32(id)),
			Pad:    int32(uint32(id >> 32)),
		}
		cerr = syscall.EpollCtl(epfd, op, int(fd), &ev)
	})
	if err != nil {
		w.doneLocked()
		return net.ErrClosed
	}
	if cerr != nil {
		w.doneLocked()
		return ErrUnavailable
	}
	if op == syscall.EPOLL_CTL_ADD {
		w.id = id
		table[id] = w
	}
	return nil
}

// Shutdown shuts the socket down, for reading and, if write, for
// writing, so that the connection's ready function, registered now or at
// the next Arm, runs and finds EOF, as does a reader running meanwhile.
// It reports whether it did. Shutdown(true) does nothing and reports
// false if the connection is not registered: then the caller closes it
// itself, and it is done with the poller, so that Arm fails rather than
// register a socket about to be closed (closing takes it out of the
// epoll set, and ready would never run).
func (w *Waiter) Shutdown(write bool) bool {
	if w == nil {
		return false
	}
	mu.Lock()
	defer mu.Unlock()
	if write && w.id == 0 {
		w.done = true
		return false
	}
	how := syscall.SHUT_RD
	if write {
		how = syscall.SHUT_RDWR
	}
	err := w.rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), how) })
	return err == nil
}

// Done takes the connection out of the poller for good; ready does not
// run again once Done returns, unless it was started before. Call it
// before the connection is closed.
func (w *Waiter) Done() {
	if w == nil {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	w.doneLocked()
}

func (w *Waiter) doneLocked() {
	w.done = true
	if w.id == 0 {
		return
	}
	delete(table, w.id)
	w.id = 0
	_ = w.rc.Control(func(fd uintptr) {
		var ev syscall.EpollEvent
		_ = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, int(fd), &ev)
	})
}

// TryRead reads what the socket holds now into p, without waiting: it
// returns ErrWouldBlock if there is nothing, io.EOF once the client has
// closed its side.
func (w *Waiter) TryRead(p []byte) (int, error) {
	var n int
	var rerr error
	err := w.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if !errors.Is(rerr, syscall.EINTR) {
				return true // never wait
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errors.Is(rerr, syscall.EAGAIN):
		return 0, ErrWouldBlock
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func registered() int { return len(table) }
