package sse

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/internal/poll"
	"github.com/caddy-push/push/internal/takeover"
)

// Conn is an event stream on a connection of its own, taken over from
// net/http once the response head was written. An idle Conn costs no
// goroutine where the poller is available (Linux, plain TCP): the socket
// waits in it for the client to leave; elsewhere the goroutine that runs
// Serve waits in a read. Queued messages are written by the delivery or
// by a drain goroutine that Kick starts (hub.Pump), heartbeats by a
// timer, each under the stream's lock. Every way a Conn ends goes
// through closeLocked.
type Conn struct {
	// What a delivery reads and writes comes first, so that it touches
	// few cache lines: at light load a fan-out finds every stream's
	// fields out of the cache.
	pump     hub.Pump
	mu       sync.Mutex // held to write and to close
	closed   bool
	writable bool // the socket takes writes that never wait (raw)
	// nonblock is set while Wake writes from the delivering goroutine;
	// pending holds what such a write left, written before anything else.
	nonblock bool
	pending  []byte
	// batches holds the arrays the queue's batches come in, inside the
	// stream, so that a delivery finds them in the stream's own lines.
	batches   hub.Batches
	lastWrite time.Time
	sock      takeover.Socket // writes without waiting; every close goes through it
	encoder

	raw      syscall.RawConn // the socket, for the poller and sock; nil if none
	waiter   *poll.Waiter    // waits for the client to leave; nil if no poller
	done     func(error)     // told why the read ended, once
	ended    atomic.Bool     // end has run
	deadline time.Time       // the write deadline last set
	beat     *time.Timer
}

// NewConn prepares a stream on c, a connection whose response head has
// been sent. Serve it with Serve.
func NewConn(c net.Conn, opts Options) *Conn {
	cc := new(Conn)
	cc.Init(c, opts)
	return cc
}

// Init prepares cc, a new Conn, as NewConn does. cc may be a
// subscription's OnReadyDirect Waker already: Wake does nothing until
// Serve has begun.
func (cc *Conn) Init(c net.Conn, opts Options) {
	cc.opts = opts
	cc.raw = cc.sock.Init(c)
	cc.writable = cc.raw != nil
	cc.waiter = poll.New(cc.raw, cc.readReady)
}

// Serve streams sub: it writes the reset notice and the replay, then
// waits for the client to leave or the connection to be closed (by Close
// or End), and calls done with what ended the read; Written then counts
// what was sent. Where the poller is available Serve returns once the
// start is written and done runs later on another goroutine; elsewhere
// Serve reads in the caller's goroutine and returns after done.
func (c *Conn) Serve(sub *hub.Subscription, start hub.Start, lastEventID string, done func(error)) {
	c.sub = sub
	c.done = done
	c.pump.Init(sub, c.sendQueued, func(v any) {
		if c.opts.Logger != nil {
			c.opts.Logger.Error("panic writing an event stream", zap.Any("panic", v), zap.Stack("stack"))
		}
		c.Close()
	})
	c.mu.Lock()
	err := c.begin(c, nil, start, lastEventID)
	c.lastWrite = time.Now()
	if err != nil {
		c.closeLocked()
	}
	c.mu.Unlock()
	if err != nil {
		c.end(err)
		return
	}
	c.pump.Start()
	if c.opts.Heartbeat > 0 {
		c.mu.Lock()
		// Under the lock: heartbeat resets the field's timer, and
		// closeLocked stops it.
		if !c.closed {
			c.beat = time.AfterFunc(c.opts.Heartbeat, c.heartbeat)
		}
		c.mu.Unlock()
	}
	// Nothing more is expected from the client; reading tells when it
	// leaves.
	if c.waiter != nil {
		c.readReady()
		return
	}
	c.end(c.readAll())
}

// readAll reads, waiting, until the client leaves or the connection is
// closed, and returns what ended the read.
func (c *Conn) readAll() error {
	b := make([]byte, 64)
	for {
		if _, err := c.sock.Conn().Read(b); err != nil {
			return err
		}
	}
}

// readReady reads what the client sent, without waiting, and arms the
// poller again, or ends the stream once the client has left or the
// connection was shut down. It runs on a goroutine the poller started,
// or on Serve's for the first time.
func (c *Conn) readReady() {
	defer func() {
		if v := recover(); v != nil {
			if c.opts.Logger != nil {
				c.opts.Logger.Error("panic ending an event stream", zap.Any("panic", v), zap.Stack("stack"))
			}
			c.end(errPanic)
		}
	}()
	b := make([]byte, 64)
	for {
		if testHookRead != nil {
			testHookRead()
		}
		_, err := c.waiter.TryRead(b)
		if err == nil {
			continue // discarded
		}
		if errors.Is(err, poll.ErrWouldBlock) {
			if err = c.waiter.Arm(); err == nil {
				return // nothing may touch c after Arm
			}
			if errors.Is(err, poll.ErrUnavailable) {
				err = c.readAll()
			}
		}
		c.end(err)
		return
	}
}

// testHookRead, if set, runs before each read from the poller.
var testHookRead func()

// errPanic ends a stream whose reading panicked.
var errPanic = errors.New("panic reading from the client")

// end closes the stream once the read has ended: out of the poller,
// closed, and done told why.
func (c *Conn) end(err error) {
	if !c.ended.CompareAndSwap(false, true) {
		// A panic in done: the stream is already out of the poller
		// and closed.
		return
	}
	c.waiter.Done()
	c.Close()
	// closeLocked may have only shut the socket down, while it was in
	// the poller.
	_ = c.sock.Close()
	c.done(err)
}

// Kick is the subscription's OnReady hook: messages are queued, so have
// them written. It never blocks.
func (c *Conn) Kick() { c.pump.Kick() }

// Wake is the subscription's OnReadyDirect hook: on a plain TCP
// connection with no writer running, what is queued is written at once
// from the caller's goroutine, as much as the socket takes without
// waiting; the rest, or everything on another connection, is left to the
// pump's goroutine. It never blocks.
func (c *Conn) Wake() {
	if !c.pump.Started() {
		return // Serve writes what is queued once it begins
	}
	if !c.writable {
		c.pump.Kick()
		return
	}
	c.pump.Direct(c.tryQueued)
}

// tryQueued writes what is queued without waiting and reports whether
// nothing is left to write.
func (c *Conn) tryQueued() bool {
	if !c.mu.TryLock() {
		return false // a heartbeat is being written
	}
	defer c.mu.Unlock()
	if c.closed {
		return true
	}
	if len(c.pending) > 0 {
		return false
	}
	c.nonblock = true
	_, err := c.sendQueuedLocked()
	c.nonblock = false
	return err != nil || len(c.pending) == 0
}

// sendQueued writes everything queued and reports how many messages it
// took. A failed write closes the connection.
func (c *Conn) sendQueued() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sendQueuedLocked()
}

func (c *Conn) sendQueuedLocked() (int, error) {
	if c.closed {
		return 0, errInterrupted
	}
	if len(c.pending) > 0 && !c.nonblock {
		if err := c.write(nil); err != nil {
			c.closeLocked()
			return 0, err
		}
	}
	batch := c.batches.Take(c.sub)
	n := len(batch)
	err := c.writeBatch(c, batch)
	c.batches.Done(batch)
	if err != nil {
		c.closeLocked()
		return n, err
	}
	return n, nil
}

// heartbeat writes a comment line if nothing was written for a heartbeat
// interval, and sets itself for the next.
func (c *Conn) heartbeat() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	idle := time.Since(c.lastWrite)
	if idle >= c.opts.Heartbeat {
		if err := c.write(heartbeat); err != nil {
			c.closeLocked()
			return
		}
		idle = 0
	}
	c.beat.Reset(c.opts.Heartbeat - idle)
}

// write sends b in one write, under the write deadline, after what a
// write that could not wait left. While nonblock is set it writes what
// the socket takes now and keeps the rest in pending. Call it with c.mu
// held.
func (c *Conn) write(b []byte) error {
	if c.nonblock {
		return c.tryWrite(b)
	}
	if len(c.pending) > 0 {
		p := c.pending
		c.pending = nil
		if err := c.writeAll(p); err != nil {
			return err
		}
	}
	if len(b) == 0 {
		return nil
	}
	return c.writeAll(b)
}

// tryWrite writes what of b the socket takes now and keeps a copy of the
// rest in pending (b may be a shared encoding or a pooled buffer).
func (c *Conn) tryWrite(b []byte) error {
	n, pending, err := c.sock.TryWritePending(c.pending, b)
	c.pending = pending
	c.bytes += int64(n)
	if n > 0 {
		c.lastWrite = time.Now()
	}
	return err
}

func (c *Conn) writeAll(b []byte) error {
	if d := nextDeadline(c.deadline, c.opts.WriteTimeout); !d.IsZero() {
		c.deadline = d
		if err := c.sock.Conn().SetWriteDeadline(d); err != nil {
			return err
		}
	}
	n, err := c.sock.Conn().Write(b)
	c.bytes += int64(n)
	if err == nil {
		c.lastWrite = time.Now()
	}
	return err
}

// closeLocked ends the stream: nothing is written after it, the timer
// stops and the connection closes, which ends Serve's read. Call it with
// c.mu held.
func (c *Conn) closeLocked() {
	if c.closed {
		return
	}
	c.closed = true
	if c.beat != nil {
		c.beat.Stop()
	}
	c.closeConn()
}

// closeConn closes the connection, or, while it is in the poller, shuts
// it down: the reader the poller then starts takes it out and closes it.
func (c *Conn) closeConn() {
	if !c.waiter.Shutdown(true) {
		_ = c.sock.Close()
	}
}

// Close ends the stream once any write in progress is done.
func (c *Conn) Close() {
	c.mu.Lock()
	c.closeLocked()
	c.mu.Unlock()
}

// Abort closes the connection at once, without the stream's lock, which a
// panic may have left held; a write in progress finishes first, and none
// starts after.
func (c *Conn) Abort() error { return c.sock.Close() }

// End is the subscription's OnEnd hook: the hub ended it. The connection
// closes after grace, at once if grace is 0, even if a write to it is
// stuck; a write in progress may finish meanwhile, and none starts after.
// It never blocks.
func (c *Conn) End(grace time.Duration) {
	if grace <= 0 {
		c.closeConn()
	} else {
		time.AfterFunc(grace, c.closeConn)
	}
	go c.Close()
}

// Written reports the bytes and messages written so far.
func (c *Conn) Written() (bytes, messages int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.encoder.Written()
}
