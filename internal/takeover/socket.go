package takeover

import (
	"net"
	"sync"
	"syscall"
)

// Socket writes to a taken-over connection's descriptor directly, for
// writes from a delivering goroutine that never wait. Go's own way
// (syscall.RawConn.Write) takes the descriptor's lock and resets its
// poller state on every write, which touches three more objects of the
// connection: at light load a fan-out finds each connection's objects out
// of the cache, and those misses cost as much as the rest of a delivery's
// user time. Socket keeps the descriptor in its owner's struct, and its
// own lock makes Close wait for a write in progress, so that a descriptor
// is never written after it was closed and reused by another connection.
// Every close of the connection must therefore go through Close.
//
// A Socket is embedded by value, set up by Init, and not copied after.
type Socket struct {
	mu     sync.Mutex
	open   bool // fd may be written: Init found one and Close has not run
	closed bool
	fd     uintptr
	writes int // system calls made by TryWrite
	conn   net.Conn
}

// Init sets s up for c, a connection returned by Hijack, and returns its
// socket for the poller (RawConn), or nil when c is not a plain socket
// (TLS, a pipe); s then writes nothing, and Close only closes c.
func (s *Socket) Init(c net.Conn) syscall.RawConn {
	s.conn = c
	rc := RawConn(c)
	if rc == nil {
		return nil
	}
	if err := rc.Control(func(fd uintptr) { s.fd = fd }); err != nil {
		return nil
	}
	s.open = true
	return rc
}

// TryWrite writes as much of b as the socket takes now, in one system
// call that never waits: it returns how many bytes went out, and an error
// only if the connection failed or was closed (a full socket buffer is
// not an error). Write deadlines do not apply. The caller must be the
// only writer of the connection.
func (s *Socket) TryWrite(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		if s.closed {
			return 0, net.ErrClosed
		}
		return 0, nil
	}
	s.writes++
	return tryWrite(s.fd, b)
}

// Writes reports how many system calls TryWrite has made.
func (s *Socket) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// TryWritePending writes what of b the socket takes now (TryWrite),
// unless pending holds something already, and returns pending with what
// is left of b appended, and how many bytes went out. b may be a shared
// encoding or a pooled buffer: pending gets a copy.
func (s *Socket) TryWritePending(pending, b []byte) (n int, rest []byte, err error) {
	if len(pending) == 0 {
		if n, err = s.TryWrite(b); err != nil {
			return 0, pending, err
		}
	}
	if n < len(b) {
		pending = append(pending, b[n:]...)
	}
	return n, pending, nil
}

// Conn returns the connection Init was given.
func (s *Socket) Conn() net.Conn { return s.conn }

// Close closes the connection once a write in progress is done; no write
// reaches the descriptor after it. Later calls close the connection
// again, which reports net.ErrClosed.
func (s *Socket) Close() error {
	s.mu.Lock()
	s.open, s.closed = false, true
	s.mu.Unlock()
	return s.conn.Close()
}
