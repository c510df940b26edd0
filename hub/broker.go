package hub

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"sync"
)

// Broker carries published messages to every hub that shares it and
// decides their order. The memory broker serves one process; a broker
// backed by an external store lets several processes act as one hub.
type Broker interface {
	// Open starts the broker. From then on it calls deliver for every
	// message published through any hub sharing it (this one included),
	// in sequence order, never concurrently. It returns the epoch that
	// names the broker's sequence: IDs from another epoch are foreign.
	Open(deliver func([]*Message)) (epoch string, err error)

	// Publish sets Seq on each message (consecutive and increasing, in
	// slice order) and hands them to every hub. Either all messages are
	// published or, with an error, none is.
	Publish(ctx context.Context, msgs []*Message) error

	// Close stops the broker; deliver is not called after it returns.
	Close() error
}

// MemoryBroker is the in-process broker: sequence numbers come from a
// counter, delivery is a direct call. Its epoch is new for every process,
// so IDs from before a restart are recognized as foreign.
type MemoryBroker struct {
	mu      sync.Mutex
	seq     uint64
	deliver func([]*Message)
}

// Open implements Broker.
func (b *MemoryBroker) Open(deliver func([]*Message)) (string, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	b.mu.Lock()
	b.deliver = deliver
	b.mu.Unlock()
	// 48 random bits, base 36: short and URL-safe.
	return strconv.FormatUint(binary.BigEndian.Uint64(r[:])>>16, 36), nil
}

// Publish implements Broker.
func (b *MemoryBroker) Publish(_ context.Context, msgs []*Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.deliver == nil {
		return ErrClosed
	}
	for _, m := range msgs {
		b.seq++
		m.Seq = b.seq
	}
	b.deliver(msgs)
	return nil
}

// Close implements Broker.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	b.deliver = nil
	b.mu.Unlock()
	return nil
}

// Interface guards
var _ Broker = (*MemoryBroker)(nil)
