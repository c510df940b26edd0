package hub

import "runtime"

// inlineWakes is how many subscriptions a delivery wakes from its own
// goroutine; past it, one goroutine wakes them all, so that a publish is
// answered once its messages are queued.
const inlineWakes = 4

// yieldEvery is how many subscriptions the waking goroutine serves before
// it lets other goroutines (a publish request) run.
const yieldEvery = 64

// wake calls the OnReadyDirect hooks of subs, whose queues a delivery
// made non-empty, once the hub lock is released. The hooks never block:
// one slow socket does not delay the others.
func wake(subs []*Subscription) {
	if len(subs) <= inlineWakes {
		for _, s := range subs {
			s.direct()
		}
		return
	}
	go func() {
		for i, s := range subs {
			s.direct()
			if i%yieldEvery == yieldEvery-1 {
				runtime.Gosched()
			}
		}
	}()
}
