package hub

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/caddy-push/push/internal/testwait"
)

func TestWakersWakeEverySubscriptionAndStop(t *testing.T) {
	var w wakers
	const batches, per = 50, 100
	var woken atomic.Int64
	for range batches {
		subs := make([]*Subscription, per)
		for i := range subs {
			subs[i] = &Subscription{direct: WakeFunc(func() { woken.Add(1) })}
		}
		w.wake(&fanOut{subs: subs})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		running, queued := w.running, len(w.queue)
		w.mu.Unlock()
		if running == 0 && queued == 0 {
			break
		}
		if running > runtime.GOMAXPROCS(0) {
			t.Fatalf("%d wakers running, GOMAXPROCS is %d", running, runtime.GOMAXPROCS(0))
		}
		if time.Now().After(deadline) {
			t.Fatalf("wakers still running: %d, %d batches queued", running, queued)
		}
		runtime.Gosched()
	}
	if got := woken.Load(); got != batches*per {
		t.Fatalf("woke %d subscriptions, want %d", got, batches*per)
	}
}

// A fan-out to a few subscribers queued behind one to many is served
// before the large one ends.
func TestWakersTakeFanOutsInTurn(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var w wakers
	var order atomic.Int64
	gate := make(chan struct{})
	big := make([]*Subscription, 10_000)
	var bigLast atomic.Int64
	for i := range big {
		first := i == 0
		big[i] = &Subscription{direct: WakeFunc(func() {
			if first {
				<-gate // the small fan-out is queued meanwhile
			}
			bigLast.Store(order.Add(1))
		})}
	}
	small := make([]*Subscription, 2*inlineWakes)
	var smallLast atomic.Int64
	for i := range small {
		small[i] = &Subscription{direct: WakeFunc(func() { smallLast.Store(order.Add(1)) })}
	}
	w.wake(&fanOut{subs: big})
	w.wake(&fanOut{subs: small})
	close(gate)
	testwait.For(t, "the wakers to finish", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.running == 0
	})
	if got, want := order.Load(), int64(len(big)+len(small)); got != want {
		t.Fatalf("woke %d subscriptions, want %d", got, want)
	}
	if s, b := smallLast.Load(), bigLast.Load(); s > int64(len(big))/4 {
		t.Fatalf("the small fan-out ended at wake %d, the large one at %d: it waited", s, b)
	}
}

// The yield interval follows the time between deliveries: an eighth of
// it, from yieldMin to yieldMax.
func TestWakersPace(t *testing.T) {
	for _, tt := range []struct {
		every, want time.Duration
	}{
		{20 * time.Millisecond, yieldMax},
		{8 * time.Millisecond, time.Millisecond},
		{2 * time.Millisecond, yieldMin},
		{100 * time.Microsecond, yieldMin},
	} {
		var w wakers
		if got := w.yieldAfter(); got != yieldMax {
			t.Fatalf("before any delivery: %v, want %v", got, yieldMax)
		}
		now := time.Now().UnixNano()
		for range 100 {
			now += int64(tt.every)
			w.pace(now)
		}
		if got := w.yieldAfter(); got < tt.want*9/10 || got > tt.want*11/10 {
			t.Errorf("deliveries every %v: yield every %v, want %v", tt.every, got, tt.want)
		}
		// The first deliveries count from the start, not from 1970.
		var w2 wakers
		now = time.Now().UnixNano()
		for range 4 {
			now += int64(tt.every)
			w2.pace(now)
		}
		if got := time.Duration(w2.gap.Load()); got > 8*yieldMax+tt.every {
			t.Errorf("deliveries every %v: after 4, the time between them is taken as %v", tt.every, got)
		}
	}
}

// TestSubscriptionLayout checks that what a delivery and an enqueue use
// lies in a subscription's first cache line, and that the struct fills whole lines,
// so that the allocator puts every subscription at the start of one.
func TestSubscriptionLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the layout is kept for 64-bit platforms")
	}
	var s Subscription
	if size := unsafe.Sizeof(s); size%64 != 0 {
		t.Errorf("Subscription is %d bytes, not a multiple of 64: resize its padding", size)
	}
	hot := map[string]uintptr{
		"qmu": unsafe.Offsetof(s.qmu), "cut": unsafe.Offsetof(s.cut), "queue": unsafe.Offsetof(s.queue) + unsafe.Sizeof(s.queue) - 1,
		"skipping": unsafe.Offsetof(s.skipping), "limit": unsafe.Offsetof(s.limit) + unsafe.Sizeof(s.limit) - 1,
		"direct": unsafe.Offsetof(s.direct) + unsafe.Sizeof(s.direct) - 1, "hub": unsafe.Offsetof(s.hub) + unsafe.Sizeof(s.hub) - 1,
	}
	for name, end := range hot {
		if end >= 64 {
			t.Errorf("%s ends at byte %d, past the first cache line", name, end)
		}
	}
}

// TestBatches checks that Batches hands the queue an array it does not
// hold (what a Take returned stays as it was while more is queued), that
// a message at a time costs no allocation, and that the array a burst
// grew is kept for the next burst.
func TestBatches(t *testing.T) {
	h := newHub(t, Config{})
	sub, _, err := h.Subscribe([]string{"a"}, SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]*Message, 40)
	for i := range msgs {
		msgs[i] = &Message{Topic: "a", Seq: uint64(i + 1)}
	}
	var b Batches
	for i := range 10 {
		sub.enqueue(msgs[i])
		batch := b.Take(sub)
		sub.enqueue(msgs[i+1]) // must not land in batch
		if len(batch) != 1 || batch[0] != msgs[i] {
			t.Fatalf("take %d: got %v, want message %d alone", i, batch, i+1)
		}
		b.Done(batch)
		if got := b.Take(sub); len(got) != 1 || got[0] != msgs[i+1] {
			t.Fatalf("take %d: got %v, want message %d alone", i, got, i+2)
		} else {
			b.Done(got)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		sub.enqueue(msgs[0])
		b.Done(b.Take(sub))
	}); n != 0 {
		t.Errorf("a message at a time: %v allocations a take, want 0", n)
	}
	burst := func() {
		for _, m := range msgs[:20] {
			sub.enqueue(m)
		}
		batch := b.Take(sub)
		if len(batch) != 20 || batch[0] != msgs[0] || batch[19] != msgs[19] {
			t.Fatalf("burst: took %d messages", len(batch))
		}
		b.Done(batch)
	}
	burst()
	burst()
	if n := testing.AllocsPerRun(100, burst); n != 0 {
		t.Errorf("bursts of 20: %v allocations a take, want 0 once the queue grew", n)
	}
}
