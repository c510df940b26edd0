package hub

import (
	"cmp"
	"container/heap"
	"iter"
	"maps"
	"slices"
	"time"
)

// listChunk is how many topics TopicsAfter looks at per hold of the hub's
// lock, so that listing many topics never makes a publisher wait long.
const listChunk = 1024

// TopicsAfter lists at most limit live topics (with subscribers or
// retained messages), sorted by name, whose names sort after after. It
// takes the hub's lock for short stretches only: a topic created or
// removed while it lists may or may not be in the list.
func (h *Hub) TopicsAfter(after string, limit int) []TopicInfo {
	if limit <= 0 {
		return nil
	}
	// The limit smallest names after after, in a max-heap.
	var names nameHeap
	h.mu.Lock()
	h.trimLocked(h.cfg.Load(), time.Now())
	next, stop := iter.Pull2(maps.All(h.topics))
	for done := false; !done; {
		for range listChunk {
			name, _, ok := next()
			if !ok {
				done = true
				break
			}
			if name <= after {
				continue
			}
			if len(names) < limit {
				heap.Push(&names, name)
			} else if name < names[0] {
				names[0] = name
				heap.Fix(&names, 0)
			}
		}
		if !done {
			// Let publishers in; the iteration goes on where it was.
			h.mu.Unlock()
			h.mu.Lock()
		}
	}
	stop()
	h.mu.Unlock()

	slices.Sort(names)
	list := make([]TopicInfo, 0, len(names))
	for i := 0; i < len(names); {
		end := min(i+listChunk, len(names))
		h.mu.Lock()
		for _, name := range names[i:end] {
			if t, ok := h.topics[name]; ok {
				list = append(list, h.infoLocked(t))
			}
		}
		h.mu.Unlock()
		i = end
	}
	return list
}

// nameHeap is a max-heap of topic names.
type nameHeap []string

func (n nameHeap) Len() int           { return len(n) }
func (n nameHeap) Less(i, j int) bool { return cmp.Less(n[j], n[i]) }
func (n nameHeap) Swap(i, j int)      { n[i], n[j] = n[j], n[i] }
func (n *nameHeap) Push(x any)        { *n = append(*n, x.(string)) }
func (n *nameHeap) Pop() any {
	old := *n
	x := old[len(old)-1]
	*n = old[:len(old)-1]
	return x
}
