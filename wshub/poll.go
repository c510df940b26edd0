package wshub

import (
	"bufio"
	"encoding/binary"
	"errors"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/caddy-push/push/internal/poll"
)

// While a connection is idle its session has no goroutine: the socket
// waits in the poller (package poll), armed for one event. When the
// client sends something, or leaves, the poller starts readReady, which
// reads what the socket holds without waiting, serves every whole frame
// and arms the poller again, or ends the session.
//
// gorilla's reader waits for a whole message and handles control frames
// inside that wait, so it is only called once the bytes it needs have
// arrived: readReady stages what the socket holds in conn.early (which
// conn.Read returns first), looks at the frames staged, answers pings and
// takes pongs itself, and hands a whole data or close frame, or a frame
// too large to stage, to gorilla.

// stageMax is the largest frame staged before gorilla reads it; gorilla
// waits for the rest of a larger one, within the read deadline.
const stageMax = 4 << 10

// stageRead is how much one read from the socket may stage.
const stageRead = 512

// What the staged bytes begin with.
const (
	scanMore    = iota // an incomplete frame, or nothing
	scanPing           // a whole ping from the client
	scanPong           // a whole pong
	scanGorilla        // something gorilla reads at once (or waits for, if large)
)

// staged returns the bytes read from the socket and not yet given to
// gorilla: those in its reader, then those in early.
func (c *conn) staged() (head, tail []byte) {
	head, _ = c.br.Peek(c.br.Buffered())
	return head, c.early
}

// scanFrame reports what the staged bytes begin with and, for a ping or
// pong, the frame's length, the offset of its payload and its mask.
func scanFrame(head, tail []byte, failed bool) (kind, n, payload int, mask [4]byte) {
	total := len(head) + len(tail)
	at := func(i int) byte {
		if i < len(head) {
			return head[i]
		}
		return tail[i-len(head)]
	}
	more := scanMore
	if failed {
		more = scanGorilla // gorilla reads what is staged, then the error
	}
	if total < 2 {
		return more, 0, 0, mask
	}
	b0, b1 := at(0), at(1)
	hdr := 2
	switch b1 & 0x7f {
	case 126:
		hdr += 2
	case 127:
		hdr += 8
	}
	masked := b1&0x80 != 0
	if masked {
		hdr += 4
	}
	if total < hdr {
		return more, 0, 0, mask
	}
	var size uint64
	switch l := b1 & 0x7f; l {
	case 126:
		size = uint64(binary.BigEndian.Uint16([]byte{at(2), at(3)}))
	case 127:
		var b [8]byte
		for i := range b {
			b[i] = at(2 + i)
		}
		size = binary.BigEndian.Uint64(b[:])
	default:
		size = uint64(l)
	}
	op := b0 & 0xf
	control := (op == opPing || op == opPong) && b0&0xf0 == 0x80 && masked && size <= 125
	if !control {
		if size > stageMax || uint64(total-hdr) >= size {
			return scanGorilla, 0, 0, mask
		}
		return more, 0, 0, mask
	}
	if uint64(total-hdr) < size {
		return more, 0, 0, mask
	}
	for i := range mask {
		mask[i] = at(hdr - 4 + i)
	}
	kind = scanPong
	if op == opPing {
		kind = scanPing
	}
	return kind, hdr + int(size), hdr, mask
}

// take removes the first n staged bytes and returns them.
func (c *conn) take(n int) []byte {
	out := make([]byte, n)
	k := min(n, c.br.Buffered())
	head, _ := c.br.Peek(k)
	copy(out, head)
	_, _ = c.br.Discard(k)
	copy(out[k:], c.early[:n-k])
	c.early = c.early[n-k:]
	if len(c.early) == 0 {
		c.early = nil
	}
	return out
}

// stage reads what the socket holds now into early. It returns
// poll.ErrWouldBlock if there was nothing; a read error is kept in rerr,
// for gorilla to read after the staged bytes.
func (c *conn) stage() error {
	c.early = slices.Grow(c.early, stageRead)
	n, err := c.waiter.TryRead(c.early[len(c.early) : len(c.early)+stageRead])
	c.early = c.early[:len(c.early)+n]
	if len(c.early) == 0 {
		c.early = nil
	}
	if err != nil && !errors.Is(err, poll.ErrWouldBlock) {
		c.rerr = err
	}
	return err
}

// readBuffers holds the buffers of gorilla's readers while their
// connections wait in the poller, so that an idle connection keeps none.
var readBuffers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// park gives the buffer of gorilla's reader back while the connection
// waits, unless it holds the start of a frame. The reader stays where
// gorilla has it, empty until unpark.
func (c *conn) park() {
	if c.br.Buffered() > 0 || c.br.Size() == 0 {
		return
	}
	r := new(bufio.Reader)
	*r = *c.br
	readBuffers.Put(r)
	*c.br = bufio.Reader{}
}

// unpark gives gorilla's reader a buffer again.
func (c *conn) unpark() {
	if c.br.Size() > 0 {
		return
	}
	r := readBuffers.Get().(*bufio.Reader)
	r.Reset(c)
	*c.br = *r
}

// testHookBeforeArm, if set, runs when a reader has served what the
// client sent and is about to arm the poller.
var testHookBeforeArm func(*Session)

// readReady reads and serves what the client sent, then arms the poller
// again or ends the session. It runs on a goroutine the poller started,
// or on Serve's for the first time.
func (s *Session) readReady() {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic reading from a WebSocket", zap.Any("panic", v), zap.Stack("stack"))
			if s.ending {
				_ = s.conn.Close()
				return
			}
			s.end(errPanic)
		}
	}()
	s.conn.unpark()
	err := s.readStaged()
	if err == nil {
		if testHookBeforeArm != nil {
			testHookBeforeArm(s)
		}
		s.conn.park()
		if err = s.conn.waiter.Arm(); err == nil {
			return // nothing may touch s after Arm: another goroutine may have it
		}
		s.conn.unpark()
		if errors.Is(err, poll.ErrUnavailable) {
			// The poller cannot take the connection: wait in gorilla's
			// reader, as where there is no poller.
			err = s.readLoop()
		}
	}
	s.end(err)
}

// readStaged serves every whole frame the client has sent, reading what
// the socket holds without waiting for more. It returns nil once nothing
// whole is left, or why the session must end.
func (s *Session) readStaged() error {
	c := s.conn
	drained := false
	for {
		if s.noPong.Load() {
			return errNoPong
		}
		head, tail := c.staged()
		kind, n, off, mask := scanFrame(head, tail, c.rerr != nil)
		switch kind {
		case scanMore:
			if drained {
				return nil
			}
			if err := c.stage(); errors.Is(err, poll.ErrWouldBlock) {
				drained = true
			}
		case scanPong:
			c.take(n)
			s.alive()
		case scanPing:
			f := c.take(n)
			p := f[off:]
			for i := range p {
				p[i] ^= mask[i%4]
			}
			if err := s.pong(p); err != nil {
				return err
			}
		default:
			typ, data, err := s.c.ws.ReadMessage()
			if err := s.serveMessage(typ, data, err); err != nil {
				return err
			}
		}
	}
}

// pong answers a client's ping, unless the session is closing.
func (s *Session) pong(payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closing {
		return nil
	}
	_, err := s.conn.Write(appendFrame(nil, opPong, payload))
	return err
}
