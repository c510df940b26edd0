package hub

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-push/push/internal/testwait"
)

// TestPump checks the on-demand writer: nothing is written before Start,
// queued messages are written after it, writes never overlap, and a
// message that arrives after the writer has gone starts a new one.
func TestPump(t *testing.T) {
	h := newHub(t, Config{})
	var p Pump
	var (
		mu      sync.Mutex
		got     []string
		writing atomic.Bool
		wrote   = make(chan struct{}, 100)
	)
	sub, _, err := h.Subscribe([]string{"t"}, SubscribeOptions{OnReady: func() { p.Kick() }})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var buf []*Message
	p.Init(sub, func() (int, error) {
		if !writing.CompareAndSwap(false, true) {
			t.Error("two writes at once")
		}
		defer writing.Store(false)
		buf = sub.Take(buf[:0])
		mu.Lock()
		for _, m := range buf {
			got = append(got, string(m.Data))
		}
		mu.Unlock()
		if len(buf) > 0 {
			wrote <- struct{}{}
		}
		return len(buf), nil
	}, nil)

	publish := func(data string) {
		if _, err := h.Publish(context.Background(), &Message{Topic: "t", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	waitWrite := func() {
		t.Helper()
		select {
		case <-wrote:
		case <-time.After(5 * time.Second):
			t.Fatal("nothing written")
		}
	}
	publish("before start")
	if len(wrote) != 0 {
		t.Fatal("written before Start")
	}
	p.Start()
	waitWrite()
	publish("while lingering")
	waitWrite()
	// Wait for the writer to give up, then publish again.
	deadline := time.Now().Add(5 * time.Second)
	for p.draining.Load() {
		if time.Now().After(deadline) {
			t.Fatal("writer never ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	publish("after it ended")
	waitWrite()
	mu.Lock()
	defer mu.Unlock()
	if want := "[before start while lingering after it ended]"; fmt.Sprint(got) != want {
		t.Fatalf("wrote %v, want %s", got, want)
	}
}

// TestPumpDirect checks the write from the delivery: with no writer
// running, OnReadyDirect writes in the publisher's goroutine, before
// Publish returns; what it leaves is written by the pump's goroutine; a
// delivery that finds the writer running wakes it instead; writes never
// overlap and nothing is lost or reordered.
func TestPumpDirect(t *testing.T) {
	h := newHub(t, Config{Buffer: 1 << 16})
	var p Pump
	var (
		mu      sync.Mutex
		got     []string
		writing atomic.Bool
		leave   atomic.Bool // try writes nothing and says so
		tries   atomic.Int64
		runs    atomic.Int64
	)
	sub, _, err := h.Subscribe([]string{"t"}, SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	take := func() int {
		if !writing.CompareAndSwap(false, true) {
			t.Error("two writes at once")
		}
		defer writing.Store(false)
		buf := sub.Take(nil)
		mu.Lock()
		for _, m := range buf {
			got = append(got, string(m.Data))
		}
		mu.Unlock()
		return len(buf)
	}
	try := func() bool {
		tries.Add(1)
		if leave.Load() {
			return false
		}
		take()
		return true
	}
	p.Init(sub, func() (int, error) { runs.Add(1); return take(), nil }, nil)
	p.linger = time.Hour // a goroutine that lingered would never go
	sub.direct = WakeFunc(func() { p.Direct(try) })
	p.Start()

	if _, err := h.Publish(context.Background(), &Message{Topic: "t", Data: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	n := len(got)
	mu.Unlock()
	if n != 1 || tries.Load() != 1 || runs.Load() != 0 {
		t.Fatalf("after one publish: %d written, %d tries, %d runs; want 1, 1, 0", n, tries.Load(), runs.Load())
	}

	// try leaves everything: the goroutine writes it.
	leave.Store(true)
	if _, err := h.Publish(context.Background(), &Message{Topic: "t", Data: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	leave.Store(false)
	// Then it ends at once: the next delivery writes itself.
	testwait.For(t, "the goroutine to end once nothing is queued", func() bool { return p.Idle() })
	if runs.Load() == 0 {
		t.Fatal("the goroutine never ran")
	}

	// Concurrent publishers, some deliveries finding the writer running.
	const pubs, each = 4, 500
	var wg sync.WaitGroup
	for range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := h.Publish(context.Background(), &Message{Topic: "t", Data: []byte("x")}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for !p.Idle() || sub.Queued() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("pump never went idle")
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2+pubs*each || got[0] != "0" || got[1] != "1" {
		t.Fatalf("%d written (first %q), want %d", len(got), got[:2], 2+pubs*each)
	}
	if runs.Load() == 0 {
		t.Error("the goroutine never ran")
	}
}
