package hub

import (
	"sync/atomic"
	"time"
)

// MaxKinds is how many kinds of subscription the hub counts apart (see
// SubscribeOptions.Kind).
const MaxKinds = 4

// kindCount is what the hub counts for one kind of subscription. Each
// sits on a cache line of its own: subscribers of different kinds
// writing at once do not contend.
type kindCount struct {
	subscribers int // guarded by Hub.subsMu
	delivered   atomic.Uint64
	_           [48]byte
}

// KindStats are the totals of one kind of subscription.
type KindStats struct {
	Subscribers int
	Delivered   uint64
}

// countSubscribedLocked counts a new subscription.
func (h *Hub) countSubscribedLocked(s *Subscription) {
	h.kinds[s.kind].subscribers++
}

// countEndedLocked counts a subscription that ended with err.
func (h *Hub) countEndedLocked(s *Subscription, err error) {
	h.kinds[s.kind].subscribers--
	if err == ErrShutdown || err == ErrClosed {
		h.droppedShutdown.Add(1)
	}
}

// kindOf clamps a SubscribeOptions.Kind to a valid index.
func kindOf(k int) uint8 {
	if k < 0 || k >= MaxKinds {
		return 0
	}
	return uint8(k)
}

// fillKindStatsLocked adds the per-kind totals to st.
func (h *Hub) fillKindStatsLocked(st *Stats) {
	for i := range h.kinds {
		st.Kinds[i].Subscribers = h.kinds[i].subscribers
	}
}

// fillCounters adds the hub's counters to st.
func (h *Hub) fillCounters(st *Stats) {
	st.Published += h.published.Load()
	st.DroppedSlow = h.droppedSlow.Load()
	st.DroppedShutdown = h.droppedShutdown.Load()
	for i := range h.kinds {
		d := h.kinds[i].delivered.Load()
		st.Kinds[i].Delivered = d
		st.Delivered += d
	}
}

// RoundTripObserver is told of each round trip a broker makes to an
// external store: how long it took and whether it failed. It must be
// safe for concurrent use and must not block.
type RoundTripObserver func(took time.Duration, err error)

// ObservableBroker is a Broker that talks to an external store (Redis)
// and reports each round trip, for metrics. A broker that does not
// implement it (the memory broker) makes none.
type ObservableBroker interface {
	Broker
	// ObserveRoundTrips sets the observer; it is called before Open.
	ObserveRoundTrips(RoundTripObserver)
}
