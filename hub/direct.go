package hub

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// inlineWakes is how many subscriptions a delivery wakes from its own
// goroutine; past it, the hub's wakers wake them, so that a publish is
// answered once its messages are queued.
const inlineWakes = 4

// A waker writes for yieldMin to yieldMax before it lets the runtime poll
// the network, so that a publish request arriving meanwhile is read and
// answered within about that long, whatever the writes cost. The more
// often deliveries come, the sooner it yields: an eighth of the time
// between them, on average. At 500 publishes/s with a busy core, a
// yield every 1 ms gave a publish round-trip p99 of 10-12 ms, every
// 250 µs 3-4 ms; at 50 publishes/s, where a publish rarely arrives
// during a fan-out, yields every 250 µs cost 5% more CPU per delivery.
const (
	yieldMin = 250 * time.Microsecond
	yieldMax = 2 * time.Millisecond
)

// wakeChunk is how many subscriptions of one fan-out a waker serves
// before it turns to the next fan-out queued: a fan-out to a few
// subscribers does not wait behind one to a hundred thousand.
const wakeChunk = 256

// fanOut is the subscriptions a delivery made ready, and how many of
// them the wakers have woken.
type fanOut struct {
	subs []*Subscription
	next int
}

// fanOuts keeps the lists that the wakers have served, for the next
// deliveries: at light load a fan-out to many subscribers would otherwise
// allocate its list anew each time, most of what the hub allocates.
var fanOuts = sync.Pool{New: func() any { return new(fanOut) }}

func newFanOut() *fanOut { return fanOuts.Get().(*fanOut) }

// free gives f back to fanOuts, without its subscriptions.
func (f *fanOut) free() {
	clear(f.subs)
	f.subs, f.next = f.subs[:0], 0
	fanOuts.Put(f)
}

// wakers runs the wakes that deliveries hand over, on at most GOMAXPROCS
// goroutines, which exist only while there is work. Fan-outs are served
// in turn, wakeChunk subscriptions at a time.
type wakers struct {
	mu      sync.Mutex
	queue   []*fanOut
	running int

	last atomic.Int64 // when the last delivery came, Unix ns
	gap  atomic.Int64 // the time between deliveries, a moving average, ns
}

// wake calls the OnReadyDirect hooks of f's subscriptions, whose queues a
// delivery made non-empty, once the hub's locks are released, and then
// frees f. The hooks never block: one slow socket does not delay the
// others.
func (w *wakers) wake(f *fanOut) {
	w.pace(time.Now().UnixNano())
	if len(f.subs) <= inlineWakes {
		for _, s := range f.subs {
			s.direct.Wake()
		}
		f.free()
		return
	}
	w.mu.Lock()
	w.queue = append(w.queue, f)
	start := w.running < runtime.GOMAXPROCS(0)
	if start {
		w.running++
	}
	w.mu.Unlock()
	if start {
		go w.run()
	}
}

// pace counts a delivery at now (Unix ns) in the moving average of the
// time between deliveries, from which yieldAfter derives the interval.
// Deliveries from several goroutines at once may lose an update: it is
// an estimate.
func (w *wakers) pace(now int64) {
	last := w.last.Swap(now)
	if last == 0 {
		return // the first delivery: no time between yet
	}
	gap := w.gap.Load()
	if gap == 0 {
		gap = int64(8 * yieldMax)
	}
	gap += (now - last - gap) / 4
	gap = min(max(gap, 1), int64(time.Second)) // 0 means none yet
	w.gap.Store(gap)
}

// yieldAfter is how long a waker writes before it yields.
func (w *wakers) yieldAfter() time.Duration {
	gap := time.Duration(w.gap.Load())
	if gap == 0 {
		return yieldMax // no time between deliveries yet
	}
	return min(max(gap/8, yieldMin), yieldMax)
}

// run wakes what is queued until nothing is. Every yieldAfter it parks
// in the network poller (pollYielder): a goroutine that only called
// runtime.Gosched would keep the run queue busy, and the runtime, with
// one P and no idle time, polls the network only every 10 ms.
func (w *wakers) run() {
	var y pollYielder
	defer y.close()
	since := time.Now()
	served := 0
	var rest *fanOut
	for {
		w.mu.Lock()
		if rest != nil {
			w.queue = append(w.queue, rest)
		}
		if len(w.queue) == 0 {
			w.running--
			w.queue = nil
			w.mu.Unlock()
			return
		}
		f := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		w.mu.Unlock()
		subs := f.subs[f.next:min(len(f.subs), f.next+wakeChunk)]
		f.next += len(subs)
		rest = f
		if f.next == len(f.subs) {
			rest = nil
		}
		for _, s := range subs {
			s.direct.Wake()
			// Counted across fan-outs: many small ones (subscribers
			// whose queue was empty) must not starve the network.
			if served++; served%16 == 0 && time.Since(since) >= w.yieldAfter() {
				y.yield()
				since = time.Now()
			}
		}
		if rest == nil {
			f.free()
		}
	}
}
