// Package sse writes hub messages as Server-Sent Events: the bytes of one
// event, encoded once per message, and the loop that streams a
// subscription to one HTTP response.
package sse

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
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
	// MaxBatch bounds how many bytes of queued messages go into one write.
	MaxBatch int
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

// Stream is one subscriber's event stream.
type Stream struct {
	w    io.Writer
	rw   http.ResponseWriter      // nil on a Conn
	rc   *http.ResponseController // nil on a Conn
	conn net.Conn                 // nil on a ResponseWriter
	head []byte                   // written before the first event, on a Conn
	opts Options
	// last is the sequence number of the last message written, to skip
	// live messages already sent as replay.
	last uint64

	interrupted bool
	deadline    time.Time // the write deadline last set

	// On a connection of its own (see ServeConn):
	sub       *hub.Subscription
	mu        sync.Mutex // held to write
	closed    bool
	lastWrite time.Time
	batch     []*hub.Message
	pump      hub.Pump
	beat      *time.Timer
}

// NewStream prepares a stream on w.
func NewStream(w http.ResponseWriter, opts Options) *Stream {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 64 << 10
	}
	return &Stream{w: w, rw: w, rc: http.NewResponseController(w), opts: opts}
}

// NewConnStream prepares a stream on c, a connection of its own (a
// hijacked HTTP/1 connection); head is the response's status line and
// headers, written with the first events. Serve it with ServeConn.
func NewConnStream(c net.Conn, head []byte, opts Options) *Stream {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 64 << 10
	}
	return &Stream{w: c, conn: c, head: head, opts: opts}
}

func (s *Stream) setWriteDeadline(t time.Time) error {
	if s.conn != nil {
		return s.conn.SetWriteDeadline(t)
	}
	return s.rc.SetWriteDeadline(t)
}

func (s *Stream) flush() error {
	if s.rc == nil {
		return nil
	}
	return s.rc.Flush()
}

// Interrupt bounds what is left of the stream's life to grace: the
// server's final write after the handler returns fails then if the client
// does not take it, which closes the connection; further writes through
// the stream are refused. With a grace of 0 the client is disconnected at
// once. Call it from the stream's goroutine: Caddy's response writers do
// not allow deadlines to be set concurrently with writes.
func (s *Stream) Interrupt(grace time.Duration) {
	s.interrupted = true
	_ = s.setWriteDeadline(time.Now().Add(grace))
}

// Finish is called when the handler returns. Unless the stream was
// interrupted, it clears the write deadline so that the connection can
// serve another request.
func (s *Stream) Finish() {
	if !s.interrupted && s.rc != nil {
		_ = s.rc.SetWriteDeadline(time.Time{})
	}
}

// Begin writes the status and headers, the retry field, the reset notice
// and the replay, and flushes them.
func (s *Stream) Begin(st hub.Start, lastEventID string) error {
	buf := getBuf()
	defer putBuf(buf)
	b := *buf
	if s.rw != nil {
		Headers(s.rw.Header())
		s.rw.WriteHeader(http.StatusOK)
	} else {
		b = append(b, s.head...)
	}
	if s.opts.Retry > 0 {
		b = append(b, "retry: "...)
		b = strconv.AppendInt(b, s.opts.Retry.Milliseconds(), 10)
		b = append(b, "\n\n"...)
	}
	if st.Reset {
		b = append(b, Reset(st.Head, lastEventID)...)
	}
	// Replay goes out in bounded writes: a client asking for everything
	// retained must not make the server copy all of it at once.
	for _, m := range st.Replay {
		if len(b) >= s.opts.MaxBatch {
			if err := s.write(b); err != nil {
				return err
			}
			b = b[:0]
		}
		b = append(b, Encode(m)...)
		s.last = m.Seq
	}
	*buf = b
	return s.write(b)
}

// Run streams sub until it ends or the request is done, and then returns
// nil; it returns the error of a failed write.
func (s *Stream) Run(sub *hub.Subscription, done <-chan struct{}) error {
	var timer *time.Timer
	var tick <-chan time.Time
	if s.opts.Heartbeat > 0 {
		timer = time.NewTimer(s.opts.Heartbeat)
		defer timer.Stop()
		tick = timer.C
	}
	s.sub = sub
	var batch []*hub.Message
	for {
		select {
		case <-sub.Ready():
			// Everything queued goes out in writes of up to MaxBatch
			// bytes; the batch's array goes back to the queue.
			batch = sub.Take(batch)
			if err := s.writeBatch(batch); err != nil {
				return err
			}
			clear(batch)
			batch = batch[:0]
			if cap(batch) > keepBatch {
				batch = nil
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

func (s *Stream) appendMsg(b []byte, m *hub.Message, n int) ([]byte, int) {
	if m.Seq <= s.last {
		return b, n
	}
	s.last = m.Seq
	return append(b, Encode(m)...), n + 1
}

// batchBufs holds the buffers that writes of several messages are built
// in, shared by all streams, so that a stream keeps none between writes.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

func getBuf() *[]byte { return batchBufs.Get().(*[]byte) }

// putBuf returns a buffer to the pool, unless it grew far past its size.
func putBuf(b *[]byte) {
	if cap(*b) <= 256<<10 {
		*b = (*b)[:0]
		batchBufs.Put(b)
	}
}

// writeBatch writes batch in writes of up to MaxBatch bytes, skipping
// messages already sent, and counts what it sent.
func (s *Stream) writeBatch(batch []*hub.Message) error {
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
			if m.Seq <= s.last {
				continue
			}
			s.last = m.Seq
			if err := s.write(Encode(m)); err != nil {
				return err
			}
			s.sub.Sent(1)
			continue
		}
		if buf == nil {
			buf = getBuf()
		}
		b, n := (*buf)[:0], 0
		for ; i < len(batch) && len(b) < s.opts.MaxBatch; i++ {
			b, n = s.appendMsg(b, batch[i], n)
		}
		*buf = b
		if len(b) > 0 {
			if err := s.write(b); err != nil {
				return err
			}
		}
		s.sub.Sent(n)
	}
	return nil
}

// keepBatch bounds the batch array a stream keeps between batches.
const keepBatch = 64

// errInterrupted ends a stream whose subscription was ended.
var errInterrupted = errors.New("stream interrupted")

// write sends b in one write and flushes once.
func (s *Stream) write(b []byte) error {
	// Extending the deadline must not undo an Interrupt.
	if s.interrupted {
		return errInterrupted
	}
	// Moving a deadline costs a timer update: keep one that still leaves
	// at least half the timeout, so a stuck write fails after between
	// half and all of it.
	if t := s.opts.WriteTimeout; t > 0 {
		now := time.Now()
		if left := s.deadline.Sub(now); left < t/2 || left > t {
			s.deadline = now.Add(t)
			if err := s.setWriteDeadline(s.deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return err
			}
		}
	}
	if len(b) == 0 {
		return s.flush()
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.flush()
}
