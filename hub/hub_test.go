package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func newHub(t *testing.T, cfg Config) *Hub {
	t.Helper()
	h, err := New(new(MemoryBroker), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func pub(t *testing.T, h *Hub, topic, data string) string {
	t.Helper()
	ids, err := h.Publish(context.Background(), &Message{Topic: topic, Data: []byte(data)})
	if err != nil {
		t.Fatal(err)
	}
	return ids[0]
}

func replayIDs(st Start) []string {
	var ids []string
	for _, m := range st.Replay {
		ids = append(ids, m.ID())
	}
	return ids
}

func TestIDsIncreaseAcrossTopics(t *testing.T) {
	h := newHub(t, Config{})
	var last uint64
	for i := range 10 {
		id := pub(t, h, fmt.Sprint("t", i%3), "x")
		epoch, seq, ok := parseID(id)
		if !ok || epoch != h.Epoch() || seq <= last {
			t.Fatalf("ID %s after %d", id, last)
		}
		last = seq
	}
	other := newHub(t, Config{})
	if other.Epoch() == h.Epoch() {
		t.Fatal("two hubs share an epoch")
	}
}

func TestReplayAcrossTopicsInOrder(t *testing.T) {
	h := newHub(t, Config{})
	cursor := pub(t, h, "a", "0")
	want := []string{pub(t, h, "b", "1"), pub(t, h, "a", "2")}
	pub(t, h, "c", "not ours")
	want = append(want, pub(t, h, "b", "3"))
	sub, st, err := h.Subscribe([]string{"a", "b"}, SubscribeOptions{LastEventID: cursor})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if st.Reset || strings.Join(replayIDs(st), ",") != strings.Join(want, ",") {
		t.Fatalf("replay %v reset %v, want %v", replayIDs(st), st.Reset, want)
	}
}

func TestHistoryCountCap(t *testing.T) {
	h := newHub(t, Config{History: 3})
	var ids []string
	for i := range 5 {
		ids = append(ids, pub(t, h, "a", fmt.Sprint(i)))
	}
	_, st, _ := h.Subscribe([]string{"a"}, SubscribeOptions{LastEventID: EarliestID})
	if got := replayIDs(st); strings.Join(got, ",") != strings.Join(ids[2:], ",") {
		t.Fatalf("earliest = %v, want %v", got, ids[2:])
	}
	// ids[1] is the last evicted: resuming from it misses nothing.
	_, st, _ = h.Subscribe([]string{"a"}, SubscribeOptions{LastEventID: ids[1]})
	if st.Reset || len(st.Replay) != 3 {
		t.Fatalf("from last evicted: reset %v replay %d", st.Reset, len(st.Replay))
	}
	_, st, _ = h.Subscribe([]string{"a"}, SubscribeOptions{LastEventID: ids[0]})
	if !st.Reset || len(st.Replay) != 0 || st.Head != ids[4] {
		t.Fatalf("from evicted: %+v", st)
	}
}

func TestHistoryOff(t *testing.T) {
	h := newHub(t, Config{History: -1})
	id := pub(t, h, "a", "x")
	_, st, _ := h.Subscribe([]string{"a"}, SubscribeOptions{LastEventID: EarliestID})
	if len(st.Replay) != 0 {
		t.Fatal("history off retained a message")
	}
	pub(t, h, "a", "y")
	if _, st, _ = h.Subscribe([]string{"a"}, SubscribeOptions{LastEventID: id}); !st.Reset {
		t.Fatal("missed message not reported with history off")
	}
}

func TestHistoryBytesCapEvictsOldestOverall(t *testing.T) {
	size := (&Message{Topic: "a", Data: make([]byte, 1024)}).size()
	// Three messages, and the two topics that hold them.
	limit := 3*size + 2*(&topic{name: "a"}).size()
	h := newHub(t, Config{HistoryMaxBytes: limit})
	ids := []string{
		pub(t, h, "a", strings.Repeat("x", 1024)),
		pub(t, h, "b", strings.Repeat("x", 1024)),
		pub(t, h, "a", strings.Repeat("x", 1024)),
		pub(t, h, "b", strings.Repeat("x", 1024)),
	}
	st := h.Stats()
	if st.Retained != 3 || st.RetainedBytes != limit || st.Evicted != 1 {
		t.Fatalf("stats %+v", st)
	}
	_, s, _ := h.Subscribe([]string{"a", "b"}, SubscribeOptions{LastEventID: EarliestID})
	if got := replayIDs(s); strings.Join(got, ",") != strings.Join(ids[1:], ",") {
		t.Fatalf("retained %v, want %v", got, ids[1:])
	}
	if _, s, _ = h.Subscribe([]string{"a"}, SubscribeOptions{LastEventID: "x"}); !s.Reset {
		t.Fatal("garbage cursor not reset")
	}
	// b lost nothing after ids[0]; a did.
	if _, s, _ = h.Subscribe([]string{"b"}, SubscribeOptions{LastEventID: ids[0]}); s.Reset {
		t.Fatal("b reset although it lost nothing")
	}
}

func TestHistoryTTL(t *testing.T) {
	h := newHub(t, Config{HistoryTTL: 50 * time.Millisecond})
	id := pub(t, h, "a", "old")
	// The janitor expires it while no one publishes, and the topic goes.
	deadline := time.Now().Add(5 * time.Second)
	for h.Stats().Retained != 0 {
		if time.Now().After(deadline) {
			t.Fatal("message not expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := h.Topic("a"); ok {
		t.Fatal("expired topic still listed")
	}
	// The topic's tombstone still tells a late resumer it missed something.
	pub(t, h, "other", "x")
	if _, st, _ := h.Subscribe([]string{"a"}, SubscribeOptions{LastEventID: "X" + id}); !st.Reset {
		t.Fatal("foreign cursor not reset")
	}
	cursorBefore := formatID(h.Epoch(), 0)
	if _, st, _ := h.Subscribe([]string{"a"}, SubscribeOptions{LastEventID: cursorBefore}); !st.Reset {
		t.Fatal("resume across an expired message not reset")
	}
	if _, st, _ := h.Subscribe([]string{"a"}, SubscribeOptions{LastEventID: id}); st.Reset {
		t.Fatal("resume from the last message of an expired topic reset")
	}
}

func TestSlowSubscriberIsCutAndPublisherNeverWaits(t *testing.T) {
	h := newHub(t, Config{Buffer: 8})
	ended := make(chan error, 2)
	slow, _, err := h.Subscribe([]string{"a"}, SubscribeOptions{OnEnd: func(err error) { ended <- err }})
	if err != nil {
		t.Fatal(err)
	}
	fast, _, _ := h.Subscribe([]string{"a"}, SubscribeOptions{})
	got := 0
	for i := range 1000 { // never blocks although slow reads nothing
		pub(t, h, "a", fmt.Sprint(i))
		got += len(fast.Take(nil))
	}
	<-slow.Done()
	if slow.Err() != ErrSlow || got != 1000 {
		t.Fatalf("slow err %v, fast got %d", slow.Err(), got)
	}
	if err := <-ended; err != ErrSlow {
		t.Fatalf("OnEnd called with %v", err)
	}
	if st := h.Stats(); st.DroppedSlow != 1 || st.Subscribers != 1 {
		t.Fatalf("stats %+v", st)
	}
	h.Close() // runs hooks before returning; the slow one's is not called again
	if len(ended) != 0 {
		t.Fatalf("OnEnd called again with %v", <-ended)
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	h, _ := New(new(MemoryBroker), Config{}, nil)
	sub, _, _ := h.Subscribe([]string{"a"}, SubscribeOptions{})
	h.Close()
	<-sub.Done()
	if sub.Err() != ErrClosed {
		t.Fatal(sub.Err())
	}
	if _, err := h.Publish(context.Background(), &Message{Topic: "a"}); err != ErrClosed {
		t.Fatalf("publish after close: %v", err)
	}
	if _, _, err := h.Subscribe([]string{"a"}, SubscribeOptions{}); err != ErrClosed {
		t.Fatalf("subscribe after close: %v", err)
	}
}

func TestValidation(t *testing.T) {
	h := newHub(t, Config{MaxMessageSize: 10})
	for _, m := range []*Message{
		{Topic: ""}, {Topic: "a b"}, {Topic: "a\x00"}, {Topic: "\xff"}, {Topic: strings.Repeat("a", 1025)},
		{Topic: "a", Event: "x\ny"}, {Topic: "a", Event: "push.reset"}, {Topic: "a", Data: make([]byte, 11)},
		// Look-alikes: invisible and bidi characters (Unicode Cf), and
		// Unicode spaces.
		{Topic: "news\u200b"}, {Topic: "\u202enews"}, {Topic: "\ufeffnews"}, {Topic: "a\u00a0b"}, {Topic: "a\u2028b"},
		// Segments a path cleaner would change.
		{Topic: "chat//lobby"}, {Topic: "chat/./lobby"}, {Topic: "x/../chat"}, {Topic: "/chat"}, {Topic: "chat/"},
		{Topic: "."}, {Topic: ".."}, {Topic: "/"},
	} {
		_, err := h.Publish(context.Background(), m, &Message{Topic: "ok"})
		if err == nil {
			t.Errorf("topic %q event %q (%d bytes) published", m.Topic, m.Event, len(m.Data))
		} else if !errors.Is(err, ErrInvalid) {
			t.Errorf("topic %q: %v does not match ErrInvalid", m.Topic, err)
		}
	}
	if st := h.Stats(); st.Published != 0 || st.Topics != 0 {
		t.Fatalf("rejected batch left %+v", st)
	}
	for _, topic := range []string{"a.b", "a/.b/c..", "...", "caf\u00e9/\u00fcber", "user/42/*", "a{b}"} {
		if err := ValidTopic(topic); err != nil {
			t.Errorf("%q: %v", topic, err)
		}
	}
}

// TestConcurrentPublishAndResume races publishers against subscribers
// that resume from their last ID; run with -race.
func TestConcurrentPublishAndResume(t *testing.T) {
	h := newHub(t, Config{History: 10000, Buffer: 10000})
	const n = 4000
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n / 4 {
				pub(t, h, fmt.Sprint("t", (p+i)%2), "x")
			}
		}()
	}
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last, seen := "", uint64(0)
			for count := 0; count < n; {
				sub, st, err := h.Subscribe([]string{"t0", "t1"}, SubscribeOptions{LastEventID: last})
				if err != nil || st.Reset {
					errs <- fmt.Errorf("subscribe: %v reset %v", err, st.Reset)
					return
				}
				msgs := st.Replay
				for range 50 {
					select {
					case <-sub.Ready():
						msgs = append(msgs, sub.Take(nil)...)
					case <-time.After(time.Millisecond):
					}
				}
				sub.Close()
				for _, m := range msgs {
					if seen != 0 && m.Seq != seen+1 && last != "" {
						errs <- fmt.Errorf("after %d got %d", seen, m.Seq)
						return
					}
					seen, last = m.Seq, m.ID()
					count = int(m.Seq)
				}
				if last == "" {
					last = EarliestID
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestAddAndRemoveTopics(t *testing.T) {
	h := newHub(t, Config{})
	a1 := pub(t, h, "a", "a1")
	pub(t, h, "b", "b1")
	sub, _, err := h.Subscribe([]string{"a"}, SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub(t, h, "b", "b2")
	st, err := sub.Add([]string{"b", "a"}, a1)
	if err != nil {
		t.Fatal(err)
	}
	// Replay covers only the new topic, after the cursor.
	var got []string
	for _, m := range st.Replay {
		got = append(got, string(m.Data))
	}
	if fmt.Sprint(got) != "[b1 b2]" || st.Reset {
		t.Fatalf("replay %v reset %v", got, st.Reset)
	}
	if names := sub.Topics(); fmt.Sprint(names) != "[a b]" {
		t.Fatalf("topics %v", names)
	}
	pub(t, h, "b", "b3")
	if m := sub.Take(nil)[0]; string(m.Data) != "b3" || m.Seq <= st.HeadSeq {
		t.Fatalf("live %q seq %d head %d", m.Data, m.Seq, st.HeadSeq)
	}
	sub.Remove([]string{"b", "nope"})
	pub(t, h, "b", "b4")
	pub(t, h, "a", "a2")
	if q := sub.Take(nil); len(q) != 1 || string(q[0].Data) != "a2" {
		t.Fatalf("after remove got %v", q)
	}
	if _, err := sub.Add([]string{"bad topic"}, ""); err == nil {
		t.Fatal("invalid topic accepted")
	}
	st, err = sub.Add([]string{"c"}, "other-1")
	if err != nil || !st.Reset {
		t.Fatalf("foreign cursor: reset %v err %v", st.Reset, err)
	}
	sub.Close()
	if _, err := sub.Add([]string{"d"}, ""); err == nil {
		t.Fatal("add after close accepted")
	}
}
