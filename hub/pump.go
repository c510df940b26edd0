package hub

import (
	"sync/atomic"
	"time"
)

// PumpLinger is how long a pump's goroutine waits for the next message
// before it ends: while messages flow it is cheaper to keep it than to
// start one for every message, and an idle subscriber still keeps none.
// A pump that Direct also writes through does not linger: the next
// delivery writes itself, and a goroutine kept for it would only be
// woken to write one message at a time.
const PumpLinger = 50 * time.Millisecond

// Pump writes a subscription's messages without a goroutine of its own
// while the subscriber is idle. Kick, the subscription's OnReady hook,
// starts a goroutine that calls write until write takes nothing and
// nothing more comes for PumpLinger. Writes never overlap.
//
// The zero Pump is not ready: call Init, then Start once whatever must
// go before live messages (the replay) is written; kicks before Start are
// ignored.
type Pump struct {
	started  atomic.Bool
	draining atomic.Bool // a goroutine runs or is about to
	direct   atomic.Bool // Direct was called: the goroutine does not linger
	sub      *Subscription
	kick     chan struct{} // wakes a lingering goroutine

	write   func() (int, error)
	onPanic func(any)
	linger  time.Duration // PumpLinger; tests lengthen it
}

// Init sets the pump up: write writes what is queued and returns how
// many messages it took (an error stops the pump until the next kick);
// onPanic, if set, is told of a panic in write, which is recovered.
func (p *Pump) Init(sub *Subscription, write func() (int, error), onPanic func(any)) {
	p.sub, p.write, p.onPanic = sub, write, onPanic
	p.linger = PumpLinger
	p.kick = make(chan struct{}, 1)
}

// Start lets kicks through, and kicks if messages are already queued.
func (p *Pump) Start() {
	p.started.Store(true)
	if p.sub.Queued() > 0 {
		p.Kick()
	}
}

// Started reports whether Start has been called. What Init set is visible
// to a caller that sees true.
func (p *Pump) Started() bool { return p.started.Load() }

// Subscription returns the subscription the pump writes from.
func (p *Pump) Subscription() *Subscription { return p.sub }

// Kick starts the pump's goroutine unless it runs. It never blocks.
func (p *Pump) Kick() {
	if !p.started.Load() {
		return
	}
	if p.draining.CompareAndSwap(false, true) {
		go p.run()
		return
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *Pump) run() {
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
		// Nothing above this goroutine recovers: a panic would take the
		// whole process down.
		if v := recover(); v != nil {
			p.draining.Store(false)
			if p.onPanic != nil {
				p.onPanic(v)
			}
		}
	}()
	for {
		n, err := p.write()
		if err != nil {
			p.draining.Store(false)
			return
		}
		if n > 0 {
			if p.direct.Load() {
				continue // write until nothing is queued, then end
			}
			if linger == nil {
				linger = time.NewTimer(p.linger)
			} else {
				linger.Reset(p.linger)
			}
			select {
			case <-p.kick:
				continue
			case <-linger.C:
			}
		}
		p.draining.Store(false)
		// A message queued after the last write took its batch found
		// draining set and started nothing: look again.
		if p.sub.Queued() == 0 || !p.draining.CompareAndSwap(false, true) {
			return
		}
	}
}

// Direct is the subscription's OnReadyDirect hook: it calls try, in the
// caller's goroutine, to write what is queued without waiting, unless a
// writer goroutine runs (that one is woken instead). try reports whether
// everything was written; if not (the socket would block, a lock was
// busy, the write was partial) the pump's goroutine writes the rest, as
// after Kick. Writes never overlap. It never blocks.
func (p *Pump) Direct(try func() bool) {
	if !p.started.Load() {
		return
	}
	if !p.direct.Load() {
		p.direct.Store(true)
	}
	if !p.draining.CompareAndSwap(false, true) {
		select {
		case p.kick <- struct{}{}:
		default:
		}
		return
	}
	done := false
	func() {
		defer func() {
			if v := recover(); v != nil {
				done = true
				p.draining.Store(false)
				if p.onPanic != nil {
					p.onPanic(v)
				}
			}
		}()
		done = try()
	}()
	if done {
		p.draining.Store(false)
		// A message queued while try wrote found draining set.
		if p.sub.Queued() == 0 || !p.draining.CompareAndSwap(false, true) {
			return
		}
	}
	go p.run()
}

// Idle reports whether the pump has started and no goroutine of it runs.
func (p *Pump) Idle() bool { return p.started.Load() && !p.draining.Load() }
