package hub

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestEncodingsCountAgainstHistoryBytes: the per-transport encodings kept
// with a retained message count against history_max_bytes like its
// payload, so that history with subscribers stays within the cap too.
func TestEncodingsCountAgainstHistoryBytes(t *testing.T) {
	const capBytes = 1 << 20
	h := newHub(t, Config{HistoryMaxBytes: capBytes})
	enc := NewEncodingForTest(t)
	sub, _, err := h.Subscribe([]string{"big"}, SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	payload := make([]byte, 100<<10)
	for range 20 {
		if _, err := h.Publish(context.Background(), &Message{Topic: "big", Data: payload}); err != nil {
			t.Fatal(err)
		}
		// A transport encodes what it delivers: here twice the payload.
		for _, m := range sub.Take(nil) {
			m.Encoded(enc, func(m *Message) any { return make([]byte, 2*len(m.Data)) })
		}
	}
	h.Topic("big") // trims
	st := h.Stats()
	if st.RetainedBytes > capBytes {
		t.Fatalf("retained %d bytes, over the cap of %d", st.RetainedBytes, capBytes)
	}
	// 300 KiB a message: three fit, not ten.
	if st.Retained != 3 {
		t.Fatalf("retained %d messages (%d bytes), want 3", st.Retained, st.RetainedBytes)
	}
	// Evicted messages no longer count, encoded or not.
	h.SetConfig(Config{HistoryMaxBytes: capBytes, HistoryTTL: time.Nanosecond})
	h.Topic("big")
	if st := h.Stats(); st.Retained != 0 || st.RetainedBytes != 0 {
		t.Fatalf("after expiry: %+v", st)
	}
}

// NewEncodingForTest reserves an encoding slot once per test binary.
func NewEncodingForTest(t *testing.T) Encoding {
	t.Helper()
	testEncodingOnce.Do(func() { testEncoding = NewEncoding() })
	return testEncoding
}

var (
	testEncodingOnce = new(sync.Once)
	testEncoding     Encoding
)

// TestRemovedTopicsDoNotResetOthers: publish once to quiet topics, let
// them go, then churn through 150,000 other topics that come and go. A
// client resuming a quiet topic from its last message lost nothing and
// should, but for rare collisions, not be reset; one resuming from
// before that message must be.
func TestRemovedTopicsDoNotResetOthers(t *testing.T) {
	// Without history, a topic without subscribers is removed as soon as
	// a message passes through it.
	h := newHub(t, Config{History: -1})
	const quiet = 200
	last := make([]string, quiet)
	for i := range quiet {
		last[i] = pub(t, h, fmt.Sprintf("news/quiet/%d", i), "x")
	}
	batch := make([]*Message, 1000)
	for i := 0; i < 150_000; i += len(batch) {
		for j := range batch {
			batch[j] = &Message{Topic: fmt.Sprintf("room/%d", i+j)}
		}
		if _, err := h.Publish(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
	}
	if st := h.Stats(); st.Topics != 0 {
		t.Fatalf("%d topics left", st.Topics)
	}
	resets := 0
	for i := range quiet {
		topic := fmt.Sprintf("news/quiet/%d", i)
		_, st, err := h.Subscribe([]string{topic}, SubscribeOptions{LastEventID: last[i]})
		if err != nil {
			t.Fatal(err)
		}
		if st.Reset {
			resets++
		}
		_, seq, _ := parseID(last[i])
		_, st, _ = h.Subscribe([]string{topic}, SubscribeOptions{LastEventID: formatID(h.Epoch(), seq-1)})
		if !st.Reset {
			t.Fatalf("%s: a resume from before its message was not reset", topic)
		}
	}
	// About 1-exp(-150000/2^20) = 13% collide.
	if resets > quiet*3/10 {
		t.Fatalf("%d of %d quiet topics reset", resets, quiet)
	}
	t.Logf("%d of %d quiet topics reset by collisions", resets, quiet)
}

// TestMemoryHeldToCap publishes 1M small messages on distinct topics at a
// 64 MiB cap: the live heap must stay within 1.25 x the cap + 32 MiB, and
// go back under 32 MiB above where it started once history has expired.
// It takes a minute and some 200 MiB: run it with
//
//	PUSH_MEMORY_TEST=1 go test -run TestMemoryHeldToCap -v ./hub
func TestMemoryHeldToCap(t *testing.T) {
	if os.Getenv("PUSH_MEMORY_TEST") == "" {
		t.Skip("set PUSH_MEMORY_TEST=1 to run")
	}
	const (
		capBytes = 64 << 20
		total    = 1_000_000
	)
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	base := heap()
	h := newHub(t, Config{HistoryMaxBytes: capBytes})
	batch := make([]*Message, 1000)
	start := time.Now()
	for i := 0; i < total; i += len(batch) {
		for j := range batch {
			batch[j] = &Message{Topic: fmt.Sprintf("user/%07d/inbox", i+j), Data: []byte(`{"n":1,"text":"hello"}`)}
		}
		if _, err := h.Publish(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	st := h.Stats()
	live := heap() - base
	t.Logf("published %d in %v: %d retained on %d topics, %d bytes counted, live heap +%.1f MiB (%.2f x counted)",
		total, elapsed.Round(time.Millisecond), st.Retained, st.Topics, st.RetainedBytes,
		float64(live)/(1<<20), float64(live)/float64(st.RetainedBytes))
	if limit := int64(capBytes*5/4 + 32<<20); live > limit {
		t.Errorf("live heap +%d bytes, over %d", live, limit)
	}
	// Listing every topic, a page at a time, and expiring all history
	// keep a publisher waiting only briefly: compare with the longest
	// wait while nothing else happens, the machine's own noise.
	var maxWait atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			if _, err := h.Publish(context.Background(), &Message{Topic: "probe"}); err != nil {
				t.Error(err)
				return
			}
			if d := int64(time.Since(t0)); d > maxWait.Load() {
				maxWait.Store(d)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	phase := func() time.Duration { return time.Duration(maxWait.Swap(0)).Round(time.Microsecond) }
	time.Sleep(2 * time.Second)
	idle := phase()
	t0 := time.Now()
	listed := 0
	for after := ""; ; {
		page := h.TopicsAfter(after, 1000)
		listed += len(page)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Topic
	}
	listTime, listWait := time.Since(t0), phase()
	h.SetConfig(Config{HistoryMaxBytes: capBytes, HistoryTTL: time.Nanosecond})
	t0 = time.Now()
	for h.Stats().Retained > 1 && time.Since(t0) < time.Minute { // the probe's last stays
		time.Sleep(10 * time.Millisecond) // the janitor expires it
	}
	expireTime, expireWait := time.Since(t0), phase()
	close(stop)
	<-done
	t.Logf("a publisher waited at most %v while idle; %v while %d topics were listed in pages of 1000 (%v); %v while all history expired (%v)",
		idle, listWait, listed, listTime.Round(time.Millisecond), expireWait, expireTime.Round(time.Millisecond))
	// On a quiet machine a hold of the lock lasts well under a
	// millisecond; on a busy one the OS may preempt the holder.
	if limit := 100*time.Millisecond + 2*idle; listWait > limit || expireWait > limit {
		t.Errorf("a publisher waited over %v", limit)
	}
	h.Topic("probe") // trims the probe's shard, where its last message is
	st = h.Stats()
	after := heap() - base
	t.Logf("expired: %d retained on %d topics, live heap +%.1f MiB", st.Retained, st.Topics, float64(after)/(1<<20))
	if st.Retained != 0 || after > 32<<20 {
		t.Errorf("after expiry: %d topics, live heap +%d bytes, over 32 MiB", st.Topics, after)
	}
	runtime.KeepAlive(h)
}
