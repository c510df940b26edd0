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
	h.lockAll()
	if h.closed {
		h.unlockAll()
		return
	}
	newEpoch := to.Epoch != h.epoch
	h.logger.Load().Warn("broker lost messages: ending every subscription so that subscribers resume",
		zap.String("epoch", h.epoch), zap.Uint64("last_delivered", h.seq.Load()),
		zap.String("new_epoch", to.Epoch), zap.Uint64("continue_after", to.Seq))
	for _, s := range h.allSubsLocked() {
		if f := h.endLocked(s, ErrReset); f != nil {
			hooks = append(hooks, f)
		}
	}
	for i := range h.shards {
		sh := &h.shards[i]
		if newEpoch {
			sh.tombs = newTombs()
		}
		for _, t := range sh.topics {
			h.dropCacheLocked(sh, t)
			if newEpoch {
				t.last, t.evicted = 0, 0
			}
			sh.dropTopicIfIdleLocked(t)
		}
		sh.fifo.compact()
		h.noteFrontLocked(sh)
	}
	h.epoch, h.cacheFloor = to.Epoch, to.Seq
	h.seq.Store(to.Seq)
	h.unlockAll()
	for _, f := range hooks {
		go f()
	}
}

// dropCacheLocked forgets t's history as evictLocked does, but neither
// counts it as evicted nor marks it lost: the broker still has it.
func (h *Hub) dropCacheLocked(sh *shard, t *topic) {
	if t.hist.len() == 0 {
		return
	}
	size := t.size()
	for t.hist.len() > 0 {
		m := t.hist.pop()
		m.retained = false
		sh.retained--
		size += m.size()
		m.uncountEncodings()
	}
	h.bytes.Add(-size)
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

// Subscribe registers a subscriber to topics and, atomically with it,
// reads the history it must be sent first, so that replay and live
// messages join with no gap and no duplicate. History the hub's cache
// does not hold is read from a HistoryBroker, after the subscription is
// registered: live messages that the replay covers are then skipped.
func (h *Hub) Subscribe(topics []string, opts SubscribeOptions) (*Subscription, Start, error) {
	s, st, err := h.subscribe(topics, opts)
	if err != nil || st.query == nil {
		return s, st, err
	}
	st = h.startFromBroker(st.query)
	s.skipThrough(st.HeadSeq)
	return s, st, nil
}

// Add subscribes s to more topics and, atomically with it, reads the
// history of those topics after cursor last, as Subscribe does. Topics s
// already has are left as they are and get no replay. Live messages of
// the new topics follow in the queue; the caller must send the replay
// before any of them.
func (s *Subscription) Add(topics []string, last string) (Start, error) {
	h := s.hub
	var fresh []string
	if h.history != nil && last != "" {
		have := s.Topics()
		for _, t := range topics {
			if !slices.Contains(have, t) && !slices.Contains(fresh, t) {
				fresh = append(fresh, t)
			}
		}
	}
	st, err := s.add(topics, last)
	if err != nil {
		return st, err
	}
	if st.query == nil && !st.Reset && len(fresh) > 0 && s.skipsPast(st.HeadSeq) {
		// s was served by the broker past what this hub has received:
		// the new topics' messages in between would be skipped when they
		// arrive, so their replay must come from the broker too.
		epoch, _, _ := parseID(st.Head)
		st.query = &brokerQuery{epoch: epoch, topics: fresh, head: st.HeadSeq, earliest: last == EarliestID}
		if !st.query.earliest {
			_, st.query.after, _ = parseID(last)
		}
	}
	if st.query != nil {
		st = h.startFromBroker(st.query)
	}
	return st, nil
}

// brokerQueryLocked reports whether a subscriber to ts resuming from
// cursor last must be served by the broker, and what to ask it. It is nil
// with a memory broker, and whenever the cache has every message the
// cursor needs.
func (h *Hub) brokerQueryLocked(ts []*topic, last string) *brokerQuery {
	if h.history == nil || last == "" || len(ts) == 0 {
		return nil
	}
	head := h.seq.Load()
	q := &brokerQuery{epoch: h.epoch, head: head}
	if last == EarliestID {
		if h.cacheFloor == 0 {
			return nil
		}
		q.earliest = true
	} else {
		epoch, seq, ok := parseID(last)
		if !ok || epoch != h.epoch {
			return nil // foreign: a reset, as startLocked says
		}
		cached := seq >= h.cacheFloor && seq <= head
		for _, t := range ts {
			cached = cached && t.evicted <= seq
		}
		if cached {
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
	s.skip, s.skipping = seq, true
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
