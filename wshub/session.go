package wshub

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddy-push/push/hub"
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
	CloseNormal    = websocket.CloseNormalClosure
	CloseGoingAway = websocket.CloseGoingAway
	ClosePolicy    = websocket.ClosePolicyViolation
	CloseTooBig    = websocket.CloseMessageTooBig
)

// Limits on what one client may do.
const (
	// FrameRate is how many frames a second a client may send, on
	// average; FrameBurst how many at once.
	FrameRate  = 100
	FrameBurst = 200
	// maxBatch bounds the frames written in one system call.
	maxBatch = 256
	// ctrlQueue is how many answers (acks, errors) may wait for the
	// write loop; the read loop waits when it is full, so a client that
	// sends faster than it reads is slowed down by TCP.
	ctrlQueue = 32
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

// ctrl is work the read loop hands to the write loop: a subscribe or
// unsubscribe frame to carry out, or a frame to send.
type ctrl struct {
	frame *Frame        // subscribe or unsubscribe
	done  chan struct{} // closed once frame is carried out
	out   []byte        // a JSON frame to send
}

// session is one connection's state. The write loop runs in the handler's
// goroutine and owns the subscription's topic set; the read loop runs in
// a goroutine of its own.
type session struct {
	c    *Conn
	sub  *hub.Subscription
	opts Options
	enc  func(*hub.Message) []byte
	log  *zap.Logger

	ctrl       chan ctrl
	readDone   chan struct{}
	readErr    error         // set before readDone is closed
	writerDone chan struct{} // closed once frames are no longer served
	stopOnce   sync.Once

	// since holds, for each subscribed topic, the sequence number after
	// which its messages are sent: queued messages at or below it were
	// either replayed already or queued before an unsubscribe.
	since  map[string]uint64
	batch  []*hub.Message // taken from the queue
	frames [][]byte       // about to be written
}

// Serve streams sub to the connection, starting with start (the replay of
// a subscription from cursor last), and serves the client's frames until
// either side ends it. It closes the connection and returns why it
// ended.
func Serve(c *Conn, sub *hub.Subscription, start hub.Start, last string, opts Options) error {
	s := &session{
		c:          c,
		sub:        sub,
		opts:       opts,
		enc:        EncodeJSON,
		log:        opts.Logger,
		ctrl:       make(chan ctrl, ctrlQueue),
		readDone:   make(chan struct{}),
		writerDone: make(chan struct{}),
		since:      make(map[string]uint64),
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if opts.Format == Raw {
		s.enc = EncodeRaw
	}
	for _, t := range sub.Topics() {
		s.since[t] = start.HeadSeq
	}
	go s.readLoop()
	err := s.writeLoop(start, last)
	s.stopFrames()
	<-s.readDone
	return err
}

// errClientClosed ends a session the client closed.
var errClientClosed = errors.New("client closed the connection")

func (s *session) writeLoop(start hub.Start, last string) error {
	if err := s.begin(start, last, nil); err != nil {
		return s.abort(err)
	}
	var ping <-chan time.Time
	if s.opts.Ping > 0 {
		t := time.NewTicker(s.opts.Ping)
		defer t.Stop()
		ping = t.C
	}
	for {
		// An ended subscription wins over what is still queued.
		select {
		case <-s.sub.Done():
			return s.ended()
		default:
		}
		select {
		case <-s.sub.Ready():
			// After gorilla has closed (1009, a protocol error) no data
			// frame may follow.
			select {
			case <-s.readDone:
				return s.readEnded()
			default:
			}
			if err := s.sendQueued(); err != nil {
				return s.abort(err)
			}
		case c := <-s.ctrl:
			if err := s.handle(c); err != nil {
				return s.abort(err)
			}
		case <-ping:
			if err := s.c.conn.writeFrames([][]byte{pingFrame}); err != nil {
				return s.abort(err)
			}
		case <-s.readDone:
			return s.readEnded()
		case <-s.sub.Done():
			return s.ended()
		}
	}
}

var pingFrame = appendFrame(nil, opPing, nil)

// begin sends the start of a subscription: a reset if the cursor was
// lost, then the replay merged in ID order with what is already queued,
// then, for a subscribe frame, the ack.
func (s *session) begin(start hub.Start, last string, ack []byte) error {
	s.frames = s.frames[:0]
	if start.Reset && s.opts.Format == JSON {
		s.frames = append(s.frames, appendFrame(nil, opText, ResetFrame(last, start.Head)))
	}
	replay := start.Replay
	if len(replay) > 0 {
		// Whatever is queued now is older than the head of this start,
		// or a live message of the new topics: send it in order with
		// the replay.
		for _, m := range s.sub.Take(nil) {
			if s.wanted(m) {
				replay = append(replay, m)
			}
		}
		slices.SortFunc(replay, func(a, b *hub.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	pending := 0
	for _, m := range replay {
		s.frames = append(s.frames, s.enc(m))
		pending++
		if len(s.frames) >= maxBatch {
			if err := s.flush(); err != nil {
				return err
			}
			s.sub.Sent(pending)
			pending = 0
		}
	}
	if ack != nil {
		s.frames = append(s.frames, appendFrame(nil, opText, ack))
	}
	if err := s.flush(); err != nil {
		return err
	}
	s.sub.Sent(pending)
	return nil
}

// wanted reports whether a queued message is still to be sent.
func (s *session) wanted(m *hub.Message) bool {
	since, ok := s.since[m.Topic]
	return ok && m.Seq > since
}

// sendQueued writes everything queued, up to maxBatch frames a write.
func (s *session) sendQueued() error {
	s.batch = s.sub.Take(s.batch)
	defer func() {
		clear(s.batch)
		s.batch = s.batch[:0]
		if cap(s.batch) > keepFrames {
			s.batch = nil
		}
	}()
	for i := 0; i < len(s.batch); {
		n := 0
		for ; i < len(s.batch) && len(s.frames) < maxBatch; i++ {
			if m := s.batch[i]; s.wanted(m) {
				s.frames = append(s.frames, s.enc(m))
				n++
			}
		}
		if err := s.flush(); err != nil {
			return err
		}
		s.sub.Sent(n)
	}
	return nil
}

func (s *session) flush() error {
	if len(s.frames) == 0 {
		return nil
	}
	err := s.c.conn.writeFrames(s.frames)
	clear(s.frames)
	s.frames = s.frames[:0]
	if cap(s.frames) > keepFrames {
		s.frames = nil
	}
	return err
}

func (s *session) sendJSON(b []byte) error {
	return s.c.conn.writeFrames([][]byte{appendFrame(nil, opText, b)})
}

// handle carries out work from the read loop.
func (s *session) handle(c ctrl) error {
	if c.frame == nil {
		return s.sendJSON(c.out)
	}
	defer close(c.done)
	f := c.frame
	switch f.Type {
	case TypeUnsubscribe:
		s.sub.Remove(f.Topics)
		for _, t := range f.Topics {
			delete(s.since, t)
		}
		return s.sendJSON(AckFrame(f.Ref, ""))
	case TypeSubscribe:
		var add []string
		for _, t := range f.Topics {
			if _, ok := s.since[t]; !ok && !slices.Contains(add, t) {
				add = append(add, t)
			}
		}
		if len(add) == 0 {
			// Nothing new: no replay, no reset.
			return s.sendJSON(AckFrame(f.Ref, ""))
		}
		if len(s.since)+len(add) > s.opts.MaxTopics {
			return s.sendJSON(ErrorFrame(f.Ref, fmt.Errorf("more than %d topics on one connection", s.opts.MaxTopics)))
		}
		start, err := s.sub.Add(add, f.LastEventID)
		if err != nil {
			return s.sendJSON(ErrorFrame(f.Ref, err))
		}
		for _, t := range add {
			s.since[t] = start.HeadSeq
		}
		return s.begin(start, f.LastEventID, AckFrame(f.Ref, ""))
	}
	return nil
}

// ended closes the connection of a subscription the hub ended.
func (s *session) ended() error {
	err := s.sub.Err()
	code, reason := CloseGoingAway, "server going away"
	if errors.Is(err, hub.ErrSlow) {
		code, reason = ClosePolicy, "too slow"
	}
	s.close(code, reason)
	return err
}

// readEnded finishes a session whose client left or broke the protocol.
func (s *session) readEnded() error {
	err := s.readErr
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		// Answer the client's close with its code.
		code := ce.Code
		if code == websocket.CloseNoStatusReceived {
			code = CloseNormal
		}
		s.close(code, "")
		return errClientClosed
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has sent 1009 already.
		s.close(0, "")
	case errors.Is(err, errNoPong):
		s.close(CloseGoingAway, "no pong")
	default:
		s.close(0, "")
	}
	return err
}

// abort ends a session whose connection failed.
func (s *session) abort(err error) error {
	s.stopFrames()
	_ = s.c.Close()
	return err
}

// stopFrames tells the read loop that no more frames will be carried out
// or answered: the session is closing.
func (s *session) stopFrames() {
	s.stopOnce.Do(func() { close(s.writerDone) })
}

// close sends a close frame with code (none if 0), waits for the client
// to answer or leave, and closes the connection.
func (s *session) close(code int, reason string) {
	s.stopFrames()
	if code != 0 {
		if _, err := s.c.conn.write(closeFrame(code, reason), closeWait); err != nil {
			_ = s.c.Close()
			return
		}
	}
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-s.readDone:
		s.c.conn.lingerClose(closeWait)
	case <-t.C:
		_ = s.c.Close()
	}
}

// errNoPong ends a session whose client stopped answering pings.
var errNoPong = errors.New("no pong from the client")

// readLoop reads the client's frames until the connection ends.
func (s *session) readLoop() {
	defer close(s.readDone)
	ws := s.c.ws
	ws.SetReadLimit(s.opts.MaxMessageSize)
	alive := func() {
		if s.opts.Ping > 0 {
			_ = ws.SetReadDeadline(time.Now().Add(2 * s.opts.Ping))
		}
	}
	alive()
	ws.SetPongHandler(func(string) error { alive(); return nil })
	// The write loop answers a close; gorilla must not answer it too.
	ws.SetCloseHandler(func(int, string) error { return nil })

	tokens, last := float64(FrameBurst), time.Now()
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				err = errNoPong
			}
			s.readErr = err
			return
		}
		alive()
		if s.opts.Format == Raw {
			continue
		}
		now := time.Now()
		tokens = min(FrameBurst, tokens+now.Sub(last).Seconds()*FrameRate)
		last = now
		if tokens < 1 {
			f, ferr := DecodeFrame(data, s.opts.MaxTopics)
			var ref json.RawMessage
			if ferr == nil {
				ref = f.Ref
			} else {
				ref = ferr.(*FrameError).Ref
			}
			if !s.answer(ErrorFrame(ref, fmt.Errorf("more than %d frames a second; frame dropped", FrameRate))) {
				return
			}
			continue
		}
		tokens--
		if !s.serveFrame(typ, data) {
			return
		}
	}
}

// serveFrame carries out one client frame, or answers why not. It
// reports false once the write loop has ended.
func (s *session) serveFrame(typ int, data []byte) bool {
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
		return s.carryOut(f)
	case TypeUnsubscribe:
		return s.carryOut(f)
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

func (s *session) answer(b []byte) bool { return s.enqueue(ctrl{out: b}) }

// carryOut has the write loop carry out a subscribe or unsubscribe frame
// and waits for it, so that the client's next frame (a publish to the
// topic it just joined, say) sees its effect.
func (s *session) carryOut(f *Frame) bool {
	done := make(chan struct{})
	if !s.enqueue(ctrl{frame: f, done: done}) {
		return false
	}
	select {
	case <-done:
		return true
	case <-s.writerDone:
		return false
	}
}

func (s *session) enqueue(c ctrl) bool {
	select {
	case s.ctrl <- c:
		return true
	case <-s.writerDone:
		return false
	}
}
