// Package sse writes hub messages as Server-Sent Events: the bytes of one
// event, encoded once per message, and the two kinds of stream that send a
// subscription: Stream, through an http.ResponseWriter from the handler's
// goroutine, and Conn, on a connection taken over from net/http.
package sse

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-push/push/hub"
)

// ResetEvent is the event type of the notice that a subscriber may have
// missed messages.
const ResetEvent = "push.reset"

// heartbeat is the comment line sent on an idle stream.
var heartbeat = []byte(":\n")

var encoding = hub.NewEncoding()

// Encode returns m as one SSE event. The bytes are built once per message
// and shared by every subscriber; callers must not modify them.
func Encode(m *hub.Message) []byte {
	return m.Encoded(encoding, func(m *hub.Message) any {
		return AppendEvent(nil, m.ID(), m.Event, m.Data)
	}).([]byte)
}

// AppendEvent appends one SSE event to b: the id, the event type if any,
// and one data line per line of data (split on LF, CRLF and CR). Data that
// is not valid UTF-8 is sent base64-encoded on one line.
func AppendEvent(b []byte, id, event string, data []byte) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	if event != "" {
		b = append(b, "event: "...)
		b = append(b, event...)
		b = append(b, '\n')
	}
	if !utf8.Valid(data) {
		b = append(b, "data: "...)
		b = base64.StdEncoding.AppendEncode(b, data)
		return append(b, "\n\n"...)
	}
	for {
		b = append(b, "data: "...)
		i := indexEOL(data)
		if i < 0 {
			b = append(b, data...)
			break
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, "\n\n"...)
}

func indexEOL(b []byte) int {
	for i, c := range b {
		if c == '\n' || c == '\r' {
			return i
		}
	}
	return -1
}

// Reset returns the push.reset event for a subscriber that sent
// lastEventID. Its id is head, so that the client's next reconnect
// resumes from there instead of repeating the reset.
func Reset(head, lastEventID string) []byte {
	data, _ := json.Marshal(struct {
		LastEventID string `json:"last_event_id"`
	}{lastEventID})
	return AppendEvent(nil, head, ResetEvent, data)
}

// Options tune one stream.
type Options struct {
	// Heartbeat is how long the stream may be idle before a comment line
	// is sent; 0 sends none.
	Heartbeat time.Duration
	// Retry, if positive, is sent once as the retry: field.
	Retry time.Duration
	// WriteTimeout bounds each write; a client that does not take the
	// bytes in time is disconnected.
	WriteTimeout time.Duration
	// Logger, if set, reports a panic in a stream's writer.
	Logger *zap.Logger
}

// Headers sets the response headers of an event stream.
func Headers(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
}

// maxWrite bounds the bytes of queued or replayed messages that go into
// one write.
const maxWrite = 64 << 10

// errInterrupted ends a stream whose subscription was ended.
var errInterrupted = errors.New("stream interrupted")

// sink is where an encoder's bytes go: one write, flushed.
type sink interface {
	write(b []byte) error
}

// encoder is what both kinds of stream share: it turns the start of a
// subscription and its queued messages into event bytes, in writes of at
// most maxWrite bytes, skips live messages already sent as replay, and
// counts what it sent.
type encoder struct {
	opts Options
	sub  *hub.Subscription
	// last is the sequence number of the last message written.
	last uint64
	// bytes and msgs count what was written, for the caller's log.
	bytes, msgs int64
}

// Written reports the bytes and messages written so far. On a Conn, call
// it once Serve has returned.
func (e *encoder) Written() (bytes, messages int64) { return e.bytes, e.msgs }

// begin writes prefix, the retry field, the reset notice and the replay.
func (e *encoder) begin(w sink, prefix []byte, st hub.Start, lastEventID string) error {
	buf := getBuf()
	defer putBuf(buf)
	b := append((*buf)[:0], prefix...)
	if e.opts.Retry > 0 {
		b = append(b, "retry: "...)
		b = strconv.AppendInt(b, e.opts.Retry.Milliseconds(), 10)
		b = append(b, "\n\n"...)
	}
	if st.Reset {
		b = append(b, Reset(st.Head, lastEventID)...)
	}
	// Replay goes out in bounded writes: a client asking for everything
	// retained must not make the server copy all of it at once.
	n := 0
	for _, m := range st.Replay {
		if len(b) >= maxWrite {
			if err := w.write(b); err != nil {
				return err
			}
			e.sent(n)
			b, n = b[:0], 0
		}
		b = append(b, Encode(m)...)
		e.last = m.Seq
		n++
	}
	*buf = b
	if err := w.write(b); err != nil {
		return err
	}
	e.sent(n)
	return nil
}

// sent counts n messages written.
func (e *encoder) sent(n int) {
	if n > 0 {
		e.msgs += int64(n)
		e.sub.Sent(n)
	}
}

func (e *encoder) appendMsg(b []byte, m *hub.Message, n int) ([]byte, int) {
	if m.Seq <= e.last {
		return b, n
	}
	e.last = m.Seq
	return append(b, Encode(m)...), n + 1
}

// batchBufs holds the buffers that writes of several messages are built
// in, shared by all streams, so that a stream keeps none between writes.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxWrite); return &b }}

func getBuf() *[]byte { return batchBufs.Get().(*[]byte) }

// putBuf returns a buffer to the pool, unless it grew far past its size.
func putBuf(b *[]byte) {
	if cap(*b) <= 4*maxWrite {
		*b = (*b)[:0]
		batchBufs.Put(b)
	}
}

// writeBatch writes batch in writes of up to maxWrite bytes, skipping
// messages already sent, and counts what it sent.
func (e *encoder) writeBatch(w sink, batch []*hub.Message) error {
	var buf *[]byte
	defer func() {
		if buf != nil {
			putBuf(buf)
		}
	}()
	for i := 0; i < len(batch); {
		if i == len(batch)-1 {
			// One message left: it goes out from its shared encoding,
			// not copied for each subscriber.
			m := batch[i]
			i++
			if m.Seq <= e.last {
				continue
			}
			e.last = m.Seq
			if err := w.write(Encode(m)); err != nil {
				return err
			}
			e.sent(1)
			continue
		}
		if buf == nil {
			buf = getBuf()
		}
		b, n := (*buf)[:0], 0
		for ; i < len(batch) && len(b) < maxWrite; i++ {
			b, n = e.appendMsg(b, batch[i], n)
		}
		*buf = b
		if len(b) > 0 {
			if err := w.write(b); err != nil {
				return err
			}
		}
		e.sent(n)
	}
	return nil
}

// nextDeadline returns the write deadline to set before a write, or the
// zero time to keep the one set: moving a deadline costs a timer update,
// so one that still leaves at least half the timeout is kept, and a
// stuck write fails after between half and all of it.
func nextDeadline(set time.Time, timeout time.Duration) time.Time {
	if timeout <= 0 {
		return time.Time{}
	}
	now := time.Now()
	if left := set.Sub(now); left >= timeout/2 && left <= timeout {
		return time.Time{}
	}
	return now.Add(timeout)
}

// Stream is an event stream written through an http.ResponseWriter, from
// the handler's goroutine (HTTP/2, HTTP/3, and HTTP/1 behind encode).
type Stream struct {
	encoder
	rw          http.ResponseWriter
	rc          *http.ResponseController
	interrupted bool
	deadline    time.Time // the write deadline last set
}

// NewStream prepares a stream on w.
func NewStream(w http.ResponseWriter, opts Options) *Stream {
	return &Stream{encoder: encoder{opts: opts}, rw: w, rc: http.NewResponseController(w)}
}

// Interrupt bounds what is left of the stream's life to grace: the
// server's final write after the handler returns fails then if the client
// does not take it, which closes the connection; further writes through
// the stream are refused. With a grace of 0 the client is disconnected at
// once. Call it from the stream's goroutine: Caddy's response writers do
// not allow deadlines to be set concurrently with writes.
func (s *Stream) Interrupt(grace time.Duration) {
	s.interrupted = true
	_ = s.rc.SetWriteDeadline(time.Now().Add(grace))
}

// Finish is called when the handler returns. Unless the stream was
// interrupted, it clears the write deadline so that the connection can
// serve another request.
func (s *Stream) Finish() {
	if !s.interrupted {
		_ = s.rc.SetWriteDeadline(time.Time{})
	}
}

// Begin writes the status and headers, the retry field, the reset notice
// and the replay of sub, and flushes them.
func (s *Stream) Begin(sub *hub.Subscription, st hub.Start, lastEventID string) error {
	s.sub = sub
	Headers(s.rw.Header())
	s.rw.WriteHeader(http.StatusOK)
	return s.begin(s, nil, st, lastEventID)
}

// Run streams the subscription until it ends or the request is done, and
// then returns nil; it returns the error of a failed write.
func (s *Stream) Run(done <-chan struct{}) error {
	var timer *time.Timer
	var tick <-chan time.Time
	if s.opts.Heartbeat > 0 {
		timer = time.NewTimer(s.opts.Heartbeat)
		defer timer.Stop()
		tick = timer.C
	}
	sub := s.sub
	var batches hub.Batches
	for {
		if len(sub.Ready()) == 0 {
			if err := s.idle(); err != nil {
				return err
			}
		}
		select {
		case <-sub.Ready():
			// Everything queued goes out in bounded writes; the batch's
			// array goes back to the queue.
			batch := batches.Take(sub)
			err := s.writeBatch(s, batch)
			batches.Done(batch)
			if err != nil {
				return err
			}
		case <-tick:
			if err := s.write(heartbeat); err != nil {
				return err
			}
		case <-sub.Done():
			return nil
		case <-done:
			return nil
		}
		if timer != nil {
			timer.Reset(s.opts.Heartbeat)
		}
	}
}

// idle drops the write deadline of a stream with nothing left to write:
// HTTP/2 resets a stream whose deadline passes even when no write is
// under way, which would cut every subscriber idle for longer than the
// write timeout.
func (s *Stream) idle() error {
	if s.deadline.IsZero() || s.interrupted {
		return nil
	}
	s.deadline = time.Time{}
	if err := s.rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// write sends b in one write and flushes once.
func (s *Stream) write(b []byte) error {
	// Extending the deadline must not undo an Interrupt.
	if s.interrupted {
		return errInterrupted
	}
	if d := nextDeadline(s.deadline, s.opts.WriteTimeout); !d.IsZero() {
		s.deadline = d
		if err := s.rc.SetWriteDeadline(d); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	if len(b) > 0 {
		n, err := s.rw.Write(b)
		s.bytes += int64(n)
		if err != nil {
			return err
		}
	}
	return s.rc.Flush()
}
