package hub

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// topicsInShards returns n topic names that lie in n different shards.
func topicsInShards(h *Hub, n int) []string {
	var names []string
	seen := map[int]bool{}
	for i := 0; len(names) < n; i++ {
		name := fmt.Sprintf("room/%04d", i) // all of one length
		if s := h.shardOf(name); !seen[s] {
			seen[s] = true
			names = append(names, name)
		}
	}
	return names
}

// seqOf returns the sequence number of message ID id.
func seqOf(t *testing.T, id string) uint64 {
	t.Helper()
	_, seq, ok := parseID(id)
	if !ok {
		t.Fatalf("bad ID %q", id)
	}
	return seq
}

// received is what one subscriber got, and from where it should have got
// everything on its topics.
type received struct {
	name   string
	topics []string
	after  map[string]uint64 // per topic, the sequence number after which it gets all
	got    []*Message        // replay, then live, in the order sent
	upTo   uint64            // what it must have got ends here (0: everything)
	// addReplay is the replay of an Add: sent before the live messages
	// queued after the Add, it may go back before some queued earlier.
	addReplay []*Message
}

// check verifies that r got, in strictly increasing ID order, exactly
// the messages on its topics after its starting points, given every
// message published (by sequence number).
func (r *received) check(t *testing.T, all map[uint64]string) {
	t.Helper()
	seen := map[uint64]bool{}
	for _, list := range [][]*Message{r.got, r.addReplay} {
		var last uint64
		for _, m := range list {
			if seen[m.Seq] {
				t.Errorf("%s: %s received twice", r.name, m.ID())
				return
			}
			seen[m.Seq] = true
			if m.Seq <= last {
				t.Errorf("%s: %s after %d: out of order", r.name, m.ID(), last)
				return
			}
			last = m.Seq
		}
	}
	for seq, topic := range all {
		after, mine := r.after[topic]
		if !mine || seq <= after || (r.upTo > 0 && seq > r.upTo) {
			continue
		}
		if !seen[seq] {
			t.Errorf("%s: lost %d on %s", r.name, seq, topic)
			return
		}
	}
	for seq := range seen {
		if _, mine := r.after[all[seq]]; !mine {
			t.Errorf("%s: got %d on %s, not one of its topics", r.name, seq, all[seq])
			return
		}
	}
}

// TestShardedPublishKeepsOrder publishes from several goroutines at once
// to topics in different shards, singly and in batches, while
// subscribers on one topic, on topics in several shards, resuming, and
// adding topics check that each gets its messages in strictly increasing
// ID order with nothing lost or duplicated.
func TestShardedPublishKeepsOrder(t *testing.T) {
	h := newHub(t, Config{Buffer: 1 << 20, History: 1 << 20})
	topics := topicsInShards(h, 6)
	ctx := context.Background()
	const (
		publishers = 4
		rounds     = 3000
	)

	var mu sync.Mutex
	all := map[uint64]string{} // every message published: sequence number to topic
	var ids []string           // cursors for resumers
	var results []*received
	record := func(r *received) {
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	}

	// Subscribers for the whole run: one per topic, and several that
	// span shards.
	type live struct {
		r   *received
		sub *Subscription
	}
	var lives []live
	subscribe := func(name string, ts []string, cursor string) live {
		sub, st, err := h.Subscribe(ts, SubscribeOptions{LastEventID: cursor})
		if err != nil || st.Reset {
			t.Errorf("%s: %v, reset %v", name, err, st.Reset)
			sub, _, _ = h.Subscribe(nil, SubscribeOptions{})
		}
		r := &received{name: name, topics: slices.Clone(ts), after: map[string]uint64{}, got: slices.Clone(st.Replay)}
		from := st.HeadSeq
		if cursor != "" {
			from = seqOf(t, cursor)
		}
		for _, topic := range ts {
			r.after[topic] = from
		}
		return live{r, sub}
	}
	for i, topic := range topics {
		lives = append(lives, subscribe(fmt.Sprint("single ", i), []string{topic}, ""))
	}
	lives = append(lives,
		subscribe("cross 0,1", topics[0:2], ""),
		subscribe("cross 1,3,5", []string{topics[1], topics[3], topics[5]}, ""),
		subscribe("cross all", topics, ""))

	start := make(chan struct{})
	var wg, resumers sync.WaitGroup
	var publishing atomic.Int32
	publishing.Store(publishers)
	for p := range publishers {
		wg.Go(func() {
			defer publishing.Add(-1)
			rng := rand.New(rand.NewPCG(uint64(p), 1))
			<-start
			for range rounds {
				var msgs []*Message
				if rng.IntN(10) == 0 { // a batch over shards
					for range 1 + rng.IntN(3) {
						msgs = append(msgs, &Message{Topic: topics[rng.IntN(len(topics))]})
					}
				} else {
					msgs = []*Message{{Topic: topics[rng.IntN(len(topics))]}}
				}
				got, err := h.Publish(ctx, msgs...)
				if err != nil {
					t.Error(err)
					return
				}
				for i, id := range got {
					if i > 0 && seqOf(t, id) != seqOf(t, got[i-1])+1 {
						t.Errorf("batch IDs %v not consecutive", got)
					}
				}
				mu.Lock()
				for i, m := range msgs {
					all[m.Seq] = m.Topic
					ids = append(ids, got[i])
				}
				mu.Unlock()
			}
		})
	}
	// Subscribers that resume from a cursor while publishers run, take
	// what comes for a while and leave; and one that adds topics.
	for k := range 2 {
		resumers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(k), 2))
			<-start
			for n := 0; publishing.Load() > 0; n++ {
				mu.Lock()
				cursor := ""
				if len(ids) > 0 {
					cursor = ids[rng.IntN(len(ids))]
				}
				mu.Unlock()
				if cursor == "" {
					time.Sleep(time.Millisecond)
					continue
				}
				var ts []string
				for _, i := range rng.Perm(len(topics))[:1+rng.IntN(3)] {
					ts = append(ts, topics[i])
				}
				l := subscribe(fmt.Sprintf("resumer %d.%d %v", k, n, ts), ts, cursor)
				for range 1 + rng.IntN(20) {
					l.r.got = append(l.r.got, l.sub.Take(nil)...)
					time.Sleep(50 * time.Microsecond)
				}
				l.sub.Close()
				// It got everything on its topics up to the last it got.
				l.r.got = append(l.r.got, l.sub.Take(nil)...)
				if len(l.r.got) > 0 {
					l.r.upTo = slices.MaxFunc(l.r.got, func(a, b *Message) int { return int(a.Seq) - int(b.Seq) }).Seq
				} else {
					l.r.upTo = l.r.after[ts[0]]
				}
				record(l.r)
			}
		})
	}
	adder := subscribe("adder", topics[:1], "")
	resumers.Go(func() {
		<-start
		for publishing.Load() == publishers && len(adder.r.got) < 50 {
			adder.r.got = append(adder.r.got, adder.sub.Take(nil)...)
			time.Sleep(100 * time.Microsecond)
		}
		adder.r.got = append(adder.r.got, adder.sub.Take(nil)...)
		cursor := formatID(h.Epoch(), adder.r.after[topics[0]])
		if n := len(adder.r.got); n > 0 {
			cursor = adder.r.got[n-1].ID()
		}
		added := []string{topics[2], topics[4]}
		st, err := adder.sub.Add(added, cursor)
		if err != nil || st.Reset {
			t.Errorf("add: %v, reset %v", err, st.Reset)
			return
		}
		adder.r.addReplay = st.Replay
		for _, topic := range added {
			adder.r.after[topic] = seqOf(t, cursor)
		}
		adder.r.topics = append(adder.r.topics, added...)
	})
	close(start)
	wg.Wait()
	resumers.Wait()
	if t.Failed() {
		return
	}

	adder.r.got = append(adder.r.got, adder.sub.Take(nil)...)
	record(adder.r)
	for _, l := range lives {
		l.r.got = append(l.r.got, l.sub.Take(nil)...)
		if len(l.r.got) == 0 {
			t.Fatalf("%s got nothing", l.r.name)
		}
		record(l.r)
	}
	if len(all) < publishers*rounds {
		t.Fatalf("%d messages published", len(all))
	}
	for _, r := range results {
		r.check(t, all)
	}
	t.Logf("%d messages; %d subscribers checked", len(all), len(results))
}

// TestByteCapAndTTLOverShards: history spread over every shard still
// fits history_max_bytes, evicted oldest first overall, and expires.
func TestByteCapAndTTLOverShards(t *testing.T) {
	h := newHub(t, Config{HistoryTTL: time.Hour})
	topics := topicsInShards(h, numShards)
	data := make([]byte, 1000)
	size := (&Message{Data: data}).size() + (&topic{name: topics[0]}).size()
	// The newest 40 messages, on 40 topics, fit; 41 do not.
	limit := 40 * size
	h.SetConfig(Config{HistoryTTL: time.Hour, HistoryMaxBytes: limit})
	ctx := context.Background()

	// Concurrent publishers: the history never exceeds the cap by more
	// than the messages being published, and fits once they are done.
	const publishers = 4
	var wg sync.WaitGroup
	var over atomic.Int64
	for p := range publishers {
		wg.Go(func() {
			for i := range 2000 {
				if _, err := h.Publish(ctx, &Message{Topic: topics[(p*7+i)%len(topics)], Data: data}); err != nil {
					t.Error(err)
					return
				}
				if b := h.retainedBytes() - limit; b > over.Load() {
					over.Store(b)
				}
			}
		})
	}
	wg.Wait()
	if o := over.Load(); o > publishers*size {
		t.Errorf("history %d bytes over the cap while %d publishers ran", o, publishers)
	}
	if st := h.Stats(); st.RetainedBytes > limit {
		t.Fatalf("%d bytes retained, cap %d", st.RetainedBytes, limit)
	}

	// One publisher: the history is exactly the newest messages.
	var ids []string
	for i := range 300 {
		got, err := h.Publish(ctx, &Message{Topic: topics[(i*13)%len(topics)], Data: data})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
	}
	st := h.Stats()
	if st.RetainedBytes > limit || st.Retained != 40 {
		t.Fatalf("retained %d messages, %d bytes (cap %d)", st.Retained, st.RetainedBytes, limit)
	}
	sub, start, err := h.Subscribe(topics, SubscribeOptions{LastEventID: EarliestID})
	if err != nil {
		t.Fatal(err)
	}
	sub.Close()
	if got, want := replayIDs(start), ids[len(ids)-st.Retained:]; !slices.Equal(got, want) {
		t.Fatalf("retained %v\nwant the newest %v", got, want)
	}

	// The TTL expires history on every shard, and the topics go.
	h.SetConfig(Config{HistoryTTL: 20 * time.Millisecond, HistoryMaxBytes: limit})
	for i, topic := range topics {
		pub(t, h, topic, fmt.Sprint(i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for st := h.Stats(); st.Retained != 0 || st.RetainedBytes != 0 || st.Topics != 0; st = h.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("not expired: %+v", st)
		}
		time.Sleep(20 * time.Millisecond) // the janitor runs each second
	}
}
