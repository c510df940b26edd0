// Package hub is the transport-free core of caddy-push: message IDs and
// epochs, retained history, replay, and fan-out to bounded subscriber
// queues. It knows nothing of HTTP.
package hub

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"hash/maphash"
	"maps"
	"math"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Defaults for Config fields left at zero.
const (
	DefaultHistory         = 100
	DefaultHistoryTTL      = time.Hour
	DefaultHistoryMaxBytes = 64 << 20
	DefaultBuffer          = 256
	DefaultMaxMessageSize  = 1 << 20
)

// EarliestID is the cursor that asks for everything retained.
const EarliestID = "earliest"

// Config holds the limits a hub enforces. Zero values take the defaults;
// a negative History or HistoryTTL turns retention off.
type Config struct {
	History         int
	HistoryTTL      time.Duration
	HistoryMaxBytes int64
	Buffer          int
	MaxMessageSize  int64
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.History == 0 {
		c.History = DefaultHistory
	}
	if c.HistoryTTL == 0 {
		c.HistoryTTL = DefaultHistoryTTL
	}
	if c.HistoryMaxBytes == 0 {
		c.HistoryMaxBytes = DefaultHistoryMaxBytes
	}
	if c.Buffer == 0 {
		c.Buffer = DefaultBuffer
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	return c
}

// Errors that end a subscription.
var (
	// ErrSlow ends a subscription whose queue filled up.
	ErrSlow = errors.New("subscriber too slow")
	// ErrShutdown ends subscriptions when their server stops.
	ErrShutdown = errors.New("server shutting down")
	// ErrReset ends subscriptions when the broker lost messages they may
	// have needed: resuming, the subscriber is told so.
	ErrReset = errors.New("history lost: resume to be told")
)

// Hub owns the topics of one process: it numbers messages through its
// broker, keeps their history and fans them out to subscribers.
type Hub struct {
	broker Broker
	cfg    atomic.Pointer[Config]
	logger atomic.Pointer[zap.Logger]
	// local is set with the memory broker: the hub numbers messages
	// itself, and publishers on different shards run at once.
	local bool
	seed  maphash.Seed // of shardOf

	_ [64]byte
	// seq is the sequence number of the last message numbered (local)
	// or delivered (broker). A message is numbered and queued to its
	// subscribers under its shard's lock, so that whoever holds a
	// shard's lock knows that every message of the shard numbered up to
	// seq is queued, and every later one will be. It shares its cache
	// line with the byte counts, which every publish also writes, once
	// each: what else a publish counts, it counts in its shard.
	seq      atomic.Uint64
	bytes    atomic.Int64 // retained messages and their topics
	encBytes atomic.Int64 // encodings of retained messages
	_        [40]byte

	isClosed        atomic.Bool   // mirrors closed, for Publish
	published       atomic.Uint64 // through a broker; local ones per shard
	droppedSlow     atomic.Uint64
	droppedShutdown atomic.Uint64
	kinds           [MaxKinds]kindCount

	// order is taken before any shard lock by publishes that reach a
	// subscription spanning several shards, and by whatever changes
	// such a subscription (see shard).
	order sync.Mutex
	_     [56]byte

	shards [numShards]shard
	fronts [numShards]front

	// closed, epoch and cacheFloor are written with every lock held
	// (lockAll), and read with any one. cacheFloor is the sequence
	// number after which this hub has been delivered every message: with
	// a HistoryBroker, older cursors are served by the broker, which may
	// also change the epoch.
	closed     bool
	epoch      string
	cacheFloor uint64

	// subsMu guards subs, subsPeak and the kinds' subscriber counts.
	subsMu sync.Mutex
	subs   map[*Subscription]struct{}
	// subsPeak is the largest size of subs since it was last rebuilt.
	subsPeak int
	// wakers writes to the subscribers a large delivery made ready.
	wakers wakers

	stop chan struct{}
	done chan struct{}

	// history is the broker, if it keeps history itself (brokered.go).
	history HistoryBroker
}

type topic struct {
	name    string
	subs    map[*Subscription]struct{}
	hist    deque
	last    uint64 // sequence number of the last message published
	evicted uint64 // highest sequence number no longer retained
	shard   uint8  // index of the shard that holds it
	// cross counts the subscribers whose topics span several shards:
	// while it is not zero, publishes to the topic take the order lock.
	cross int32
}

// unsubscribe removes s from t's subscribers; a topic without any holds
// no map.
func (t *topic) unsubscribe(s *Subscription) {
	delete(t.subs, s)
	if len(t.subs) == 0 {
		t.subs = nil
	}
}

// New starts a hub on broker b.
func New(b Broker, cfg Config, logger *zap.Logger) (*Hub, error) {
	h := &Hub{
		broker: b,
		seed:   maphash.MakeSeed(),
		subs:   make(map[*Subscription]struct{}),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for i := range h.shards {
		h.shards[i] = shard{index: i, topics: make(map[string]*topic), tombs: newTombs()}
		h.fronts[i].seq.Store(math.MaxUint64)
	}
	h.history, _ = b.(HistoryBroker)
	_, h.local = b.(*MemoryBroker)
	h.SetConfig(cfg)
	h.SetLogger(logger)
	// The broker may deliver as soon as it is open: not before the hub
	// knows where the sequence stands.
	h.lockAll()
	pos, err := b.Open((*receiver)(h))
	h.epoch, h.cacheFloor = pos.Epoch, pos.Seq
	h.seq.Store(pos.Seq)
	h.unlockAll()
	if err != nil {
		return nil, err
	}
	go h.janitor()
	return h, nil
}

// SetConfig changes the hub's limits; history caps apply from the next
// publish, the buffer to new subscriptions.
func (h *Hub) SetConfig(cfg Config) {
	cfg = cfg.WithDefaults()
	h.cfg.Store(&cfg)
	h.setBrokerLimits(cfg)
}

// Config returns the limits in force.
func (h *Hub) Config() Config { return *h.cfg.Load() }

// SetLogger changes where the hub logs.
func (h *Hub) SetLogger(l *zap.Logger) {
	if l == nil {
		l = zap.NewNop()
	}
	h.logger.Store(l)
}

// Epoch names this hub's ID space.
func (h *Hub) Epoch() string {
	h.order.Lock()
	defer h.order.Unlock()
	return h.epoch
}

// Validate reports why m cannot be published, or nil.
func (h *Hub) Validate(m *Message) error {
	if err := ValidTopic(m.Topic); err != nil {
		return err
	}
	if err := ValidEvent(m.Event); err != nil {
		return err
	}
	if int64(len(m.Data)) > h.Config().MaxMessageSize {
		return ErrTooLarge
	}
	return nil
}

// Publish publishes msgs, in order, all or none, and returns their IDs.
// It never waits for a subscriber.
func (h *Hub) Publish(ctx context.Context, msgs ...*Message) ([]string, error) {
	for _, m := range msgs {
		if err := h.Validate(m); err != nil {
			return nil, err
		}
		// A payload read into a larger buffer would keep all of it.
		if cap(m.Data)-len(m.Data) > 64+len(m.Data)/8 {
			m.Data = bytes.Clone(m.Data)
		}
	}
	if h.isClosed.Load() {
		return nil, ErrClosed
	}
	var epoch string
	var err error
	if h.local {
		epoch, err = h.publishLocal(msgs)
	} else {
		epoch, err = h.broker.Publish(ctx, msgs)
	}
	if err != nil {
		return nil, err
	}
	if !h.local {
		h.published.Add(uint64(len(msgs)))
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		if h.local {
			ids[i] = m.id // delivered already, in the same epoch
		} else {
			ids[i] = formatID(epoch, m.Seq)
		}
	}
	return ids, nil
}

// delivery collects what a delivery must do once its locks are released.
type delivery struct {
	woken *fanOut         // to call OnReadyDirect on
	cut   []*Subscription // queues that overflowed: to end with ErrSlow
}

// finish wakes the subscriptions a delivery made ready and ends those it
// found too slow. No lock may be held.
func (d *delivery) finish(h *Hub) {
	if d.woken != nil {
		h.wakers.wake(d.woken)
	}
	for _, s := range d.cut {
		// The broker may still hold a lock of its own: never let a
		// transport's hook make the publisher wait.
		if f := h.end(s, ErrSlow); f != nil {
			go f()
		}
	}
}

// publishLocal numbers msgs and delivers them, for the memory broker:
// under the lock of their shard alone when they lie in one shard that no
// subscription spanning shards reaches, else under the order lock too.
func (h *Hub) publishLocal(msgs []*Message) (string, error) {
	cfg := h.cfg.Load()
	now := time.Now()
	var d delivery
	var epoch string
	if len(msgs) == 1 {
		m := msgs[0]
		sh := &h.shards[h.shardOf(m.Topic)]
		sh.mu.Lock()
		t := sh.topics[m.Topic]
		global := t != nil && t.cross > 0
		if global {
			sh.mu.Unlock()
			h.order.Lock()
			sh.mu.Lock()
			t = sh.topics[m.Topic]
		}
		if h.closed {
			h.unlock(1<<sh.index, global)
			return "", ErrClosed
		}
		epoch = h.epoch
		m.Seq = h.seq.Add(1)
		sh.published++
		h.deliverLocked(sh, t, m, cfg, now, &d)
		h.trimTTLLocked(sh, cfg, now)
		h.unlock(1<<sh.index, global)
	} else {
		idx := make([]uint8, len(msgs))
		var mask uint64
		for i, m := range msgs {
			idx[i] = uint8(h.shardOf(m.Topic))
			mask |= 1 << idx[i]
		}
		global := bits.OnesCount64(mask) > 1
		h.lock(mask, global)
		if !global && slices.ContainsFunc(msgs, func(m *Message) bool {
			t := h.shards[idx[0]].topics[m.Topic]
			return t != nil && t.cross > 0
		}) {
			h.unlock(mask, false)
			global = true
			h.lock(mask, true)
		}
		if h.closed {
			h.unlock(mask, global)
			return "", ErrClosed
		}
		epoch = h.epoch
		seq := h.seq.Add(uint64(len(msgs))) - uint64(len(msgs))
		for i, m := range msgs {
			m.Seq = seq + uint64(i) + 1
			sh := &h.shards[idx[i]]
			sh.published++
			h.deliverLocked(sh, sh.topics[m.Topic], m, cfg, now, &d)
		}
		for m := mask; m != 0; m &= m - 1 {
			h.trimTTLLocked(&h.shards[bits.TrailingZeros64(m)], cfg, now)
		}
		h.unlock(mask, global)
	}
	h.trimBytes(cfg)
	d.finish(h)
	return epoch, nil
}

// deliver is the broker's callback: retain each message and hand it to
// the subscribers of its topic. Brokers call it from one goroutine at a
// time; it holds the order lock throughout, and each message's shard
// lock while it delivers it.
func (h *Hub) deliver(msgs []*Message) {
	cfg := h.cfg.Load()
	now := time.Now()
	var d delivery

	h.order.Lock()
	if h.closed {
		h.order.Unlock()
		return
	}
	for _, m := range msgs {
		if m.Seq <= h.seq.Load() {
			continue // already delivered
		}
		sh := &h.shards[h.shardOf(m.Topic)]
		sh.mu.Lock()
		h.seq.Store(m.Seq)
		h.deliverLocked(sh, sh.topics[m.Topic], m, cfg, now, &d)
		h.trimTTLLocked(sh, cfg, now)
		sh.mu.Unlock()
	}
	h.order.Unlock()
	h.trimBytes(cfg)
	d.finish(h)
}

// deliverLocked retains m, numbered already, in its topic t (nil if it
// is not in sh yet) and queues it to t's subscribers.
func (h *Hub) deliverLocked(sh *shard, t *topic, m *Message, cfg *Config, now time.Time, d *delivery) {
	m.id = formatID(h.epoch, m.Seq)
	if m.Time.IsZero() {
		m.Time = now
	}
	if t == nil {
		t = sh.topicLocked(m.Topic)
	}
	m.Topic = t.name // one copy of the name for all its messages
	t.last = m.Seq
	if cfg.History > 0 && cfg.HistoryTTL > 0 {
		m.retained = true
		size := m.size()
		if t.hist.len() == 0 {
			size += t.size()
		}
		t.hist.push(m)
		sh.fifo.push(m)
		sh.retained++
		m.countEncodings(&h.encBytes)
		for t.hist.len() > cfg.History {
			size -= h.evictLocked(sh, t.hist.pop())
		}
		h.bytes.Add(size)
	} else {
		t.evicted = m.Seq
	}
	for s := range t.subs {
		first, cut := s.enqueue(m)
		if first && s.direct != nil {
			if d.woken == nil {
				d.woken = newFanOut()
			}
			d.woken.subs = append(d.woken.subs, s)
		}
		if cut {
			h.droppedSlow.Add(1)
			d.cut = append(d.cut, s)
		}
	}
	sh.dropTopicIfIdleLocked(t)
}

// shrinks reports whether a map of n entries that held peak should be
// copied into a smaller one: when it holds an eighth of its peak, so that
// the copying costs at most a seventh of the removals that led to it,
// and its peak was at least least (a small map is not worth it).
func shrinks(n, peak, least int) bool { return peak >= least && n*8 <= peak }

// evictLocked forgets m, which is the oldest message of its topic, and
// returns the bytes it freed, for the caller to take off h.bytes.
func (h *Hub) evictLocked(sh *shard, m *Message) (freed int64) {
	m.retained = false
	sh.retained--
	sh.evicted++
	freed = m.size()
	m.uncountEncodings()
	if t := sh.topics[m.Topic]; t != nil {
		t.evicted = max(t.evicted, m.Seq)
		if t.hist.len() == 0 {
			freed += t.size()
		}
	}
	return freed
}

// retainedBytes is what the history costs, counted against
// history_max_bytes.
func (h *Hub) retainedBytes() int64 { return h.bytes.Load() + h.encBytes.Load() }

// size is what a topic with history counts against history_max_bytes.
func (t *topic) size() int64 { return int64(len(t.name)) + topicOverhead }

// trimChunk bounds the messages one call of a trim evicts, so that
// history expiring all at once never holds a lock long: the janitor
// goes on after letting others in, and every publish helps.
const trimChunk = 1024

// janitor expires history while no one publishes.
func (h *Hub) janitor() {
	defer close(h.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case now := <-tick.C:
			cfg := h.cfg.Load()
			for i := range h.shards {
				sh := &h.shards[i]
				for more := true; more; {
					sh.mu.Lock()
					more = h.trimTTLLocked(sh, cfg, now)
					sh.mu.Unlock()
				}
			}
			for h.trimBytes(cfg) {
			}
		}
	}
}

// Start is what a new subscription is sent before live messages.
type Start struct {
	// Replay holds the retained messages after the cursor, oldest first.
	Replay []*Message
	// Reset is set when the cursor was foreign or older than what is
	// retained: the subscriber must be told it may have missed messages.
	Reset bool
	// Head is the ID after which live messages follow.
	Head string
	// HeadSeq is the sequence number of Head: live messages on the
	// subscribed topics have greater ones.
	HeadSeq uint64

	// query, if set, is the replay to read from the broker instead.
	query *brokerQuery
}

// SubscribeOptions are the optional parts of a subscription.
type SubscribeOptions struct {
	// LastEventID is the cursor to resume from: an ID, EarliestID, or
	// empty for live messages only.
	LastEventID string
	// OnEnd, if set, is called once with the reason when the
	// subscription is ended by anyone but its owner (too slow, shutdown,
	// hub closed), outside any lock, so that a transport blocked in a
	// write can be woken. It must not block.
	OnEnd func(reason error)
	// OnReady, if set, is called when the queue goes from empty to not
	// empty, instead of a value being sent on Ready. It is called with
	// a lock of the hub held: it must not block or call into the hub.
	OnReady func()
	// OnReadyDirect, if set, is woken instead of OnReady being called,
	// once the hub's locks are released: from the delivering goroutine
	// when a delivery wakes few subscriptions, else from the hub's
	// wakers. Wake must not block.
	OnReadyDirect Waker
	// Kind, from 0 to MaxKinds-1, sorts the subscription for counting:
	// Stats reports subscribers and deliveries per kind.
	Kind int
}

// Waker is woken, from the goroutine that delivers, when a subscription's
// queue goes from empty to not empty (SubscribeOptions.OnReadyDirect). It
// is an interface, not a func, so that a delivery calls the subscriber's
// own object: at light load each object a delivery touches is a cache
// miss, and a closure would be one more.
type Waker interface{ Wake() }

// WakeFunc is a func that is a Waker.
type WakeFunc func()

// Wake calls f.
func (f WakeFunc) Wake() { f() }

// subscribe registers a subscriber to topics and, atomically with it,
// reads the history it must be sent first, so that replay and live
// messages join with no gap and no duplicate.
func (h *Hub) subscribe(topics []string, opts SubscribeOptions) (*Subscription, Start, error) {
	for _, name := range topics {
		if err := ValidTopic(name); err != nil {
			return nil, Start{}, err
		}
	}
	cfg := h.cfg.Load()
	s := &Subscription{
		hub:     h,
		limit:   int32(min(cfg.Buffer, math.MaxInt32)),
		ready:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		onEnd:   opts.OnEnd,
		onReady: opts.OnReady,
		direct:  opts.OnReadyDirect,
		kind:    kindOf(opts.Kind),
	}
	h.trimBytes(cfg)

	mask := h.maskOf(topics)
	s.mask.Store(mask)
	global := bits.OnesCount64(mask) != 1
	h.lock(mask, global)
	defer h.unlock(mask, global)
	if h.closed {
		return nil, Start{}, ErrClosed
	}
	h.trimTTLMaskLocked(mask, cfg)
	h.addTopicsLocked(s, topics)
	h.subsMu.Lock()
	h.subs[s] = struct{}{}
	h.subsPeak = max(h.subsPeak, len(h.subs))
	h.countSubscribedLocked(s)
	h.subsMu.Unlock()
	return s, h.startLocked(s.topics, opts.LastEventID), nil
}

// trimTTLMaskLocked expires the history of the shards in mask, which the
// caller holds, before a replay is read from it.
func (h *Hub) trimTTLMaskLocked(mask uint64, cfg *Config) {
	now := time.Now()
	for m := mask; m != 0; m &= m - 1 {
		h.trimTTLLocked(&h.shards[bits.TrailingZeros64(m)], cfg, now)
	}
}

// startLocked computes what a subscriber to ts resuming from cursor last
// is sent before live messages. The caller holds the locks of ts's
// shards: every message on ts numbered up to h.seq is in their history
// or gone, and every later one will be queued.
func (h *Hub) startLocked(ts []*topic, last string) Start {
	if q := h.brokerQueryLocked(ts, last); q != nil {
		return Start{query: q}
	}
	head := h.seq.Load()
	st := Start{Head: formatID(h.epoch, head), HeadSeq: head}
	after := uint64(0)
	switch {
	case last == "" || len(ts) == 0:
		// No cursor, or no topic it could have missed anything on.
		return st
	case last == EarliestID:
	default:
		epoch, seq, ok := parseID(last)
		if !ok || epoch != h.epoch || seq > head {
			st.Reset = true
			return st
		}
		for _, t := range ts {
			if t.evicted > seq {
				st.Reset = true
				return st
			}
		}
		after = seq
	}
	for _, t := range ts {
		st.Replay = append(st.Replay, t.hist.after(after)...)
	}
	if len(ts) > 1 {
		slices.SortFunc(st.Replay, func(a, b *Message) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	return st
}

// endLocked removes s from the hub and closes it with err. The caller
// holds s's locks (lockSub), or every lock. It returns the
// subscription's OnEnd hook, to be called once the locks are released.
func (h *Hub) endLocked(s *Subscription, err error) func() {
	if s.err != nil {
		return nil
	}
	s.err = err
	for _, t := range s.topics {
		if s.cross {
			t.cross--
		}
		t.unsubscribe(s)
		h.shards[t.shard].dropTopicIfIdleLocked(t)
	}
	s.topics, s.cross = nil, false
	h.subsMu.Lock()
	delete(h.subs, s)
	if shrinks(len(h.subs), h.subsPeak, 4096) {
		h.subs = maps.Collect(maps.All(h.subs))
		h.subsPeak = len(h.subs)
	}
	h.countEndedLocked(s, err)
	h.subsMu.Unlock()
	close(s.done)
	if errors.Is(err, errUnsubscribed) || s.onEnd == nil {
		return nil
	}
	return func() { s.onEnd(err) }
}

// end ends s with err, as endLocked, taking s's locks.
func (h *Hub) end(s *Subscription, err error) func() {
	mask, global := h.lockSub(s, 0)
	defer h.unlock(mask, global)
	return h.endLocked(s, err)
}

// allSubsLocked returns every subscription; the caller holds every lock.
func (h *Hub) allSubsLocked() []*Subscription {
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	return slices.Collect(maps.Keys(h.subs))
}

// Close ends every subscription and stops the broker.
func (h *Hub) Close() error {
	h.lockAll()
	if h.closed {
		h.unlockAll()
		return nil
	}
	h.closed = true
	h.isClosed.Store(true)
	var hooks []func()
	for _, s := range h.allSubsLocked() {
		if f := h.endLocked(s, ErrClosed); f != nil {
			hooks = append(hooks, f)
		}
	}
	h.unlockAll()
	for _, f := range hooks {
		f()
	}
	close(h.stop)
	<-h.done
	return h.broker.Close()
}

// Stats are the hub's totals.
type Stats struct {
	// History, with a broker that keeps history for every hub on it,
	// describes that shared history (StatsWithHistory); the other fields
	// describe this hub alone (its subscribers, and its cache of the
	// history).
	History *HistoryStats `json:"history,omitempty"`

	Epoch         string `json:"epoch"`
	LastID        string `json:"last_id"`
	Subscribers   int    `json:"subscribers"`
	Topics        int    `json:"topics"`
	Retained      int    `json:"retained"`
	RetainedBytes int64  `json:"retained_bytes"`
	Published     uint64 `json:"published"`
	Delivered     uint64 `json:"delivered"`
	DroppedSlow   uint64 `json:"dropped_slow"`
	// DroppedShutdown counts subscribers disconnected by a reload, a
	// shutdown or the hub closing.
	DroppedShutdown uint64 `json:"dropped_shutdown"`
	Evicted         uint64 `json:"evicted"`
	// Kinds are the totals per SubscribeOptions.Kind.
	Kinds [MaxKinds]KindStats `json:"-"`
}

// Stats returns the hub's totals.
func (h *Hub) Stats() Stats {
	h.order.Lock()
	epoch := h.epoch
	h.order.Unlock()
	st := Stats{Epoch: epoch, LastID: formatID(epoch, h.seq.Load())}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		st.Topics += len(sh.topics)
		st.Retained += sh.retained
		st.Published += sh.published
		st.Evicted += sh.evicted
		sh.mu.Unlock()
	}
	st.RetainedBytes = h.retainedBytes()
	h.subsMu.Lock()
	st.Subscribers = len(h.subs)
	h.fillKindStatsLocked(&st)
	h.subsMu.Unlock()
	h.fillCounters(&st)
	return st
}

// TopicInfo describes one live topic.
type TopicInfo struct {
	Topic       string `json:"topic"`
	Subscribers int    `json:"subscribers"`
	Retained    int    `json:"retained"`
	LastID      string `json:"last_id"`
}

func (h *Hub) infoLocked(t *topic) TopicInfo {
	ti := TopicInfo{Topic: t.name, Subscribers: len(t.subs), Retained: t.hist.len()}
	if t.last > 0 {
		ti.LastID = formatID(h.epoch, t.last)
	}
	return ti
}

// Topic describes one topic, if it is live.
func (h *Hub) Topic(name string) (TopicInfo, bool) {
	cfg := h.cfg.Load()
	h.trimBytes(cfg)
	sh := &h.shards[h.shardOf(name)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	h.trimTTLLocked(sh, cfg, time.Now())
	t, ok := sh.topics[name]
	if !ok {
		return TopicInfo{}, false
	}
	return h.infoLocked(t), true
}

// errUnsubscribed ends a subscription that its owner closed.
var errUnsubscribed = errors.New("unsubscribed")

// Subscription is one subscriber's view of the hub: a bounded queue of
// live messages on its topics.
type Subscription struct {
	// What a delivery and an enqueue use fills the first cache line,
	// and the struct whole lines (TestSubscriptionLayout): a fan-out
	// finds each subscription out of the cache, at light load, and a
	// second line would be a second miss, for the publisher too.
	qmu      sync.Mutex
	cut      bool // the queue overflowed: nothing more is queued
	kind     uint8
	skipping bool       // skip is set
	limit    int32      // most messages queued; more and it is cut
	queue    []*Message // live messages not yet taken, in sequence order
	direct   Waker
	hub      *Hub

	skip    uint64        // messages up to this one were replayed by the broker
	ready   chan struct{} // holds a token while the queue is not empty
	done    chan struct{}
	onEnd   func(error)
	onReady func()

	// mask is the set of shards whose locks guard the fields below
	// (see Hub.lockSub); it holds at least those of its topics.
	mask   atomic.Uint64
	topics []*topic
	cross  bool // topics span shards, and each counts s in topic.cross
	err    error
	_      [32]byte
}

// enqueue adds m to the queue. It reports first if the queue was empty,
// and cut if the queue is full: then the subscription takes nothing more
// and the caller must end it with ErrSlow once its locks are released.
// The queue grows as needed, so an idle subscriber holds no buffer. With
// an OnReadyDirect hook, the caller calls it once the locks are
// released.
func (s *Subscription) enqueue(m *Message) (first, cut bool) {
	s.qmu.Lock()
	if s.cut || s.skipping && m.Seq <= s.skip {
		s.qmu.Unlock()
		return false, false
	}
	n := len(s.queue)
	if n >= int(s.limit) {
		s.cut = true
		s.qmu.Unlock()
		return false, true
	}
	s.queue = append(s.queue, m)
	s.qmu.Unlock()
	if n == 0 && s.direct == nil {
		if s.onReady != nil {
			s.onReady()
		} else {
			select {
			case s.ready <- struct{}{}:
			default:
			}
		}
	}
	return n == 0, false
}

// Ready receives a value when messages may be waiting to be taken.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take returns every queued message, in sequence order, and empties the
// queue. buf, if not nil, is an empty slice the caller is done with: the
// queue reuses its array, so that a subscriber that keeps handing back
// its last batch allocates nothing.
func (s *Subscription) Take(buf []*Message) []*Message {
	s.qmu.Lock()
	out := s.queue
	s.queue = buf[:0]
	s.qmu.Unlock()
	return out
}

// Batches are the arrays a subscriber and its queue swap in Take, kept
// in the subscriber. At light load a queue holds a message when it is
// taken, and two one-message arrays inside the subscriber take turns, so
// that a delivery touches no array elsewhere. The larger array a busy
// queue grew is handed back instead while it is busy, up to keepTaken
// messages, so that a subscriber that is behind does not grow one at
// every Take.
type Batches struct {
	small [2][1]*Message
	spare []*Message // empty and not the queue's; nil: a small one
	given int8       // which small array the queue was last given, or -1
}

// keepTaken bounds the array Batches keeps between takes.
const keepTaken = 64

// Take takes s's queued messages (Subscription.Take). Give the batch to
// Done once it is written, before the next Take.
func (b *Batches) Take(s *Subscription) []*Message {
	buf := b.spare
	if buf != nil {
		b.given = -1
	} else {
		// The queue holds the array it was given last, or one it grew:
		// the other small one is free.
		i := int8(0)
		if b.given == 0 {
			i = 1
		}
		b.given = i
		buf = b.small[i][:0]
	}
	b.spare = nil
	return s.Take(buf)
}

// Done clears batch, which Take returned, and keeps its array for the
// next Take while the queue is busy: a batch of one goes back to the
// small arrays.
func (b *Batches) Done(batch []*Message) {
	clear(batch)
	if len(batch) > len(b.small[0]) && cap(batch) <= keepTaken {
		b.spare = batch[:0]
	}
}

// Queued reports how many messages wait to be taken.
func (s *Subscription) Queued() int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.queue)
}

// Done is closed when the hub ends the subscription; Err then says why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why the subscription ended, or nil while it is live.
func (s *Subscription) Err() error {
	mask, global := s.hub.lockSub(s, 0)
	defer s.hub.unlock(mask, global)
	if errors.Is(s.err, errUnsubscribed) {
		return nil
	}
	return s.err
}

// End ends the subscription with err (e.g. ErrShutdown) and calls its
// OnEnd hook. It does nothing if the subscription already ended.
func (s *Subscription) End(err error) {
	if f := s.hub.end(s, err); f != nil {
		f()
	}
}

// add subscribes s to more topics and, atomically with it, reads the
// history of those topics after cursor last, as Subscribe does. Topics s
// already has are left as they are and get no replay. Live messages of
// the new topics follow in the queue; the caller must send the replay
// before any of them.
func (s *Subscription) add(topics []string, last string) (Start, error) {
	for _, name := range topics {
		if err := ValidTopic(name); err != nil {
			return Start{}, err
		}
	}
	h := s.hub
	cfg := h.cfg.Load()
	h.trimBytes(cfg)
	extra := h.maskOf(topics)
	mask, global := h.lockSub(s, extra)
	defer h.unlock(mask, global)
	if s.err != nil {
		return Start{}, s.err
	}
	h.trimTTLMaskLocked(extra, cfg)
	added := h.addTopicsLocked(s, topics)
	s.mask.Store(mask)
	return h.startLocked(added, last), nil
}

// addTopicsLocked subscribes s to the topics it does not have yet and
// returns those. The caller holds the locks of s and of the topics'
// shards, and the order lock if s's topics will span shards.
func (h *Hub) addTopicsLocked(s *Subscription, names []string) []*topic {
	var added []*topic
	for _, name := range names {
		t := h.shards[h.shardOf(name)].topicLocked(name)
		if _, dup := t.subs[s]; dup {
			continue
		}
		if t.subs == nil {
			t.subs = make(map[*Subscription]struct{})
		}
		t.subs[s] = struct{}{}
		s.topics = append(s.topics, t)
		added = append(added, t)
	}
	// From now on, every publish that reaches s is sequenced under the
	// order lock.
	switch {
	case s.cross:
		for _, t := range added {
			t.cross++
		}
	case spans(s.topics):
		for _, t := range s.topics {
			t.cross++
		}
		s.cross = true
	}
	return added
}

// Remove unsubscribes s from topics it has. Messages of those topics
// already in the queue stay there.
func (s *Subscription) Remove(topics []string) {
	h := s.hub
	mask, global := h.lockSub(s, 0)
	defer h.unlock(mask, global)
	if s.err != nil {
		return
	}
	for _, name := range topics {
		i := h.shardOf(name)
		if mask&(1<<i) == 0 {
			continue // s has no topic there, nor its lock
		}
		sh := &h.shards[i]
		t, ok := sh.topics[name]
		if !ok {
			continue
		}
		if _, sub := t.subs[s]; !sub {
			continue
		}
		if s.cross {
			t.cross--
		}
		t.unsubscribe(s)
		s.topics = slices.DeleteFunc(s.topics, func(x *topic) bool { return x == t })
		sh.dropTopicIfIdleLocked(t)
	}
	// Back in one shard, s is that shard's alone again.
	if s.cross && !spans(s.topics) {
		for _, t := range s.topics {
			t.cross--
		}
		s.cross = false
	}
}

// Topics returns the names of the topics s is subscribed to.
func (s *Subscription) Topics() []string {
	mask, global := s.hub.lockSub(s, 0)
	defer s.hub.unlock(mask, global)
	names := make([]string, len(s.topics))
	for i, t := range s.topics {
		names[i] = t.name
	}
	return names
}

// Close is called by the subscriber when it leaves.
func (s *Subscription) Close() { s.End(errUnsubscribed) }

// Sent records that n messages reached the subscriber's connection.
func (s *Subscription) Sent(n int) { s.hub.kinds[s.kind].delivered.Add(uint64(n)) }
