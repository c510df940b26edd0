// Package hub is the transport-free core of caddy-push: message IDs and
// epochs, retained history, replay, and fan-out to bounded subscriber
// queues. It knows nothing of HTTP.
package hub

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
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
	epoch  string
	cfg    atomic.Pointer[Config]
	logger atomic.Pointer[zap.Logger]

	isClosed        atomic.Bool // mirrors closed, for Publish
	published       atomic.Uint64
	droppedSlow     atomic.Uint64
	droppedShutdown atomic.Uint64
	evicted         atomic.Uint64
	kinds           [MaxKinds]kindCount

	mu     sync.Mutex
	closed bool
	head   uint64 // sequence number of the last message delivered
	topics map[string]*topic
	subs   map[*Subscription]struct{}
	// fifo holds every retained message in sequence (and so time) order,
	// for the TTL and total-bytes caps; entries evicted by a topic's own
	// count cap stay until compacted.
	fifo     deque
	retained int
	bytes    int64        // retained messages and their topics
	encBytes atomic.Int64 // encodings of retained messages
	// tombs remembers, for topics removed once they had neither
	// subscribers nor history, up to which sequence number they lost
	// messages, so that a cursor older than that gets a reset.
	tombs tombs
	// wakers writes to the subscribers a large delivery made ready.
	wakers wakers
	// topicsPeak and subsPeak are the largest sizes of topics and subs
	// since they were last rebuilt: a Go map never shrinks, so a map much
	// smaller than its peak is copied into a new one.
	topicsPeak int
	subsPeak   int

	stop chan struct{}
	done chan struct{}

	// history is the broker, if it keeps history itself (brokered.go).
	history HistoryBroker
	// cacheFloor, guarded by mu, is the sequence number after which this
	// hub has been delivered every message: with a HistoryBroker, older
	// cursors are served by the broker. epoch too is guarded by mu: a
	// HistoryBroker may change it.
	cacheFloor uint64
}

type topic struct {
	name    string
	subs    map[*Subscription]struct{}
	hist    deque
	last    uint64 // sequence number of the last message published
	evicted uint64 // highest sequence number no longer retained
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
		topics: make(map[string]*topic),
		subs:   make(map[*Subscription]struct{}),
		tombs:  newTombs(),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	h.history, _ = b.(HistoryBroker)
	h.SetConfig(cfg)
	h.SetLogger(logger)
	// The broker may deliver as soon as it is open: not before the hub
	// knows where the sequence stands.
	h.mu.Lock()
	pos, err := b.Open((*receiver)(h))
	h.epoch, h.head, h.cacheFloor = pos.Epoch, pos.Seq, pos.Seq
	h.mu.Unlock()
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
	h.mu.Lock()
	defer h.mu.Unlock()
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
	epoch, err := h.broker.Publish(ctx, msgs)
	if err != nil {
		return nil, err
	}
	h.published.Add(uint64(len(msgs)))
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = formatID(epoch, m.Seq)
	}
	return ids, nil
}

// deliver is the broker's callback: retain each message and hand it to
// the subscribers of its topic.
func (h *Hub) deliver(msgs []*Message) {
	cfg := h.cfg.Load()
	now := time.Now()
	var hooks []func()
	var woken []*Subscription

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	for _, m := range msgs {
		if m.Seq <= h.head {
			continue // already delivered
		}
		h.head = m.Seq
		m.id = formatID(h.epoch, m.Seq)
		if m.Time.IsZero() {
			m.Time = now
		}
		t := h.topicLocked(m.Topic)
		m.Topic = t.name // one copy of the name for all its messages
		t.last = m.Seq
		if cfg.History > 0 && cfg.HistoryTTL > 0 {
			m.retained = true
			if t.hist.len() == 0 {
				h.bytes += t.size()
			}
			t.hist.push(m)
			h.fifo.push(m)
			h.retained++
			h.bytes += m.size()
			m.countEncodings(&h.encBytes)
			for t.hist.len() > cfg.History {
				h.evictLocked(t.hist.pop())
			}
		} else {
			t.evicted = m.Seq
		}
		for s := range t.subs {
			queued, first := s.enqueue(m)
			if first && s.direct != nil {
				woken = append(woken, s)
			}
			if !queued {
				h.droppedSlow.Add(1)
				if hook := h.endLocked(s, ErrSlow); hook != nil {
					hooks = append(hooks, hook)
				}
			}
		}
		h.dropTopicIfIdleLocked(t)
	}
	h.trimLocked(cfg, now)
	h.mu.Unlock()

	h.wakers.wake(woken)
	// The broker may still hold a lock of its own: never let a
	// transport's hook make the publisher wait.
	for _, f := range hooks {
		go f()
	}
}

// topicLocked returns the topic named name, creating it if need be.
func (h *Hub) topicLocked(name string) *topic {
	if t, ok := h.topics[name]; ok {
		return t
	}
	// A topic's name is the one copy of it that its messages share.
	name = strings.Clone(name)
	t := &topic{name: name, evicted: h.tombs.lost(name)}
	h.topics[name] = t
	h.topicsPeak = max(h.topicsPeak, len(h.topics))
	return t
}

// dropTopicIfIdleLocked forgets t if nothing refers to it any more,
// keeping a tombstone of its last sequence number.
func (h *Hub) dropTopicIfIdleLocked(t *topic) {
	if len(t.subs) > 0 || t.hist.len() > 0 {
		return
	}
	if h.topics[t.name] != t {
		return
	}
	delete(h.topics, t.name)
	if t.evicted > 0 {
		h.tombs.remember(t.name, t.evicted)
	}
	if shrinks(len(h.topics), h.topicsPeak) {
		h.topics = maps.Collect(maps.All(h.topics))
		h.topicsPeak = len(h.topics)
	}
}

// shrinks reports whether a map of n entries that held peak should be
// copied into a smaller one: when it holds an eighth of its peak, so that
// the copying costs at most a seventh of the removals that led to it.
func shrinks(n, peak int) bool { return peak >= 4096 && n*8 <= peak }

// evictLocked forgets m, which is the oldest message of its topic.
func (h *Hub) evictLocked(m *Message) {
	m.retained = false
	h.retained--
	h.bytes -= m.size()
	m.uncountEncodings()
	h.evicted.Add(1)
	if t := h.topics[m.Topic]; t != nil {
		t.evicted = max(t.evicted, m.Seq)
		if t.hist.len() == 0 {
			h.bytes -= t.size()
		}
	}
}

// retainedBytes is what the history costs, counted against
// history_max_bytes.
func (h *Hub) retainedBytes() int64 { return h.bytes + h.encBytes.Load() }

// size is what a topic with history counts against history_max_bytes.
func (t *topic) size() int64 { return int64(len(t.name)) + topicOverhead }

// trimChunk bounds the messages one call of trimLocked evicts, so that
// history expiring all at once never holds the lock long: the janitor
// goes on after letting others in, and every publish helps.
const trimChunk = 1024

// trimLocked enforces the TTL and total-bytes caps, oldest first, for up
// to trimChunk messages. It reports whether more are due.
func (h *Hub) trimLocked(cfg *Config, now time.Time) (more bool) {
	cutoff := now.Add(-cfg.HistoryTTL)
	for n := 0; h.fifo.len() > 0; n++ {
		m := h.fifo.front()
		if m.retained && h.retainedBytes() <= cfg.HistoryMaxBytes && m.Time.After(cutoff) {
			break
		}
		if n == trimChunk {
			more = true
			break
		}
		h.fifo.pop()
		if !m.retained {
			continue
		}
		t := h.topics[m.Topic]
		// Per topic and overall, history is in sequence order, so the
		// oldest message overall is the oldest of its topic.
		t.hist.pop()
		h.evictLocked(m)
		h.dropTopicIfIdleLocked(t)
	}
	if h.fifo.len() > 2*h.retained+1024 {
		h.fifo.compact()
	}
	return more
}

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
			for more := true; more; {
				h.mu.Lock()
				more = h.trimLocked(h.cfg.Load(), now)
				h.mu.Unlock()
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
	// the hub locked: it must not block or call into the hub.
	OnReady func()
	// OnReadyDirect, if set, is called instead of OnReady, once the hub
	// lock is released: from the delivering goroutine when a delivery
	// wakes few subscriptions, else from one goroutine for all of them.
	// It must not block.
	OnReadyDirect func()
	// Kind, from 0 to MaxKinds-1, sorts the subscription for counting:
	// Stats reports subscribers and deliveries per kind.
	Kind int
}

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
		limit:   cfg.Buffer,
		ready:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		onEnd:   opts.OnEnd,
		onReady: opts.OnReady,
		direct:  opts.OnReadyDirect,
		kind:    kindOf(opts.Kind),
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, Start{}, ErrClosed
	}
	h.trimLocked(cfg, time.Now())
	h.addTopicsLocked(s, topics)
	h.subs[s] = struct{}{}
	h.subsPeak = max(h.subsPeak, len(h.subs))
	h.countSubscribedLocked(s)
	return s, h.startLocked(s.topics, opts.LastEventID), nil
}

// startLocked computes what a subscriber to ts resuming from cursor last
// is sent before live messages.
func (h *Hub) startLocked(ts []*topic, last string) Start {
	if q := h.brokerQueryLocked(ts, last); q != nil {
		return Start{query: q}
	}
	st := Start{Head: formatID(h.epoch, h.head), HeadSeq: h.head}
	after := uint64(0)
	switch {
	case last == "" || len(ts) == 0:
		// No cursor, or no topic it could have missed anything on.
		return st
	case last == EarliestID:
	default:
		epoch, seq, ok := parseID(last)
		if !ok || epoch != h.epoch || seq > h.head {
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

// endLocked removes s from the hub and closes it with err. It returns the
// subscription's OnEnd hook, to be called once the lock is released.
func (h *Hub) endLocked(s *Subscription, err error) func() {
	if s.err != nil {
		return nil
	}
	s.err = err
	for _, t := range s.topics {
		t.unsubscribe(s)
		h.dropTopicIfIdleLocked(t)
	}
	s.topics = nil
	delete(h.subs, s)
	if shrinks(len(h.subs), h.subsPeak) {
		h.subs = maps.Collect(maps.All(h.subs))
		h.subsPeak = len(h.subs)
	}
	h.countEndedLocked(s, err)
	close(s.done)
	if errors.Is(err, errUnsubscribed) || s.onEnd == nil {
		return nil
	}
	return func() { s.onEnd(err) }
}

// Close ends every subscription and stops the broker.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.isClosed.Store(true)
	var hooks []func()
	for s := range h.subs {
		if f := h.endLocked(s, ErrClosed); f != nil {
			hooks = append(hooks, f)
		}
	}
	h.mu.Unlock()
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
	h.mu.Lock()
	st := Stats{
		Epoch:         h.epoch,
		LastID:        formatID(h.epoch, h.head),
		Subscribers:   len(h.subs),
		Topics:        len(h.topics),
		Retained:      h.retained,
		RetainedBytes: h.retainedBytes(),
	}
	h.fillKindStatsLocked(&st)
	h.mu.Unlock()
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
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trimLocked(h.cfg.Load(), time.Now())
	t, ok := h.topics[name]
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
	hub     *Hub
	limit   int           // most messages queued; more and it is cut
	ready   chan struct{} // holds a token while the queue is not empty
	done    chan struct{}
	onEnd   func(error)
	onReady func()
	direct  func()
	kind    uint8

	qmu   sync.Mutex
	queue []*Message // live messages not yet taken, in sequence order
	skip  uint64     // messages up to this one were replayed by the broker

	// guarded by hub.mu
	topics []*topic
	err    error
}

// enqueue adds m to the queue; it reports false if the queue is full,
// and first if the queue was empty. The queue grows as needed, so an idle
// subscriber holds no buffer. With an OnReadyDirect hook, the caller
// calls it once the hub lock is released.
func (s *Subscription) enqueue(m *Message) (queued, first bool) {
	s.qmu.Lock()
	if m.Seq <= s.skip {
		s.qmu.Unlock()
		return true, false
	}
	n := len(s.queue)
	if n >= s.limit {
		s.qmu.Unlock()
		return false, false
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
	return true, n == 0
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
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	if errors.Is(s.err, errUnsubscribed) {
		return nil
	}
	return s.err
}

// End ends the subscription with err (e.g. ErrShutdown) and calls its
// OnEnd hook. It does nothing if the subscription already ended.
func (s *Subscription) End(err error) {
	s.hub.mu.Lock()
	f := s.hub.endLocked(s, err)
	s.hub.mu.Unlock()
	if f != nil {
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
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.err != nil {
		return Start{}, s.err
	}
	h.trimLocked(h.cfg.Load(), time.Now())
	return h.startLocked(h.addTopicsLocked(s, topics), last), nil
}

// addTopicsLocked subscribes s to the topics it does not have yet and
// returns those.
func (h *Hub) addTopicsLocked(s *Subscription, names []string) []*topic {
	var added []*topic
	for _, name := range names {
		t := h.topicLocked(name)
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
	return added
}

// Remove unsubscribes s from topics it has. Messages of those topics
// already in the queue stay there.
func (s *Subscription) Remove(topics []string) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.err != nil {
		return
	}
	for _, name := range topics {
		t, ok := h.topics[name]
		if !ok {
			continue
		}
		if _, sub := t.subs[s]; !sub {
			continue
		}
		t.unsubscribe(s)
		s.topics = slices.DeleteFunc(s.topics, func(x *topic) bool { return x == t })
		h.dropTopicIfIdleLocked(t)
	}
}

// Topics returns the names of the topics s is subscribed to.
func (s *Subscription) Topics() []string {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
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
