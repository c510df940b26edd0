package hub

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxTopicLen is the longest topic name, in bytes.
const MaxTopicLen = 1024

// MaxEventLen is the longest event type, in bytes.
const MaxEventLen = 256

// ReservedEventPrefix starts the event types that the hub itself sends
// (push.reset); publishers may not use it.
const ReservedEventPrefix = "push."

// Message is one published payload. Topic, Event and Data are set by the
// publisher; the hub sets everything else. Once published, a Message is
// shared read-only by every subscriber.
type Message struct {
	Topic string
	Event string
	Data  []byte

	// Seq is the position of the message in the hub's single sequence,
	// set by the broker.
	Seq uint64
	// Time is when the message was published, set by the hub.
	Time time.Time

	id       string
	retained bool

	// acctMu guards built, a bit for each encoding slot whose encoding
	// has been built, and acct, the hub's count that their sizes are
	// added to while the message is retained.
	built  uint8
	acctMu sync.Mutex
	acct   *atomic.Int64

	enc [maxEncodings]encoding
}

// ID returns the message's ID. It is set when the message is delivered.
func (m *Message) ID() string { return m.id }

// size is what the message counts against history_max_bytes, besides its
// encodings: its payload, its event type and its bookkeeping. Its topic's
// name is shared with the topic, which counts it (topicOverhead).
func (m *Message) size() int64 {
	return int64(cap(m.Data)+len(m.Event)) + messageOverhead
}

// messageOverhead is what a retained message costs besides its payload:
// the Message (256 bytes), its ID string, and its places in
// the hub's and its topic's queues. Measured by TestMemoryHeldToCap.
const messageOverhead = 320

// topicOverhead is what a topic with history costs besides its name: the
// topic, its entry in the hub's map, its history queue. Measured by
// TestMemoryHeldToCap.
const topicOverhead = 192

// countEncodings starts adding the encodings of m, those built already
// and those to come, to acct.
func (m *Message) countEncodings(acct *atomic.Int64) {
	m.acctMu.Lock()
	m.acct = acct
	// Usually nothing is built yet: then the count, which every
	// publish's core would write, is left alone.
	if n := m.builtBytesLocked(); n != 0 {
		acct.Add(n)
	}
	m.acctMu.Unlock()
}

// uncountEncodings undoes countEncodings.
func (m *Message) uncountEncodings() {
	m.acctMu.Lock()
	if m.acct != nil {
		if n := m.builtBytesLocked(); n != 0 {
			m.acct.Add(-n)
		}
		m.acct = nil
	}
	m.acctMu.Unlock()
}

// builtBytesLocked is the size of the encodings built so far.
func (m *Message) builtBytesLocked() int64 {
	var n int64
	for i := range m.enc {
		if m.built&(1<<i) != 0 {
			n += encodedSize(m.enc[i].v)
		}
	}
	return n
}

// encodedSize is how many bytes an encoding holds.
func encodedSize(v any) int64 {
	switch v := v.(type) {
	case []byte:
		return int64(cap(v))
	case interface{ Size() int }:
		return int64(v.Size())
	}
	return 0
}

// maxEncodings is how many transports can cache an encoding on a message.
const maxEncodings = 4

type encoding struct {
	once sync.Once
	v    any
}

// Encoding is a slot on every message where one transport caches its
// encoding of that message, so that it is built once per message and not
// once per subscriber.
type Encoding int

var (
	encMu   sync.Mutex
	encNext Encoding
)

// NewEncoding reserves an encoding slot. Call it once, from a package
// variable initializer.
func NewEncoding() Encoding {
	encMu.Lock()
	defer encMu.Unlock()
	if encNext >= maxEncodings {
		panic("hub: too many message encodings")
	}
	e := encNext
	encNext++
	return e
}

// Encoded returns the encoding of m in slot e, calling build the first
// time only. build must not retain m beyond its return. An encoding that
// is a []byte, or has a Size() int method, counts against the history's
// bytes while m is retained.
func (m *Message) Encoded(e Encoding, build func(*Message) any) any {
	slot := &m.enc[e]
	slot.once.Do(func() {
		slot.v = build(m)
		// A retained message's encodings count against
		// history_max_bytes like its payload.
		m.acctMu.Lock()
		m.built |= 1 << e
		if m.acct != nil {
			m.acct.Add(encodedSize(slot.v))
		}
		m.acctMu.Unlock()
	})
	return slot.v
}

// ErrInvalid is what every error about invalid input (a topic, an event
// type, a message's size, a JSON body) matches with errors.Is, so that a
// caller can tell the client's mistakes from the hub's troubles.
var ErrInvalid = errors.New("invalid input")

// inputError is an error about invalid input: it matches ErrInvalid.
type inputError string

func (e inputError) Error() string { return string(e) }

func (inputError) Is(target error) bool { return target == ErrInvalid }

// InputError returns an error with message msg that matches ErrInvalid.
func InputError(msg string) error { return inputError(msg) }

// Errors returned for invalid messages and subscriptions. All but
// ErrClosed match ErrInvalid.
var (
	ErrTopicEmpty    = InputError("topic is empty")
	ErrTopicTooLong  = InputError(fmt.Sprintf("topic is longer than %d bytes", MaxTopicLen))
	ErrTopicUTF8     = InputError("topic is not valid UTF-8")
	ErrTopicChar     = InputError("topic contains a space, control or invisible (Unicode format) character")
	ErrTopicSegment  = InputError("topic has an empty, '.' or '..' segment")
	ErrEventInvalid  = InputError("event type contains CR, LF or NUL, is not valid UTF-8, or is too long")
	ErrEventReserved = InputError(fmt.Sprintf("event types starting with %q are reserved", ReservedEventPrefix))
	ErrTooLarge      = InputError("message is larger than max_message_size")
	ErrClosed        = errors.New("hub is closed")
)

// ValidTopic reports why topic is not a valid topic name, or nil: a topic
// is 1 to MaxTopicLen bytes of valid UTF-8, holds no whitespace, control
// or Unicode format (Cf) character, and none of its `/`-separated
// segments is empty, `.` or `..`, so that no path cleaning can turn one
// topic into another.
func ValidTopic(topic string) error {
	if topic == "" {
		return ErrTopicEmpty
	}
	if len(topic) > MaxTopicLen {
		return ErrTopicTooLong
	}
	if !utf8.ValidString(topic) {
		return ErrTopicUTF8
	}
	for _, r := range topic {
		if unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) {
			return ErrTopicChar
		}
	}
	for seg := range strings.SplitSeq(topic, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return ErrTopicSegment
		}
	}
	return nil
}

// ValidEvent reports why event is not a valid event type, or nil. The
// empty event type is valid and means "no type".
func ValidEvent(event string) error {
	if len(event) > MaxEventLen || !utf8.ValidString(event) || strings.ContainsAny(event, "\r\n\x00") {
		return ErrEventInvalid
	}
	if strings.HasPrefix(event, ReservedEventPrefix) {
		return ErrEventReserved
	}
	return nil
}

// formatID makes the ID of sequence number seq in epoch.
func formatID(epoch string, seq uint64) string {
	return epoch + "-" + strconv.FormatUint(seq, 10)
}

// parseID splits an ID into its epoch and sequence number.
func parseID(id string) (epoch string, seq uint64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return id[:i], seq, true
}
