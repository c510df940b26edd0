package hub

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
