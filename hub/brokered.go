package hub

import (
	"cmp"
	"context"
	"slices"
	"time"

	"go.uber.org/zap"
)

// receiver is the face a hub shows its broker.
type receiver Hub

// Deliver implements Receiver.
func (r *receiver) Deliver(msgs []*Message) { (*Hub)(r).deliver(msgs) }

// Reset implements Receiver: the hub forgets its history cache, ends
// every subscription with ErrReset and continues from to. Subscribers
// resuming with a cursor the broker cannot serve are then sent a reset.
func (r *receiver) Reset(to Position) {
	h := (*Hub)(r)
	var hooks []func()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	newEpoch := to.Epoch != h.epoch
	h.logger.Load().Warn("broker lost messages: ending every subscription so that subscribers resume",
		zap.String("epoch", h.epoch), zap.Uint64("last_delivered", h.head),
		zap.String("new_epoch", to.Epoch), zap.Uint64("continue_after", to.Seq))
	for s := range h.subs {
		if f := h.endLocked(s, ErrReset); f != nil {
			hooks = append(hooks, f)
		}
	}
	if newEpoch {
		h.tombs = newTombs()
	}
	for _, t := range h.topics {
		h.dropCacheLocked(t)
		if newEpoch {
			t.last, t.evicted = 0, 0
		}
		h.dropTopicIfIdleLocked(t)
	}
	h.fifo.compact()
	h.epoch, h.head, h.cacheFloor = to.Epoch, to.Seq, to.Seq
	h.mu.Unlock()
	for _, f := range hooks {
		go f()
	}
}

// dropCacheLocked forgets t's history as evictLocked does, but neither
// counts it as evicted nor marks it lost: the broker still has it.
func (h *Hub) dropCacheLocked(t *topic) {
	if t.hist.len() == 0 {
		return
	}
	for t.hist.len() > 0 {
		m := t.hist.pop()
		m.retained = false
		h.retained--
		h.bytes -= m.size()
		m.uncountEncodings()
	}
	h.bytes -= t.size()
}

// setBrokerLimits passes the history caps on to a broker that keeps the
// history itself.
func (h *Hub) setBrokerLimits(cfg Config) {
	if h.history != nil {
		h.history.SetLimits(cfg.History, cfg.HistoryTTL, cfg.HistoryMaxBytes)
	}
}

// brokerQuery is a replay that the hub's cache cannot serve.
type brokerQuery struct {
	epoch    string
	topics   []string
	after    uint64
	earliest bool
	head     uint64 // the hub's head when the subscription was registered
}

// brokerQueryLocked reports whether a subscriber to ts resuming from
// cursor last must be served by the broker, and what to ask it. It is nil
// with a memory broker, and whenever the cache has every message the
// cursor needs, unless uncached says the cache is not enough.
func (h *Hub) brokerQueryLocked(ts []*topic, last string, uncached bool) *brokerQuery {
	if h.history == nil || last == "" || len(ts) == 0 {
		return nil
	}
	q := &brokerQuery{epoch: h.epoch, head: h.head}
	if last == EarliestID {
		if h.cacheFloor == 0 && !uncached {
			return nil
		}
		q.earliest = true
	} else {
		epoch, seq, ok := parseID(last)
		if !ok || epoch != h.epoch {
			return nil // foreign: a reset, as startLocked says
		}
		cached := seq >= h.cacheFloor && seq <= h.head
		for _, t := range ts {
			cached = cached && t.evicted <= seq
		}
		if cached && !uncached {
			return nil
		}
		q.after = seq
	}
	for _, t := range ts {
		q.topics = append(q.topics, t.name)
	}
	return q
}

// brokerReplayTimeout bounds how long a subscription waits for the
// broker's history; the broker's own timeout is usually shorter.
const brokerReplayTimeout = 10 * time.Second

// startFromBroker reads a subscriber's replay from the broker. Live
// messages are already queued for the subscriber; the transports skip
// those at or below HeadSeq (or the last replayed), so replay and live
// join with no gap and no duplicate. A broker that cannot be reached
// gives a reset: the subscriber is live, and told it may have missed
// messages.
func (h *Hub) startFromBroker(q *brokerQuery) Start {
	ctx, cancel := context.WithTimeout(context.Background(), brokerReplayTimeout)
	defer cancel()
	r, err := h.history.Replay(ctx, q.epoch, q.topics, q.after, q.earliest)
	st := Start{Head: formatID(q.epoch, q.head), HeadSeq: q.head}
	if err != nil {
		h.logger.Load().Debug("reading replay from broker", zap.Error(err))
		st.Reset = true
		return st
	}
	if r.Head.Epoch != q.epoch {
		st.Reset = true
		return st
	}
	if r.Head.Seq > st.HeadSeq {
		st.HeadSeq = r.Head.Seq
		st.Head = formatID(q.epoch, r.Head.Seq)
	}
	if r.Reset {
		st.Reset = true
		return st
	}
	slices.SortFunc(r.Messages, func(a, b *Message) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, m := range r.Messages {
		m.id = formatID(q.epoch, m.Seq)
	}
	st.Replay = r.Messages
	return st
}

// StatsWithHistory returns the hub's totals and, with a HistoryBroker,
// what it says of the shared history. Unlike Stats, it may wait for the
// broker.
func (h *Hub) StatsWithHistory() Stats {
	st := h.Stats()
	st.History = h.historyStats()
	return st
}

// historyStats asks a HistoryBroker about the shared history.
func (h *Hub) historyStats() *HistoryStats {
	if h.history == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokerReplayTimeout)
	defer cancel()
	st, err := h.history.HistoryStats(ctx)
	if err != nil {
		st = HistoryStats{Broker: st.Broker, Error: err.Error()}
	}
	return &st
}

// skipThrough drops the live messages up to seq from the queue, and
// those still to come: the broker's replay covered them, and this hub
// may receive them later than the instance that served the cursor did.
func (s *Subscription) skipThrough(seq uint64) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.skip = seq
	s.queue = slices.DeleteFunc(s.queue, func(m *Message) bool { return m.Seq <= seq })
}

// skipsPast reports whether s skips live messages beyond head: it was
// served by the broker up to a message this hub has not received yet.
// Topics it adds meanwhile need the broker's replay too, or the messages
// in between would be skipped without having been replayed.
func (s *Subscription) skipsPast(head uint64) bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.skip > head
}

// Interface guards
var _ Receiver = (*receiver)(nil)
