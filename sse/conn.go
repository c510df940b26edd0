package sse

import (
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-push/push/hub"
)

// ServeConn streams sub on the stream's own connection: it writes the
// response head, the reset notice and the replay, then reads from the
// connection, in the caller's goroutine, until the client leaves or the
// connection is closed (by Close, or by the caller). An idle stream costs
// that goroutine only: queued messages are written by a drain goroutine
// that Kick starts, heartbeats by a timer, each under the stream's lock.
func (s *Stream) ServeConn(sub *hub.Subscription, start hub.Start, lastEventID string) error {
	s.sub = sub
	s.pump.Init(sub, s.sendQueued, func(v any) {
		if s.opts.Logger != nil {
			s.opts.Logger.Error("panic writing an event stream", zap.Any("panic", v), zap.Stack("stack"))
		}
		_ = s.conn.Close()
	})
	s.mu.Lock()
	err := s.Begin(start, lastEventID)
	s.lastWrite = time.Now()
	if err != nil {
		s.closed = true
	}
	s.mu.Unlock()
	if err != nil {
		_ = s.conn.Close()
		return err
	}
	sub.Sent(len(start.Replay))
	s.pump.Start()
	if s.opts.Heartbeat > 0 {
		// Set the field before the timer can fire: heartbeat resets it.
		s.beat = time.AfterFunc(time.Hour, s.heartbeat)
		s.beat.Reset(s.opts.Heartbeat)
	}
	// Nothing more is expected from the client; reading tells when it
	// leaves.
	b := make([]byte, 64)
	for {
		if _, err = s.conn.Read(b); err != nil {
			break
		}
	}
	if s.beat != nil {
		s.beat.Stop()
	}
	s.Close()
	return err
}

// Kick is the subscription's OnReady hook: messages are queued, so have
// them written. It never blocks.
func (s *Stream) Kick() { s.pump.Kick() }

// sendQueued writes everything queued and reports how many messages it
// took. A failed write closes the connection.
func (s *Stream) sendQueued() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errInterrupted
	}
	s.batch = s.sub.Take(s.batch)
	n := len(s.batch)
	err := s.writeBatch(s.batch)
	clear(s.batch)
	s.batch = s.batch[:0]
	if cap(s.batch) > keepBatch {
		s.batch = nil
	}
	if err != nil {
		s.closed = true
		_ = s.conn.Close()
		return n, err
	}
	s.lastWrite = time.Now()
	return n, nil
}

// heartbeat writes a comment line if nothing was written for a heartbeat
// interval, and sets itself for the next.
func (s *Stream) heartbeat() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	idle := time.Since(s.lastWrite)
	if idle >= s.opts.Heartbeat {
		if err := s.write(heartbeat); err != nil {
			s.closed = true
			_ = s.conn.Close()
			return
		}
		s.lastWrite, idle = time.Now(), 0
	}
	s.beat.Reset(s.opts.Heartbeat - idle)
}

// Close ends a stream served by ServeConn once any write in progress is
// done, and closes the connection; nothing is written after it.
func (s *Stream) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	_ = s.conn.Close()
}

// Conn returns the connection of a stream made by NewConnStream.
func (s *Stream) Conn() net.Conn { return s.conn }
