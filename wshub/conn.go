// Package wshub serves hub subscriptions over WebSocket: the upgrade (its
// 101 head through Caddy's wrapped response writers), the read loop, the
// writes of queued messages, the json and raw protocols, ping/pong and
// close codes.
package wshub

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/caddy-push/push/internal/poll"
	"github.com/caddy-push/push/internal/takeover"
)

// Frame opcodes (RFC 6455, section 5.2).
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// appendFrame appends one unmasked, unfragmented server frame.
func appendFrame(b []byte, op byte, payload []byte) []byte {
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// closeFrame is a close frame with code and a reason of at most 123 bytes.
func closeFrame(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	return appendFrame(nil, opClose, append(p, reason...))
}

// conn is the hijacked connection. Every frame is written whole under one
// lock, so that the frames of queued messages, answers, pings and the
// control frames that gorilla sends from the read loop (a pong, the close
// on an oversized frame) never interleave; and each write sets its own
// deadline. It is the one path by which bytes reach the client.
type conn struct {
	// What a write from the delivery uses comes first (see Session).
	mu       sync.Mutex
	nonblock bool // a session writes from the delivering goroutine
	skipHead bool // the next write is gorilla's head, already sent
	// pending holds what a write that never waits left, written before
	// anything else.
	pending []byte
	written int64 // bytes written
	// sock writes without waiting and closes the connection: every
	// close goes through it (Close).
	sock takeover.Socket

	net.Conn
	timeout  time.Duration
	raw      syscall.RawConn // the socket, for the poller and sock (nil if none)
	early    []byte          // read before the hijack: the first bytes Read returns
	br       *bufio.Reader   // gorilla's reader, over this conn
	deadline time.Time       // the write deadline last set
	iov      [][]byte        // reused for writev
	bufs     net.Buffers     // what writev has left to write

	// waiter waits for the client's frames while the connection is
	// idle, in place of a goroutine (nil where there is no poller);
	// rerr is the read error it met, returned once early is read.
	waiter *poll.Waiter
	rerr   error
}

// Read returns what was read before the hijack first. Only the read loop
// reads.
func (c *conn) Read(p []byte) (int, error) {
	if len(c.early) > 0 {
		n := copy(p, c.early)
		c.early = c.early[n:]
		if len(c.early) == 0 {
			c.early = nil
		}
		return n, nil
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	return c.Conn.Read(p)
}

// waitReadable returns once the client has sent something that gorilla's
// reader does not hold yet, or the read deadline passed, or the
// connection failed, without reading it. An idle read loop waits here, in
// a few small frames, rather than deep in gorilla's reader, so that the
// runtime can shrink its stack while the connection is idle.
func (c *conn) waitReadable() error {
	if c.raw == nil || len(c.early) > 0 || c.br == nil || c.br.Buffered() > 0 {
		return nil
	}
	return waitReadable(c.raw)
}

// newConn returns the conn over nc, whose writes end within timeout.
func newConn(nc net.Conn, timeout time.Duration) *conn {
	c := new(conn)
	c.init(nc, timeout)
	return c
}

// init sets up c, a zero conn, as newConn does.
func (c *conn) init(nc net.Conn, timeout time.Duration) {
	c.Conn, c.timeout = nc, timeout
	c.raw = c.sock.Init(nc)
}

// Close closes the connection, once a write that never waits is done.
func (c *conn) Close() error { return c.sock.Close() }

// Write writes p, one or more whole frames, under the lock and deadline.
func (c *conn) Write(p []byte) (int, error) { return c.write(p, c.timeout) }

func (c *conn) write(p []byte, timeout time.Duration) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.skipHead {
		c.skipHead = false
		return len(p), nil
	}
	if err := c.setDeadline(timeout); err != nil {
		return 0, err
	}
	if err := c.flushPendingLocked(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	c.written += int64(n)
	return n, err
}

// flushPending writes what a write that could not wait left.
func (c *conn) flushPending() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return nil
	}
	if err := c.setDeadline(c.timeout); err != nil {
		return err
	}
	return c.flushPendingLocked()
}

// flushPendingLocked writes what a write that could not wait left. Call
// it with c.mu held, the deadline set.
func (c *conn) flushPendingLocked() error {
	if len(c.pending) == 0 {
		return nil
	}
	p := c.pending
	c.pending = nil
	return c.writeLocked(p)
}

// tryFramesLocked writes what of frames the socket takes now, several
// frames in one write, and keeps a copy of the rest in pending. Call it
// with c.mu held.
func (c *conn) tryFramesLocked(frames [][]byte) error {
	if len(frames) == 1 {
		return c.tryLocked(frames[0])
	}
	return coalesce(frames, c.tryLocked)
}

// tryLocked writes what of p the socket takes now, unless something is
// pending already, and keeps a copy of the rest in pending. Call it with
// c.mu held.
func (c *conn) tryLocked(p []byte) error {
	n, pending, err := c.sock.TryWritePending(c.pending, p)
	c.pending = pending
	c.written += int64(n)
	return err
}

// setDeadline makes the write about to start end within timeout. Moving a
// deadline costs a timer update, so one that still leaves at least half
// of the usual timeout is kept: a stuck write then fails after between
// half and all of it. Call it with c.mu held.
func (c *conn) setDeadline(timeout time.Duration) error {
	now := time.Now()
	if timeout == c.timeout && c.deadline.Sub(now) >= timeout/2 && c.deadline.Sub(now) <= timeout {
		return nil
	}
	c.deadline = now.Add(timeout)
	return c.Conn.SetWriteDeadline(c.deadline)
}

// SetWriteDeadline does nothing: every write sets its own deadline, and
// gorilla must not move the one of a write in progress.
func (c *conn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets only the read deadline, for the same reason.
func (c *conn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// keepFrames bounds the frame lists kept per connection between writes.
const keepFrames = 32

// maxCoalesce bounds one write of coalesced frames.
const maxCoalesce = 64 << 10

// coalesceBufs holds the buffers frames are coalesced in, shared by all
// connections, so that an idle connection keeps none.
var coalesceBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxCoalesce); return &b }}

// writeFrames writes frames, each one whole frame, in one system call
// where it can.
func (c *conn) writeFrames(frames [][]byte) error {
	if len(frames) == 1 {
		_, err := c.Write(frames[0])
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeFramesLocked(frames)
}

// writeFramesLocked is writeFrames with c.mu held; while nonblock is set
// it writes only what the socket takes now.
func (c *conn) writeFramesLocked(frames [][]byte) error {
	if c.nonblock {
		return c.tryFramesLocked(frames)
	}
	if err := c.setDeadline(c.timeout); err != nil {
		return err
	}
	if err := c.flushPendingLocked(); err != nil {
		return err
	}
	if len(frames) == 1 {
		return c.writeLocked(frames[0])
	}
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		// WriteTo consumes the slice it is called on: give it a field
		// (so that nothing escapes per write) over a reused array.
		c.iov = append(c.iov[:0], frames...)
		c.bufs = c.iov
		n, err := c.bufs.WriteTo(tc) // writev
		c.written += n
		clear(c.iov)
		if cap(c.iov) > keepFrames {
			c.iov = nil // a rare long batch: don't keep its array
		}
		return err
	}
	// No writev (TLS): copy frames into writes of up to maxCoalesce
	// bytes.
	return coalesce(frames, c.writeLocked)
}

// coalesce writes frames through write, copied into writes of up to
// maxCoalesce bytes in a shared buffer; a frame as large as that is
// written from where it is.
func coalesce(frames [][]byte, write func([]byte) error) error {
	var pooled *[]byte
	var b []byte
	defer func() {
		if pooled != nil {
			*pooled = b[:0]
			coalesceBufs.Put(pooled)
		}
	}()
	for _, f := range frames {
		if len(b) > 0 && len(b)+len(f) > maxCoalesce {
			if err := write(b); err != nil {
				return err
			}
			b = b[:0]
		}
		if len(f) >= maxCoalesce {
			if err := write(f); err != nil {
				return err
			}
			continue
		}
		if pooled == nil {
			pooled = coalesceBufs.Get().(*[]byte)
			b = (*pooled)[:0]
		}
		b = append(b, f...)
	}
	if len(b) > 0 {
		return write(b)
	}
	return nil
}

// writeLocked writes p and counts it. Call it with c.mu held.
func (c *conn) writeLocked(p []byte) error {
	n, err := c.Conn.Write(p)
	c.written += int64(n)
	return err
}

// lingerClose closes the connection after the close handshake: it sends
// FIN and discards what the client still sends for a moment, so that the
// client reads the close frame instead of a reset.
func (c *conn) lingerClose(wait time.Duration) {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		c.mu.Lock() // no write may follow the FIN
		_ = cw.CloseWrite()
		c.mu.Unlock()
		_ = c.Conn.SetReadDeadline(time.Now().Add(wait))
		_, _ = io.CopyN(io.Discard, c.Conn, 1<<20)
	}
	_ = c.Close()
}

// hijackShim lets gorilla hijack through Caddy's wrapped response writers,
// which implement Unwrap but not http.Hijacker. The 101 head goes through
// them, as any response's head does, so that Caddy's header operations
// apply to it and its access log records the status; net/http writes it.
// The connection is then wrapped in a conn that drops the head gorilla
// writes after the hijack.
type hijackShim struct {
	http.ResponseWriter
	r       *http.Request
	timeout time.Duration
	conn    *conn
	in      *conn // where to set the connection up, if not in a new conn
}

func (s *hijackShim) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h := s.ResponseWriter.Header()
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Accept", acceptKey(s.r.Header.Get("Sec-WebSocket-Key")))
	h.Del("Content-Length")
	nc, brw, err := takeover.Hijack(s.ResponseWriter, http.StatusSwitchingProtocols)
	if err != nil {
		return nil, nil, err
	}
	if s.in != nil {
		s.in.init(nc, s.timeout)
		s.conn = s.in
	} else {
		s.conn = newConn(nc, s.timeout)
	}
	s.conn.skipHead = true
	// The client may have sent frames as soon as it had the head, and
	// net/http may have read some: gorilla refuses a hijacked reader
	// holding data, so the connection hands them out instead.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		s.conn.early = bytes.Clone(b)
	}
	// gorilla reads through this small reader rather than net/http's
	// 4 KiB one, and the read loop can see whether it holds a frame.
	s.conn.br = bufio.NewReaderSize(s.conn, readBufferSize)
	return s.conn, bufio.NewReadWriter(s.conn.br, brw.Writer), nil
}

// acceptKey is the Sec-WebSocket-Accept answer to key (RFC 6455, section
// 4.2.2).
func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// writeBufferPool keeps gorilla from holding a write buffer per
// connection; frames are written whole by conn and need none.
var writeBufferPool = new(sync.Pool)

// ErrNotUpgrade is returned for a request that is not a WebSocket
// upgrade.
var ErrNotUpgrade = errors.New("not a WebSocket upgrade request")

// readBufferSize is the read buffer of a connection: client frames are
// few and small, so a small buffer kept for the life of the connection
// costs less than the 4 KiB one net/http has. It must be over 256 bytes
// for gorilla to use it.
const readBufferSize = 512

// Upgrade answers the handshake and returns the connection. Once Upgrade
// has hijacked the connection, an error has already been answered.
func Upgrade(w http.ResponseWriter, r *http.Request, writeTimeout time.Duration) (*Conn, error) {
	return upgrade(w, r, writeTimeout, nil)
}

// Upgrade is the package's Upgrade for a connection that s, a new
// Session, is to serve: the connection's state is kept in s, so that a
// delivery finds the session and its socket in one object.
func (s *Session) Upgrade(w http.ResponseWriter, r *http.Request, writeTimeout time.Duration) (*Conn, error) {
	return upgrade(w, r, writeTimeout, &s.connIn)
}

func upgrade(w http.ResponseWriter, r *http.Request, writeTimeout time.Duration, in *conn) (*Conn, error) {
	if !websocket.IsWebSocketUpgrade(r) {
		return nil, ErrNotUpgrade
	}
	shim := &hijackShim{ResponseWriter: w, r: r, timeout: writeTimeout, in: in}
	u := websocket.Upgrader{
		HandshakeTimeout: writeTimeout,
		// Zero: gorilla reads through the hijacked reader, conn.br.
		ReadBufferSize:  0,
		WriteBufferPool: writeBufferPool,
		// The handler checks Origin before it upgrades.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	ws, err := u.Upgrade(shim, r, nil)
	if err != nil {
		return nil, err
	}
	return &Conn{ws: ws, conn: shim.conn}, nil
}

// Conn is an upgraded WebSocket connection, ready for Serve.
type Conn struct {
	ws   *websocket.Conn
	conn *conn
}

// Close closes the connection without a close handshake. A connection
// waiting in the poller is shut down instead, which has the session end
// and close it once it is out of the poller.
func (c *Conn) Close() error {
	if c.conn.waiter.Shutdown(true) {
		return nil
	}
	return c.conn.Close()
}
