package hub

import (
	"runtime"
	"sync"
	"time"
)

// inlineWakes is how many subscriptions a delivery wakes from its own
// goroutine; past it, the hub's wakers wake them, so that a publish is
// answered once its messages are queued.
const inlineWakes = 4

// yieldAfter is how long a waker writes before it lets the runtime poll
// the network, so that a publish request arriving meanwhile is read and
// answered within about that long, whatever the writes cost. At 1 ms,
// publish round trips at 500/s with a busy core had a p99 of 10-12 ms;
// at 250 µs, 3 ms, and the parks cost under 1% of the core.
const yieldAfter = 250 * time.Microsecond

// wakeChunk is how many subscriptions of one fan-out a waker serves
// before it turns to the next fan-out queued: a fan-out to a few
// subscribers does not wait behind one to a hundred thousand.
const wakeChunk = 256

// wakers runs the wakes that deliveries hand over, on at most GOMAXPROCS
// goroutines, which exist only while there is work. Fan-outs are served
// in turn, wakeChunk subscriptions at a time.
type wakers struct {
	mu      sync.Mutex
	queue   [][]*Subscription
	running int
}

// wake calls the OnReadyDirect hooks of subs, whose queues a delivery
// made non-empty, once the hub's locks are released. The hooks never
// block: one slow socket does not delay the others.
func (w *wakers) wake(subs []*Subscription) {
	if len(subs) <= inlineWakes {
		for _, s := range subs {
			s.direct()
		}
		return
	}
	w.mu.Lock()
	w.queue = append(w.queue, subs)
	start := w.running < runtime.GOMAXPROCS(0)
	if start {
		w.running++
	}
	w.mu.Unlock()
	if start {
		go w.run()
	}
}

// run wakes what is queued until nothing is. Every yieldAfter it parks
// in the network poller (pollYielder): a goroutine that only called
// runtime.Gosched would keep the run queue busy, and the runtime, with
// one P and no idle time, polls the network only every 10 ms.
func (w *wakers) run() {
	var y pollYielder
	defer y.close()
	since := time.Now()
	var rest []*Subscription
	for {
		w.mu.Lock()
		if len(rest) > 0 {
			w.queue = append(w.queue, rest)
		}
		if len(w.queue) == 0 {
			w.running--
			w.queue = nil
			w.mu.Unlock()
			return
		}
		subs := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		w.mu.Unlock()
		subs, rest = subs[:min(len(subs), wakeChunk)], subs[min(len(subs), wakeChunk):]
		for i, s := range subs {
			s.direct()
			if i%16 == 15 && time.Since(since) >= yieldAfter {
				y.yield()
				since = time.Now()
			}
		}
	}
}
