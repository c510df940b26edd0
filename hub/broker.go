package hub

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"time"
)

// Broker carries published messages to every hub that shares it and
// decides their order. The memory broker serves one process; a broker
// backed by an external store lets several processes act as one hub.
type Broker interface {
	// Open starts the broker. From then on it calls r.Deliver for every
	// message published through any hub sharing it (this one included),
	// in sequence order, never concurrently, and r.Reset when it cannot.
	// It returns where the sequence stands: its epoch (IDs from another
	// epoch are foreign) and the last sequence number given out.
	Open(r Receiver) (Position, error)

	// Publish sets Seq on each message (consecutive and increasing, in
	// slice order) and hands them to every hub. Either all messages are
	// published or, with an error, none is. It returns the epoch the
	// sequence numbers belong to.
	Publish(ctx context.Context, msgs []*Message) (epoch string, err error)

	// Close stops the broker; r is not called after it returns.
	Close() error
}

// Position is a point in a broker's sequence.
type Position struct {
	Epoch string
	Seq   uint64
}

// Receiver is what a broker delivers to: a hub. Its methods are called
// from one goroutine at a time.
type Receiver interface {
	// Deliver hands over messages in sequence order. A message whose Seq
	// is not above the last one delivered is ignored.
	Deliver(msgs []*Message)
	// Reset says that messages up to to.Seq in epoch to.Epoch may never
	// be delivered (Redis lost them, or a new epoch began): the hub ends
	// every subscription, so that its subscribers resume and are told,
	// and continues from to.
	Reset(to Position)
}

// HistoryBroker is a Broker that keeps the history itself, shared by
// every hub on it. A hub keeps its own history as a cache and asks the
// broker for replay when its cache cannot serve a cursor: after it
// started, or after a Reset.
type HistoryBroker interface {
	Broker

	// SetLimits sets the history caps the broker enforces on publish.
	SetLimits(history int, ttl time.Duration, maxBytes int64)

	// Replay reads, in one consistent view, every retained message on
	// topics with a sequence number above after (all retained ones if
	// earliest), oldest first, and the broker's last sequence number.
	// It reports reset instead of messages if epoch is not the broker's
	// or a message of those topics after after is no longer retained.
	Replay(ctx context.Context, epoch string, topics []string, after uint64, earliest bool) (r BrokerReplay, err error)

	// HistoryStats describes the shared history.
	HistoryStats(ctx context.Context) (HistoryStats, error)
}

// HistoryStats describes the history a HistoryBroker keeps for every hub
// on it, as opposed to one hub's subscribers and cache.
type HistoryStats struct {
	Broker        string `json:"broker"`
	LastID        string `json:"last_id,omitempty"`
	Retained      int64  `json:"retained"`
	RetainedBytes int64  `json:"retained_bytes"`
	// Error says why the broker could not be asked; the rest is then
	// zero.
	Error string `json:"error,omitempty"`
}

// BrokerReplay is a HistoryBroker's answer to Replay.
type BrokerReplay struct {
	Messages []*Message
	Head     Position
	Reset    bool
}

// ErrBrokerUnavailable wraps the errors of a broker that cannot be
// reached: publishers are told to retry later.
var ErrBrokerUnavailable = errors.New("broker unavailable")

// MemoryBroker is the in-process broker: sequence numbers come from a
// counter, delivery is a direct call. Its epoch is new for every process,
// so IDs from before a restart are recognized as foreign.
type MemoryBroker struct {
	mu    sync.Mutex
	seq   uint64
	epoch string
	recv  Receiver
}

// Open implements Broker.
func (b *MemoryBroker) Open(r Receiver) (Position, error) {
	epoch, err := NewEpoch()
	if err != nil {
		return Position{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recv = r
	b.epoch = epoch
	return Position{Epoch: epoch, Seq: b.seq}, nil
}

// NewEpoch returns a random epoch: 48 bits, base 36, short and URL-safe.
func NewEpoch() (string, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	return strconv.FormatUint(binary.BigEndian.Uint64(r[:])>>16, 36), nil
}

// Publish implements Broker.
func (b *MemoryBroker) Publish(_ context.Context, msgs []*Message) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.recv == nil {
		return "", ErrClosed
	}
	for _, m := range msgs {
		b.seq++
		m.Seq = b.seq
	}
	b.recv.Deliver(msgs)
	return b.epoch, nil
}

// Close implements Broker.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	b.recv = nil
	b.mu.Unlock()
	return nil
}

// Interface guards
var _ Broker = (*MemoryBroker)(nil)
