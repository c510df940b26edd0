package wshub

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/internal/poll"
)

// Format is the protocol spoken on a connection.
type Format int

// Formats.
const (
	// JSON: one JSON text frame per server message; the client may
	// subscribe, unsubscribe and publish with JSON frames.
	JSON Format = iota
	// Raw: one frame per message holding only its payload, text if it is
	// UTF-8, binary otherwise; client frames are ignored.
	Raw
)

// Close codes (RFC 6455, section 7.4.1).
const (
	CloseNormal      = websocket.CloseNormalClosure
	CloseGoingAway   = websocket.CloseGoingAway
	ClosePolicy      = websocket.ClosePolicyViolation
	CloseInvalidData = websocket.CloseInvalidFramePayloadData
)

// Limits on what one client may do.
const (
	// FrameRate is how many frames a second a client may send, on
	// average; FrameBurst how many at once.
	FrameRate  = 100
	FrameBurst = 200
	// maxFramesPerWrite bounds the frames written in one system call.
	maxFramesPerWrite = 256
	// closeWait is how long a close handshake may take.
	closeWait = time.Second
	// publishTimeout bounds one publish of a client.
	publishTimeout = 5 * time.Second
)

// Options configure Serve.
type Options struct {
	Format Format
	// Ping is the interval of server pings; a client that answers none
	// in two intervals is disconnected. 0 sends no pings.
	Ping time.Duration
	// MaxMessageSize is the largest frame a client may send; a larger
	// one closes the connection with 1009.
	MaxMessageSize int64
	// MaxTopics bounds the topics of one connection.
	MaxTopics int
	// FrameRate and FrameBurst limit the client's frames; 0 means the
	// package's FrameRate and FrameBurst.
	FrameRate  int
	FrameBurst int
	// CanSubscribe reports whether the client may add topic with a
	// subscribe frame; CanPublish whether it may publish to it.
	CanSubscribe func(topic string) bool
	CanPublish   func(topic string) bool
	// Publish publishes a client's message and returns its ID.
	Publish func(ctx context.Context, m *hub.Message) (string, error)
	Logger  *zap.Logger
}

var (
	jsonEncoding = hub.NewEncoding()
	rawEncoding  = hub.NewEncoding()
)

// EncodeJSON returns m as a whole `format json` frame, built once per
// message and shared by every subscriber.
func EncodeJSON(m *hub.Message) []byte {
	return m.Encoded(jsonEncoding, func(m *hub.Message) any {
		return appendFrame(nil, opText, MessageFrame(m))
	}).([]byte)
}

// EncodeRaw returns m as a whole `format raw` frame, built once per
// message and shared by every subscriber.
func EncodeRaw(m *hub.Message) []byte {
	return m.Encoded(rawEncoding, func(m *hub.Message) any {
		op := byte(opBinary)
		if utf8.Valid(m.Data) {
			op = opText
		}
		return appendFrame(nil, op, m.Data)
	}).([]byte)
}

// Session is one connection: it streams a subscription to the client
// and serves the client's frames. An idle session costs no goroutine
// where the poller is available (see readReady), one in the read loop
// elsewhere; whatever is written (messages, answers, pings, the close
// frame) is written by the goroutine that has it to write, under the
// session's write lock: a short-lived drain goroutine for queued messages,
// the read loop for answers, a timer for pings.
type Session struct {
	// What a delivery reads and writes comes first, so that it touches
	// few cache lines: at light load a fan-out finds every session's
	// fields out of the cache.
	pump     hub.Pump
	conn     *conn // c.conn
	writable bool  // the socket takes writes that never wait (conn.raw)
	raw      bool  // messages go out as their data alone (Raw), not JSON

	wmu       sync.Mutex // held to write and to change the fields below
	closing   bool       // a close frame was sent or the connection failed
	direct    bool       // Wake writes, with the connection's lock held
	lastBatch int32      // how many messages the last Take gave
	// since holds, for each subscribed topic, the sequence number after
	// which its messages are sent: queued messages at or below it were
	// either replayed already or queued before an unsubscribe.
	since  []topicSince
	msgs   int64    // messages sent
	frames [][]byte // about to be written
	// The arrays behind since, frames and the queue's batches start
	// inside the session, so that a delivery finds them in the
	// session's own lines and pages rather than in three more objects.
	sinceIn  [1]topicSince
	framesIn [1][]byte
	batches  hub.Batches

	// connIn holds the connection when Session.Upgrade made it.
	connIn conn

	nextPing time.Time // when the next ping is due

	c        *Conn
	opts     Options
	log      *zap.Logger
	readDone atomic.Bool // set when reading has ended
	endOnce  sync.Once
	ping     *time.Timer
	done     func(error) // told why the session ended, once

	// Read state, used by one reading goroutine at a time: the frame
	// rate limiter's tokens and when it last counted.
	tokens    float64
	lastFrame time.Time
	// lastRead is when the client was last heard from (Unix ns), for
	// the ping timer when no goroutine waits in a read with a deadline;
	// noPong is set when that timer found it silent too long.
	lastRead atomic.Int64
	noPong   atomic.Bool
	polled   bool // the connection waits in the poller when idle
	ending   bool // end has begun
}

// NewSession prepares a session on an upgraded connection. The
// subscription's OnReady hook must call Kick, or the session be its
// OnReadyDirect Waker, and its OnEnd hook call Ended once the session
// exists.
func NewSession(c *Conn, sub *hub.Subscription, opts Options) *Session {
	s := new(Session)
	s.Init(c, sub, opts)
	return s
}

// Init prepares s, a new Session, as NewSession does. s may be a
// subscription's OnReadyDirect Waker already: Wake does nothing until
// Serve has begun.
func (s *Session) Init(c *Conn, sub *hub.Subscription, opts Options) {
	s.conn = c.conn
	s.since = s.sinceIn[:0]
	s.frames = s.framesIn[:0]
	s.writable = c.conn.raw != nil
	s.c = c
	s.opts = opts
	s.log = opts.Logger
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if opts.Format == Raw {
		s.raw = true
	}
	c.conn.waiter = poll.New(c.conn.raw, s.readReady)
	s.polled = c.conn.waiter != nil
	s.pump.Init(sub, s.drainOnce, func(v any) {
		s.log.Error("panic writing to a WebSocket", zap.Any("panic", v), zap.Stack("stack"))
		_ = s.c.Close()
	})
}

// topicSince is a subscribed topic and the sequence number after which
// its messages are sent. A connection has few topics (at most
// MaxTopics), so a slice costs less than a map and is as fast.
type topicSince struct {
	topic string
	seq   uint64
}

func (s *Session) sinceOf(topic string) (uint64, bool) {
	for _, ts := range s.since {
		if ts.topic == topic {
			return ts.seq, true
		}
	}
	return 0, false
}

func (s *Session) setSince(topic string, seq uint64) {
	for i := range s.since {
		if s.since[i].topic == topic {
			s.since[i].seq = seq
			return
		}
	}
	s.since = append(s.since, topicSince{topic, seq})
}

// errClientClosed ends a session the client closed.
var errClientClosed = errors.New("client closed the connection")

// Serve sends the start of the subscription (the replay from cursor
// last), then serves the client's frames until the connection ends. It
// closes the connection and calls done with why the session ended. On a
// plain TCP connection where the poller is available (Linux), the
// session waits for the client's frames without a goroutine: Serve
// returns once the start is sent and done is called later, from another
// goroutine. Elsewhere Serve reads in the caller's goroutine and returns
// after done.
func (s *Session) Serve(start hub.Start, last string, done func(error)) {
	s.done = done
	s.wmu.Lock()
	for _, t := range s.pump.Subscription().Topics() {
		s.setSince(t, start.HeadSeq)
	}
	err := s.begin(start, last, nil)
	if err != nil {
		s.failLocked()
	}
	s.wmu.Unlock()
	if err != nil {
		s.readDone.Store(true)
		done(err)
		return
	}
	// The hooks may have fired before the session existed.
	select {
	case <-s.pump.Subscription().Done():
		s.Ended(s.pump.Subscription().Err())
	default:
		// Live messages may go out now, after the start.
		s.pump.Start()
	}
	s.setupRead()
	if s.opts.Ping > 0 {
		// Set the fields before the timer can fire: sendPing resets it.
		s.nextPing = time.Now().Add(s.opts.Ping)
		s.ping = time.AfterFunc(time.Hour, s.sendPing)
		s.ping.Reset(s.opts.Ping)
	}
	if s.polled {
		s.readReady()
		return
	}
	s.end(s.readLoop())
}

// end finishes the session once reading has ended: it takes the
// connection out of the poller, answers or sends the close frame, closes
// the connection and tells done why the session ended.
func (s *Session) end(err error) {
	s.ending = true
	s.conn.waiter.Done()
	s.readDone.Store(true)
	if s.ping != nil {
		s.ping.Stop()
	}
	s.finish(err)
	var ce *websocket.CloseError
	switch reason := s.pump.Subscription().Err(); {
	case reason != nil:
		err = reason
	case errors.As(err, &ce):
		err = errClientClosed
	}
	s.done(err)
}

// Kick is the subscription's OnReady hook: messages are queued, so have
// them written. It never blocks.
func (s *Session) Kick() { s.pump.Kick() }

// Wake is the subscription's OnReadyDirect hook: on a plain TCP
// connection with no writer running, what is queued is written at once
// from the caller's goroutine, as much as the socket takes without
// waiting; the rest, or everything on another connection, is left to the
// pump's goroutine. It never blocks.
func (s *Session) Wake() {
	if !s.pump.Started() {
		return // Serve writes what is queued once it begins
	}
	if !s.writable {
		s.pump.Kick()
		return
	}
	s.pump.Direct(s.tryQueued)
}

// tryQueued writes what is queued without waiting and reports whether
// nothing is left to write.
func (s *Session) tryQueued() bool {
	if !s.wmu.TryLock() {
		return false // an answer or a ping is being written
	}
	defer s.wmu.Unlock()
	if s.closing {
		return true
	}
	c := s.conn
	if !c.mu.TryLock() {
		return false // the read loop writes a pong
	}
	defer c.mu.Unlock()
	if len(c.pending) > 0 {
		return false
	}
	s.direct, c.nonblock = true, true
	err := s.sendQueued()
	s.direct, c.nonblock = false, false
	if err != nil {
		s.failLocked() // the read loop finishes up
		return true
	}
	return len(c.pending) == 0
}

// drainOnce writes what is queued and reports how many messages it took.
// A failed write closes the connection; the read loop then ends and
// finishes up.
func (s *Session) drainOnce() (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closing {
		return 0, net.ErrClosed
	}
	if err := s.conn.flushPending(); err != nil {
		s.failLocked()
		return 0, err
	}
	if err := s.sendQueued(); err != nil {
		s.failLocked()
		return int(s.lastBatch), err
	}
	return int(s.lastBatch), nil
}

// Ended is the subscription's OnEnd hook: the hub ended it (too slow,
// shutdown, reload, hub closed). It sends the close frame, and on
// shutdown it closes the connection after grace if the client has not
// answered by then or a write to it is stuck.
func (s *Session) Ended(reason error) {
	s.endOnce.Do(func() {
		code, text := CloseGoingAway, "server going away"
		if errors.Is(reason, hub.ErrSlow) {
			code, text = ClosePolicy, "too slow"
		} else {
			time.AfterFunc(closeWait, func() { _ = s.c.Close() })
		}
		go s.sendClose(code, text)
	})
}

// failLocked ends the session at once: nothing more is written, and
// closing the connection ends the read loop, which finishes up. Every
// failed write and failed start ends this way. Call it with s.wmu held.
func (s *Session) failLocked() {
	s.closing = true
	_ = s.c.Close()
}

// sendClose starts the close handshake; the read loop reads the answer
// and finishes up.
func (s *Session) sendClose(code int, text string) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closing {
		return
	}
	if _, err := s.conn.write(closeFrame(code, text), closeWait); err != nil {
		s.failLocked()
		return
	}
	s.closing = true
	// A client that never answers must not keep the read loop.
	time.AfterFunc(closeWait, func() {
		if !s.readDone.Load() {
			_ = s.c.Close()
		}
	})
}

// sendPing sends a ping when one is due. Where no goroutine waits in a
// read with a deadline (the connection waits in the poller), it also
// ends a session whose client was silent for two intervals.
func (s *Session) sendPing() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closing {
		return
	}
	now := time.Now()
	next := s.opts.Ping
	if s.polled {
		deadline := time.Unix(0, s.lastRead.Load()).Add(2 * s.opts.Ping)
		if !now.Before(deadline) {
			// The reader, woken by the shutdown (or finding EOF if it
			// runs now), ends the session. If the connection is
			// closed already, its end is under way.
			s.noPong.Store(true)
			s.conn.waiter.Shutdown(false)
			return
		}
		if now.Before(s.nextPing) {
			s.ping.Reset(earliest(s.nextPing, deadline).Sub(now))
			return
		}
		s.nextPing = now.Add(s.opts.Ping)
		next = earliest(s.nextPing, deadline).Sub(now)
	}
	if _, err := s.conn.Write(pingFrame); err != nil {
		s.failLocked()
		return
	}
	s.ping.Reset(next)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// finish closes the connection once the read loop has ended: it answers
// a close from the client with the same code, says why if the client
// stopped answering pings, and closes.
func (s *Session) finish(readErr error) {
	s.wmu.Lock()
	if !s.closing {
		s.closing = true
		var ce *websocket.CloseError
		code, text := 0, ""
		switch {
		case errors.As(readErr, &ce):
			code = ce.Code
			if code == websocket.CloseNoStatusReceived {
				code = CloseNormal
			}
		case errors.Is(readErr, errNoPong):
			code, text = CloseGoingAway, "no pong"
		case errors.Is(readErr, errNotUTF8):
			code, text = CloseInvalidData, "text frame is not UTF-8"
		}
		// On ErrReadLimit gorilla has sent 1009 already.
		if code != 0 {
			_, _ = s.conn.write(closeFrame(code, text), closeWait)
		}
	}
	s.wmu.Unlock()
	s.conn.lingerClose(closeWait)
}

var pingFrame = appendFrame(nil, opPing, nil)

// begin sends the start of a subscription: a reset if the cursor was
// lost, then the replay merged in ID order with what is already queued,
// then, for a subscribe frame, the ack.
func (s *Session) begin(start hub.Start, last string, ack []byte) error {
	s.frames = s.frames[:0]
	if start.Reset && s.opts.Format == JSON {
		s.frames = append(s.frames, appendFrame(nil, opText, ResetFrame(last, start.Head)))
	}
	replay := start.Replay
	if len(replay) > 0 {
		// Whatever is queued now is older than the head of this start,
		// or a live message of the new topics: send it in order with
		// the replay.
		for _, m := range s.pump.Subscription().Take(nil) {
			if s.wanted(m) {
				replay = append(replay, m)
			}
		}
		slices.SortFunc(replay, func(a, b *hub.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	pending := 0
	for _, m := range replay {
		s.frames = append(s.frames, s.encode(m))
		pending++
		if len(s.frames) >= maxFramesPerWrite {
			if err := s.flush(); err != nil {
				return err
			}
			s.sent(pending)
			pending = 0
		}
	}
	if ack != nil {
		s.frames = append(s.frames, appendFrame(nil, opText, ack))
	}
	if err := s.flush(); err != nil {
		return err
	}
	s.sent(pending)
	return nil
}

// sent counts n messages written. Call it with s.wmu held.
func (s *Session) sent(n int) {
	s.msgs += int64(n)
	s.pump.Subscription().Sent(n)
}

// Written reports the bytes and messages sent so far.
func (s *Session) Written() (bytes, messages int64) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.conn.mu.Lock()
	defer s.conn.mu.Unlock()
	return s.conn.written, s.msgs
}

// encode returns m's frame.
func (s *Session) encode(m *hub.Message) []byte {
	if s.raw {
		return EncodeRaw(m)
	}
	return EncodeJSON(m)
}

// wanted reports whether a queued message is still to be sent.
func (s *Session) wanted(m *hub.Message) bool {
	since, ok := s.sinceOf(m.Topic)
	return ok && m.Seq > since
}

// sendQueued writes everything queued, up to maxFramesPerWrite frames a write.
func (s *Session) sendQueued() error {
	batch := s.batches.Take(s.pump.Subscription())
	s.lastBatch = int32(len(batch))
	defer s.batches.Done(batch)
	for i := 0; i < len(batch); {
		n := 0
		for ; i < len(batch) && len(s.frames) < maxFramesPerWrite; i++ {
			if m := batch[i]; s.wanted(m) {
				s.frames = append(s.frames, s.encode(m))
				n++
			}
		}
		if err := s.flush(); err != nil {
			return err
		}
		s.sent(n)
	}
	return nil
}

func (s *Session) flush() error {
	if len(s.frames) == 0 {
		return nil
	}
	var err error
	if s.direct {
		err = s.conn.writeFramesLocked(s.frames)
	} else {
		err = s.conn.writeFrames(s.frames)
	}
	clear(s.frames)
	s.frames = s.frames[:0]
	if cap(s.frames) > keepFrames {
		s.frames = s.framesIn[:0]
	}
	return err
}

func (s *Session) sendJSON(b []byte) error {
	return s.conn.writeFrames([][]byte{appendFrame(nil, opText, b)})
}

// answer sends an ack or error frame, unless the session is closing. It
// reports false once the connection has failed.
func (s *Session) answer(b []byte) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closing {
		return true
	}
	if err := s.sendJSON(b); err != nil {
		s.failLocked()
		return false
	}
	return true
}

// subscription carries out a subscribe or unsubscribe frame.
func (s *Session) subscription(f *Frame) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closing {
		return true
	}
	var err error
	switch f.Type {
	case TypeUnsubscribe:
		s.pump.Subscription().Remove(f.Topics)
		for _, t := range f.Topics {
			s.since = slices.DeleteFunc(s.since, func(ts topicSince) bool { return ts.topic == t })
		}
		err = s.sendJSON(AckFrame(f.Ref, ""))
	case TypeSubscribe:
		var add []string
		for _, t := range f.Topics {
			if _, ok := s.sinceOf(t); !ok && !slices.Contains(add, t) {
				add = append(add, t)
			}
		}
		switch {
		case len(add) == 0:
			// Nothing new: no replay, no reset.
			err = s.sendJSON(AckFrame(f.Ref, ""))
		case len(s.since)+len(add) > s.opts.MaxTopics:
			err = s.sendJSON(ErrorFrame(f.Ref, fmt.Errorf("more than %d topics on one connection", s.opts.MaxTopics)))
		default:
			start, aerr := s.pump.Subscription().Add(add, f.LastEventID)
			if aerr != nil {
				err = s.sendJSON(ErrorFrame(f.Ref, aerr))
				break
			}
			for _, t := range add {
				s.setSince(t, start.HeadSeq)
			}
			err = s.begin(start, f.LastEventID, AckFrame(f.Ref, ""))
		}
	}
	if err != nil {
		s.failLocked()
		return false
	}
	return true
}

// errNoPong ends a session whose client stopped answering pings.
var errNoPong = errors.New("no pong from the client")

// errNotUTF8 ends a session whose client sent a text frame that is not
// UTF-8 (RFC 6455, section 8.1).
var errNotUTF8 = errors.New("text frame is not UTF-8")

// errPanic ends a session whose reading panicked.
var errPanic = errors.New("panic reading from the client")

// setupRead prepares gorilla's reader and the read state.
func (s *Session) setupRead() {
	ws := s.c.ws
	ws.SetReadLimit(s.opts.MaxMessageSize)
	s.alive()
	ws.SetPongHandler(func(string) error { s.alive(); return nil })
	// finish answers a close; gorilla must not answer it too.
	ws.SetCloseHandler(func(int, string) error { return nil })
	burst := s.opts.FrameBurst
	if burst <= 0 {
		burst = FrameBurst
	}
	s.tokens, s.lastFrame = float64(burst), time.Now()
}

// alive notes that the client was heard from: it has two ping intervals
// to be heard from again.
func (s *Session) alive() {
	if s.opts.Ping > 0 {
		now := time.Now()
		s.lastRead.Store(now.UnixNano())
		_ = s.c.ws.SetReadDeadline(now.Add(2 * s.opts.Ping))
	}
}

// readLoop reads the client's frames, waiting for them, until the
// connection ends, and returns why it ended.
func (s *Session) readLoop() error {
	for {
		err := s.conn.waitReadable()
		var typ int
		var data []byte
		if err == nil {
			typ, data, err = s.c.ws.ReadMessage()
		}
		if err := s.serveMessage(typ, data, err); err != nil {
			return err
		}
	}
}

// serveMessage serves what gorilla's ReadMessage returned, and returns
// why the session must end, or nil.
func (s *Session) serveMessage(typ int, data []byte, err error) error {
	if err != nil {
		var ne interface{ Timeout() bool }
		if s.noPong.Load() || errors.As(err, &ne) && ne.Timeout() {
			err = errNoPong
		}
		return err
	}
	s.alive()
	if typ == websocket.TextMessage && !utf8.Valid(data) {
		return errNotUTF8
	}
	if s.opts.Format == Raw {
		return nil
	}
	rate, burst := s.opts.FrameRate, s.opts.FrameBurst
	if rate <= 0 {
		rate = FrameRate
	}
	if burst <= 0 {
		burst = FrameBurst
	}
	now := time.Now()
	s.tokens = min(float64(burst), s.tokens+now.Sub(s.lastFrame).Seconds()*float64(rate))
	s.lastFrame = now
	if s.tokens < 1 {
		f, ferr := DecodeFrame(data, s.opts.MaxTopics)
		var ref json.RawMessage
		if ferr == nil {
			ref = f.Ref
		} else {
			ref = ferr.(*FrameError).Ref
		}
		if !s.answer(ErrorFrame(ref, fmt.Errorf("more than %d frames a second; frame dropped", rate))) {
			return net.ErrClosed
		}
		return nil
	}
	s.tokens--
	if !s.serveFrame(typ, data) {
		return net.ErrClosed
	}
	return nil
}

// serveFrame carries out one client frame, or answers why not. It
// reports false once the connection has failed.
func (s *Session) serveFrame(typ int, data []byte) bool {
	s.wmu.Lock()
	closing := s.closing
	s.wmu.Unlock()
	if closing {
		return true // the close handshake has begun: act on nothing
	}
	if typ != websocket.TextMessage {
		return s.answer(ErrorFrame(nil, errors.New("binary frame refused: frames are JSON text")))
	}
	f, err := DecodeFrame(data, s.opts.MaxTopics)
	if err != nil {
		return s.answer(ErrorFrame(err.(*FrameError).Ref, err))
	}
	switch f.Type {
	case TypeSubscribe:
		for _, t := range f.Topics {
			if !s.opts.CanSubscribe(t) {
				return s.answer(ErrorFrame(f.Ref, fmt.Errorf("topic %q may not be subscribed to here", t)))
			}
		}
		return s.subscription(f)
	case TypeUnsubscribe:
		return s.subscription(f)
	case TypePublish:
		if !s.opts.CanPublish(f.Topic) {
			return s.answer(ErrorFrame(f.Ref, fmt.Errorf("topic %q may not be published to here", f.Topic)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		id, err := s.opts.Publish(ctx, &hub.Message{Topic: f.Topic, Event: f.Event, Data: f.Data})
		cancel()
		if err != nil {
			return s.answer(ErrorFrame(f.Ref, err))
		}
		return s.answer(AckFrame(f.Ref, id))
	}
	return true
}
