package hub

import (
	"cmp"
	"container/heap"
	"slices"
	"time"
)

// listChunk is how many topics TopicsAfter looks at per hold of a shard's
// lock, so that listing many topics never makes a publisher wait long.
const listChunk = 1024

// TopicsAfter lists at most limit live topics (with subscribers or
// retained messages), sorted by name, whose names sort after after; fewer
// than limit only when there are no more. It takes each shard's lock for
// short stretches only: a topic created or removed while it lists may or
// may not be in the list, and each is described as it was when seen.
func (h *Hub) TopicsAfter(after string, limit int) []TopicInfo {
	if limit <= 0 {
		return nil
	}
	cfg := h.cfg.Load()
	h.trimBytes(cfg)
	// The limit first topics after after, as they were when seen, in a
	// max-heap by name.
	var page topicHeap
	var epoch string
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		h.trimTTLLocked(sh, cfg, time.Now())
		epoch = h.epoch
		n := 0
		for name, t := range sh.topics {
			if n++; n%listChunk == 0 {
				// Let publishers in. The iteration goes on where it
				// was: the map may change meanwhile, as it may in a
				// loop that changes it itself (a topic added or
				// removed may or may not be seen), and the lock
				// orders every change before the next step.
				sh.mu.Unlock()
				sh.mu.Lock()
			}
			if name <= after || (len(page) == limit && name >= page[0].name) {
				continue
			}
			e := topicEntry{name: name, subs: len(t.subs), retained: t.hist.len(), last: t.last}
			if len(page) < limit {
				heap.Push(&page, e)
			} else {
				page[0] = e
				heap.Fix(&page, 0)
			}
		}
		sh.mu.Unlock()
	}

	slices.SortFunc(page, func(a, b topicEntry) int { return cmp.Compare(a.name, b.name) })
	list := make([]TopicInfo, len(page))
	for i, e := range page {
		list[i] = TopicInfo{Topic: e.name, Subscribers: e.subs, Retained: e.retained}
		if e.last > 0 {
			list[i].LastID = formatID(epoch, e.last)
		}
	}
	return list
}

// topicEntry is a topic as TopicsAfter saw it.
type topicEntry struct {
	name           string
	subs, retained int
	last           uint64
}

// topicHeap is a max-heap of topics by name.
type topicHeap []topicEntry

func (p topicHeap) Len() int           { return len(p) }
func (p topicHeap) Less(i, j int) bool { return p[i].name > p[j].name }
func (p topicHeap) Swap(i, j int)      { p[i], p[j] = p[j], p[i] }
func (p *topicHeap) Push(x any)        { *p = append(*p, x.(topicEntry)) }
func (p *topicHeap) Pop() any {
	old := *p
	x := old[len(old)-1]
	*p = old[:len(old)-1]
	return x
}
