package hub

import (
	"hash/maphash"
	"maps"
	"math"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// numShards is how many parts the topic table is split into, each with
// its own lock, so that publishers on different topics run at once. It
// is 64 so that a set of shards fits a uint64.
const numShards = 64

// allShards is the set of every shard.
const allShards = ^uint64(0)

// A shard holds the topics whose names hash to it, their history and
// their subscribers.
//
// The locks: the hub's order lock, then shard locks in index order, then
// Hub.subsMu. A publish to a topic holds the topic's shard lock while it
// takes its sequence number and queues it to every subscriber, so that a
// subscription whose topics all lie in one shard sees its messages in
// sequence order. A subscription whose topics lie in several shards
// marks them (topic.cross); a publish to a marked topic, or a batch over
// several shards, also holds the order lock, so that every message such
// a subscription gets is numbered and queued under that one lock.
type shard struct {
	mu     sync.Mutex
	index  int
	topics map[string]*topic
	// fifo holds every retained message of the shard in sequence order,
	// for the TTL and total-bytes caps; entries evicted by a topic's own
	// count cap stay until compacted.
	fifo     deque
	retained int
	// published and evicted count messages, for Stats.
	published, evicted uint64
	// tombs remembers, for topics removed once they had neither
	// subscribers nor history, up to which sequence number they lost
	// messages, so that a cursor older than that gets a reset.
	tombs tombs
	// topicsPeak is the largest size of topics since it was last
	// rebuilt: a Go map never shrinks, so a map much smaller than its
	// peak is copied into a new one.
	topicsPeak int

	_ [64]byte // publishers on neighbouring shards share no cache line
}

// front is the sequence number of the oldest message a shard retains,
// or math.MaxUint64, on a cache line of its own: the byte cap reads
// every shard's to evict the oldest message overall.
type front struct {
	seq atomic.Uint64
	_   [56]byte
}

// shardOf returns the index of the shard that holds topic name.
func (h *Hub) shardOf(name string) int {
	return int(maphash.String(h.seed, name) % numShards)
}

// maskOf returns the set of shards that hold names.
func (h *Hub) maskOf(names []string) uint64 {
	var mask uint64
	for _, name := range names {
		mask |= 1 << h.shardOf(name)
	}
	return mask
}

// spans reports whether ts lie in more than one shard.
func spans(ts []*topic) bool {
	for _, t := range ts[min(1, len(ts)):] {
		if t.shard != ts[0].shard {
			return true
		}
	}
	return false
}

// lock takes the locks of the shards in mask, in index order, after the
// order lock if global.
func (h *Hub) lock(mask uint64, global bool) {
	if global {
		h.order.Lock()
	}
	for m := mask; m != 0; m &= m - 1 {
		h.shards[bits.TrailingZeros64(m)].mu.Lock()
	}
}

// unlock releases what lock took.
func (h *Hub) unlock(mask uint64, global bool) {
	for m := mask; m != 0; m &= m - 1 {
		h.shards[bits.TrailingZeros64(m)].mu.Unlock()
	}
	if global {
		h.order.Unlock()
	}
}

// lockAll takes every lock of the hub but subsMu: what closed, epoch and
// cacheFloor are written under, so that any one of them guards a read.
func (h *Hub) lockAll()   { h.lock(allShards, true) }
func (h *Hub) unlockAll() { h.unlock(allShards, true) }

// lockSub takes the locks that guard s's topics and state, and those of
// the shards in extra, and returns them for unlock. s.mask only grows;
// it is changed with the locks of both its old and new value held, and
// the order lock unless both are the same single shard: a subscription
// in one shard is guarded by that shard's lock alone, any other by the
// order lock and its shards' locks.
func (h *Hub) lockSub(s *Subscription, extra uint64) (mask uint64, global bool) {
	for {
		old := s.mask.Load()
		mask = old | extra
		global = bits.OnesCount64(mask) != 1 || mask != old
		h.lock(mask, global)
		if s.mask.Load() == old {
			return mask, global
		}
		h.unlock(mask, global)
	}
}

// topicLocked returns the topic named name in sh, creating it if need
// be.
func (sh *shard) topicLocked(name string) *topic {
	if t, ok := sh.topics[name]; ok {
		return t
	}
	// A topic's name is the one copy of it that its messages share.
	name = strings.Clone(name)
	t := &topic{name: name, shard: uint8(sh.index), evicted: sh.tombs.lost(name)}
	sh.topics[name] = t
	sh.topicsPeak = max(sh.topicsPeak, len(sh.topics))
	return t
}

// dropTopicIfIdleLocked forgets t if nothing refers to it any more,
// keeping a tombstone of its last sequence number.
func (sh *shard) dropTopicIfIdleLocked(t *topic) {
	if len(t.subs) > 0 || t.hist.len() > 0 {
		return
	}
	if sh.topics[t.name] != t {
		return
	}
	delete(sh.topics, t.name)
	if t.evicted > 0 {
		sh.tombs.remember(t.name, t.evicted)
	}
	// A shard holds a 64th of the topics: so does its threshold.
	if shrinks(len(sh.topics), sh.topicsPeak, 4096/numShards) {
		sh.topics = maps.Collect(maps.All(sh.topics))
		sh.topicsPeak = len(sh.topics)
	}
}

// noteFrontLocked drops the messages evicted by their topic's count cap
// from the front of sh's fifo and publishes where it now starts.
func (h *Hub) noteFrontLocked(sh *shard) {
	for sh.fifo.len() > 0 && !sh.fifo.front().retained {
		sh.fifo.pop()
	}
	seq := uint64(math.MaxUint64)
	if sh.fifo.len() > 0 {
		seq = sh.fifo.front().Seq
	}
	if f := &h.fronts[sh.index]; f.seq.Load() != seq {
		f.seq.Store(seq)
	}
}

// popFrontLocked evicts the oldest message sh retains, which is the
// oldest of its topic too: per topic and per shard, history is in
// sequence order.
func (h *Hub) popFrontLocked(sh *shard) {
	m := sh.fifo.pop()
	t := sh.topics[m.Topic]
	t.hist.pop()
	h.bytes.Add(-h.evictLocked(sh, m))
	sh.dropTopicIfIdleLocked(t)
}

// trimTTLLocked expires sh's history older than the TTL, oldest first,
// for up to trimChunk messages. It reports whether more are due.
func (h *Hub) trimTTLLocked(sh *shard, cfg *Config, now time.Time) (more bool) {
	cutoff := now.Add(-cfg.HistoryTTL)
	for n := 0; ; n++ {
		h.noteFrontLocked(sh)
		if sh.fifo.len() == 0 || sh.fifo.front().Time.After(cutoff) {
			break
		}
		if n == trimChunk {
			more = true
			break
		}
		h.popFrontLocked(sh)
	}
	if sh.fifo.len() > 2*sh.retained+256 {
		sh.fifo.compact()
	}
	return more
}

// trimBytes enforces history_max_bytes over every shard: it evicts the
// oldest retained message overall until the history fits, for up to
// trimChunk messages, and reports whether more are due. It takes one
// shard lock at a time, and none may be held when it is called.
//
// Every publish calls it after queuing its messages, so that once a
// publish returns the history fitted at some point after its messages
// were counted: at any time, the history exceeds the cap by at most the
// messages of the publishes still under way.
func (h *Hub) trimBytes(cfg *Config) (more bool) {
	for n := 0; h.retainedBytes() > cfg.HistoryMaxBytes; {
		i, next := h.oldestShard()
		if i < 0 {
			return false
		}
		sh := &h.shards[i]
		sh.mu.Lock()
		// Evict from this shard while it holds the oldest message; the
		// first at least, so that the loop ends whatever publishers do
		// meanwhile.
		for k := 0; h.retainedBytes() > cfg.HistoryMaxBytes; k++ {
			h.noteFrontLocked(sh)
			if sh.fifo.len() == 0 || (k > 0 && sh.fifo.front().Seq > next) {
				break
			}
			if n == trimChunk {
				sh.mu.Unlock()
				return true
			}
			h.popFrontLocked(sh)
			n++
		}
		h.noteFrontLocked(sh)
		sh.mu.Unlock()
	}
	return false
}

// oldestShard returns the shard whose oldest retained message is the
// oldest overall, or -1 if none retains any, and the sequence number of
// the oldest message in the other shards.
func (h *Hub) oldestShard() (i int, next uint64) {
	i, best, next := -1, uint64(math.MaxUint64), uint64(math.MaxUint64)
	for j := range h.fronts {
		switch seq := h.fronts[j].seq.Load(); {
		case seq < best:
			i, best, next = j, seq, best
		case seq < next:
			next = seq
		}
	}
	return i, next
}
