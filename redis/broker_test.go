package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/internal/redistest"
)

// node is one hub on a Redis broker, as one Caddy instance has.
type node struct {
	*hub.Hub
	b *Broker
}

func newNode(t *testing.T, srv *redistest.Server, cfg hub.Config, tweak func(*Broker)) node {
	t.Helper()
	b, err := New(Options{URL: srv.URL(), Prefix: "t:", Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b.poll = 50 * time.Millisecond
	if tweak != nil {
		tweak(b)
	}
	h, err := hub.New(b, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return node{h, b}
}

func publish(t *testing.T, n node, topic, data string) string {
	t.Helper()
	ids, err := n.Publish(context.Background(), &hub.Message{Topic: topic, Data: []byte(data)})
	if err != nil {
		t.Fatal(err)
	}
	return ids[0]
}

// collect reads a subscription's live messages until it has want of
// them, or fails the test after 10s.
func collect(t *testing.T, s *hub.Subscription, want int) []*hub.Message {
	t.Helper()
	var got []*hub.Message
	deadline := time.After(10 * time.Second)
	for len(got) < want {
		select {
		case <-s.Ready():
			got = append(got, s.Take(nil)...)
		case <-s.Done():
			t.Fatalf("subscription ended after %d of %d messages: %v", len(got), want, s.Err())
		case <-deadline:
			t.Fatalf("got %d of %d messages", len(got), want)
		}
	}
	return got
}

func ids(msgs []*hub.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID()
	}
	return out
}

func TestTwoHubsOneSequence(t *testing.T) {
	srv := redistest.Start(t)
	a := newNode(t, srv, hub.Config{}, nil)
	b := newNode(t, srv, hub.Config{}, nil)
	if a.Epoch() != b.Epoch() {
		t.Fatalf("epochs %s and %s", a.Epoch(), b.Epoch())
	}
	subA, _, err := a.Subscribe([]string{"x", "y"}, hub.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	subB, _, err := b.Subscribe([]string{"x", "y"}, hub.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var published []string
	for i := range 20 {
		n := []node{a, b}[i%2]
		published = append(published, publish(t, n, []string{"x", "y"}[i%3%2], fmt.Sprint(i)))
	}
	// A batch is one script call: consecutive IDs, all or nothing.
	batch, err := b.Publish(context.Background(),
		&hub.Message{Topic: "x", Data: []byte("b0")}, &hub.Message{Topic: "y", Data: []byte("b1")})
	if err != nil {
		t.Fatal(err)
	}
	published = append(published, batch...)
	// A batch with one invalid message publishes nothing.
	if _, err := a.Publish(context.Background(), &hub.Message{Topic: "x"}, &hub.Message{Topic: ""}); err == nil {
		t.Fatal("invalid batch published")
	}
	gotA, gotB := ids(collect(t, subA, len(published))), ids(collect(t, subB, len(published)))
	if strings.Join(gotA, " ") != strings.Join(published, " ") || strings.Join(gotB, " ") != strings.Join(published, " ") {
		t.Fatalf("published %v\nA got %v\nB got %v", published, gotA, gotB)
	}
	for i := 1; i < len(published); i++ {
		if seqOf(t, published[i]) != seqOf(t, published[i-1])+1 {
			t.Fatalf("IDs not consecutive: %v", published)
		}
	}
	if got := srv.Do("XLEN", "t:"+a.Epoch()+":log"); got != fmt.Sprint(":", len(published)) {
		t.Fatalf("log holds %s, want %d", got, len(published))
	}
	// Stats: subscribers are this hub's, history is the shared one.
	st := b.StatsWithHistory()
	if st.Subscribers != 1 || st.History == nil || st.History.Broker != "redis" ||
		st.History.Retained != int64(len(published)) || st.History.LastID != published[len(published)-1] ||
		st.History.RetainedBytes <= 0 {
		t.Fatalf("stats: %+v, history %+v", st, st.History)
	}
}

func TestObserveSeesEveryCall(t *testing.T) {
	srv := redistest.Start(t)
	var mu sync.Mutex
	calls := map[string]int{}
	failed := 0
	trips := 0
	a := newNode(t, srv, hub.Config{}, func(b *Broker) {
		b.opts.Observe = func(op string, d time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			calls[op]++
			if err != nil {
				failed++
			}
		}
		b.ObserveRoundTrips(func(d time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			trips++
		})
	})
	publish(t, a, "x", "1")
	a.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: "x-1"})
	a.StatsWithHistory()
	srv.Kill()
	a.Publish(context.Background(), &hub.Message{Topic: "x"})
	mu.Lock()
	defer mu.Unlock()
	if calls["publish"] != 2 || calls["stats"] != 1 || calls["sync"] < 1 || failed < 1 {
		t.Fatalf("observed %v, %d failed", calls, failed)
	}
	total := 0
	for _, n := range calls {
		total += n
	}
	if trips != total {
		t.Fatalf("round trip observer saw %d calls, Observe %d", trips, total)
	}
}

func seqOf(t *testing.T, id string) uint64 {
	t.Helper()
	i := strings.LastIndexByte(id, '-')
	var n uint64
	if _, err := fmt.Sscan(id[i+1:], &n); err != nil {
		t.Fatalf("ID %q: %v", id, err)
	}
	return n
}

func TestResumeOnAFreshHubFromRedis(t *testing.T) {
	srv := redistest.Start(t)
	a := newNode(t, srv, hub.Config{History: 3}, nil)
	var idsX []string
	for i := range 5 {
		idsX = append(idsX, publish(t, a, "x", fmt.Sprint("x", i)))
		publish(t, a, "y", fmt.Sprint("y", i))
	}
	// b has nothing in memory: replay comes from Redis.
	b := newNode(t, srv, hub.Config{History: 3}, nil)
	sub, st, err := b.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: idsX[2]})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if st.Reset || strings.Join(ids(st.Replay), " ") != strings.Join(idsX[3:], " ") {
		t.Fatalf("resume after %s: reset %v, replay %v, want %v", idsX[2], st.Reset, ids(st.Replay), idsX[3:])
	}
	if string(st.Replay[0].Data) != "x3" || st.Replay[0].Time.IsZero() {
		t.Fatalf("replayed message: %+v", st.Replay[0])
	}
	// History 3: x0 and x1 are evicted, a cursor before them gets a reset.
	_, st, _ = b.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: idsX[0]})
	if !st.Reset || len(st.Replay) != 0 {
		t.Fatalf("evicted cursor: reset %v, replay %v", st.Reset, ids(st.Replay))
	}
	_, st, _ = b.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: hub.EarliestID})
	if st.Reset || strings.Join(ids(st.Replay), " ") != strings.Join(idsX[2:], " ") {
		t.Fatalf("earliest: reset %v, replay %v", st.Reset, ids(st.Replay))
	}
	// A cursor from a later message than b has seen (it was read on
	// another instance) is served from Redis, not reset.
	latest := publish(t, a, "x", "x5")
	_, st, _ = b.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: idsX[4]})
	if st.Reset || len(st.Replay) != 1 || st.Replay[0].ID() != latest || st.HeadSeq < seqOf(t, latest) {
		t.Fatalf("cursor ahead: reset %v, replay %v, head %d", st.Reset, ids(st.Replay), st.HeadSeq)
	}
	// A replay larger than the cap is a reset, not a partial replay.
	b.b.maxReplay = 5
	if _, st, _ = b.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: idsX[2]}); !st.Reset || len(st.Replay) != 0 {
		t.Fatalf("replay over the cap: reset %v, replay %v", st.Reset, ids(st.Replay))
	}
	b.b.maxReplay = 6
	if _, st, _ = b.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: idsX[2]}); st.Reset || len(st.Replay) != 3 {
		t.Fatalf("replay at the cap: reset %v, replay %v", st.Reset, ids(st.Replay))
	}
	// Foreign cursors get a reset.
	_, st, _ = b.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: "other-3"})
	if !st.Reset {
		t.Fatal("foreign cursor served")
	}
}

func TestHistoryCapsEnforcedInRedis(t *testing.T) {
	srv := redistest.Start(t)
	t.Run("bytes", func(t *testing.T) {
		// Each message counts 128 bytes plus topic and data: two fit.
		a := newNode(t, srv, hub.Config{HistoryMaxBytes: 2*(128+1+10) + 5}, func(b *Broker) { b.opts.Prefix = "bytes:" })
		first := publish(t, a, "a", "0123456789")
		second := publish(t, a, "b", "0123456789")
		publish(t, a, "a", "0123456789")
		b := newNode(t, srv, hub.Config{}, func(b *Broker) { b.opts.Prefix = "bytes:" })
		if _, st, _ := b.Subscribe([]string{"a"}, hub.SubscribeOptions{LastEventID: first}); st.Reset {
			t.Fatal("cursor after the evicted message reset")
		}
		if _, st, _ := b.Subscribe([]string{"b"}, hub.SubscribeOptions{LastEventID: second}); st.Reset {
			t.Fatal("cursor at the last message of b reset")
		}
		if _, st, _ := b.Subscribe([]string{"a"}, hub.SubscribeOptions{LastEventID: hub.EarliestID}); len(st.Replay) != 1 {
			t.Fatalf("earliest after eviction: %v", ids(st.Replay))
		}
		_, st, _ := b.Subscribe([]string{"a"}, hub.SubscribeOptions{LastEventID: formatTestID(a.Epoch(), 0)})
		if !st.Reset {
			t.Fatal("cursor before an evicted message not reset")
		}
		if got := srv.Do("GET", "bytes:"+a.Epoch()+":bytes"); got != "$3" {
			t.Fatalf("bytes counter: %s", got)
		}
	})
	t.Run("ttl", func(t *testing.T) {
		a := newNode(t, srv, hub.Config{HistoryTTL: 300 * time.Millisecond}, func(b *Broker) { b.opts.Prefix = "ttl:" })
		publish(t, a, "a", "old")
		time.Sleep(400 * time.Millisecond)
		// No publish since: the instances' periodic look expires it.
		key := "ttl:" + a.Epoch() + ":t:a"
		deadline := time.Now().Add(5 * time.Second)
		for srv.Do("EXISTS", key) != ":0" {
			if time.Now().After(deadline) {
				t.Fatal("expired history still in redis")
			}
			time.Sleep(20 * time.Millisecond)
		}
		b := newNode(t, srv, hub.Config{}, func(b *Broker) { b.opts.Prefix = "ttl:" })
		_, st, _ := b.Subscribe([]string{"a"}, hub.SubscribeOptions{LastEventID: formatTestID(a.Epoch(), 0)})
		if !st.Reset {
			t.Fatal("cursor before an expired message not reset")
		}
	})
	t.Run("off", func(t *testing.T) {
		a := newNode(t, srv, hub.Config{History: -1}, func(b *Broker) { b.opts.Prefix = "off:" })
		id := publish(t, a, "a", "x")
		if got := srv.Do("EXISTS", "off:"+a.Epoch()+":t:a"); got != ":0" {
			t.Fatal("history kept with history off")
		}
		b := newNode(t, srv, hub.Config{}, func(b *Broker) { b.opts.Prefix = "off:" })
		if _, st, _ := b.Subscribe([]string{"a"}, hub.SubscribeOptions{LastEventID: id}); st.Reset {
			t.Fatal("cursor at the last message reset")
		}
		if _, st, _ := b.Subscribe([]string{"a"}, hub.SubscribeOptions{LastEventID: formatTestID(a.Epoch(), 0)}); !st.Reset {
			t.Fatal("cursor before an unretained message not reset")
		}
	})
}

func formatTestID(epoch string, seq uint64) string { return fmt.Sprintf("%s-%d", epoch, seq) }

// lossy drops the pub/sub messages whose payload contains one of the
// marked data strings.
type lossy struct {
	mu   sync.Mutex
	drop map[string]bool
}

func (l *lossy) dropped(p string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for d := range l.drop {
		if strings.HasSuffix(p, ":"+d) {
			return true
		}
	}
	return false
}

func TestLostPubSubMessagesAreFilledFromRedis(t *testing.T) {
	srv := redistest.Start(t)
	l := &lossy{drop: map[string]bool{"m3": true, "m4": true, "m9": true}}
	a := newNode(t, srv, hub.Config{}, nil)
	b := newNode(t, srv, hub.Config{}, func(b *Broker) {
		b.dropped = l.dropped
		b.poll = time.Hour // only the next message reveals the gap
	})
	sub, _, err := b.Subscribe([]string{"x"}, hub.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 9 {
		want = append(want, publish(t, a, "x", fmt.Sprint("m", i)))
	}
	got := collect(t, sub, len(want))
	if strings.Join(ids(got), " ") != strings.Join(want, " ") {
		t.Fatalf("got %v, want %v", ids(got), want)
	}
	if string(got[3].Data) != "m3" {
		t.Fatalf("filled message: %q", got[3].Data)
	}
}

func TestLostTailFoundByPolling(t *testing.T) {
	srv := redistest.Start(t)
	l := &lossy{drop: map[string]bool{"last": true}}
	a := newNode(t, srv, hub.Config{}, nil)
	b := newNode(t, srv, hub.Config{}, func(b *Broker) { b.dropped = l.dropped })
	sub, _, _ := b.Subscribe([]string{"x"}, hub.SubscribeOptions{})
	want := publish(t, a, "x", "last")
	if got := collect(t, sub, 1); got[0].ID() != want {
		t.Fatalf("got %s, want %s", got[0].ID(), want)
	}
}

func TestUnfillableGapResets(t *testing.T) {
	srv := redistest.Start(t)
	l := &lossy{drop: map[string]bool{"m1": true, "m2": true}}
	a := newNode(t, srv, hub.Config{History: 1}, nil)
	b := newNode(t, srv, hub.Config{History: 1}, func(b *Broker) {
		b.dropped = l.dropped
		b.poll = time.Hour
	})
	sub, _, _ := b.Subscribe([]string{"x"}, hub.SubscribeOptions{})
	other, _, _ := b.Subscribe([]string{"y"}, hub.SubscribeOptions{})
	first := publish(t, a, "x", "m0")
	collect(t, sub, 1)
	publish(t, a, "x", "m1")
	publish(t, a, "x", "m2") // evicts m1 (history 1): m1 is lost to b
	last := publish(t, a, "x", "m3")
	select {
	case <-sub.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("subscription not ended by an unfillable gap")
	}
	if !errors.Is(sub.Err(), hub.ErrReset) || !errors.Is(other.Err(), hub.ErrReset) {
		t.Fatalf("ended with %v and %v", sub.Err(), other.Err())
	}
	// The subscriber resumes and is told.
	_, st, _ := b.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: first})
	if !st.Reset {
		t.Fatal("resume across the lost messages not reset")
	}
	// Delivery continues after the gap.
	waitFor(t, func() bool { info, _ := b.Topic("x"); return info.LastID == last })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRedisRestartedEmptyStartsANewEpoch(t *testing.T) {
	srv := redistest.Start(t)
	a := newNode(t, srv, hub.Config{}, nil)
	b := newNode(t, srv, hub.Config{}, nil)
	sub, _, _ := b.Subscribe([]string{"x"}, hub.SubscribeOptions{})
	old := publish(t, a, "x", "before")
	collect(t, sub, 1)
	oldEpoch := a.Epoch()

	srv.Kill()
	srv.Restart() // no persistence: empty
	select {
	case <-sub.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("subscription not ended when redis lost everything")
	}
	if !errors.Is(sub.Err(), hub.ErrReset) {
		t.Fatalf("ended with %v", sub.Err())
	}
	waitFor(t, func() bool { return a.Epoch() != oldEpoch && b.Epoch() == a.Epoch() })
	// The cache of the lost epoch is gone, and counted as gone.
	if st := b.Stats(); st.Retained != 0 || st.RetainedBytes != 0 || st.Evicted != 0 {
		t.Fatalf("cache after the reset: %d messages, %d bytes, %d evicted", st.Retained, st.RetainedBytes, st.Evicted)
	}
	sub, st, _ := b.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: old})
	if !st.Reset {
		t.Fatal("cursor of the lost epoch not reset")
	}
	id := publish(t, a, "x", "after")
	if !strings.HasPrefix(id, a.Epoch()+"-") {
		t.Fatalf("ID %s not in the new epoch %s", id, a.Epoch())
	}
	if got := collect(t, sub, 1); got[0].ID() != id {
		t.Fatalf("got %s, want %s", got[0].ID(), id)
	}
}

func TestFlushAllStartsANewEpochOnPublish(t *testing.T) {
	srv := redistest.Start(t)
	a := newNode(t, srv, hub.Config{}, func(b *Broker) { b.poll = time.Hour })
	before := publish(t, a, "x", "1")
	srv.Do("FLUSHALL")
	after := publish(t, a, "x", "2")
	if strings.Split(before, "-")[0] == strings.Split(after, "-")[0] {
		t.Fatalf("%s then %s: same epoch after FLUSHALL", before, after)
	}
	waitFor(t, func() bool { return strings.HasPrefix(after, a.Epoch()+"-") })
}

func TestOutage(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	a := newNode(t, srv, hub.Config{}, nil)
	b := newNode(t, srv, hub.Config{}, nil)
	sub, _, _ := b.Subscribe([]string{"x"}, hub.SubscribeOptions{})
	first := publish(t, a, "x", "1")
	collect(t, sub, 1)
	c := newNode(t, srv, hub.Config{}, nil) // has nothing in memory

	srv.Kill()
	start := time.Now()
	_, err := a.Publish(context.Background(), &hub.Message{Topic: "x", Data: []byte("lost")})
	if !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("publish during outage: %v", err)
	}
	if d := time.Since(start); d > 2*a.b.opts.Timeout {
		t.Fatalf("publish took %v to fail, timeout is %v", d, a.b.opts.Timeout)
	}
	// Subscribers stay; new ones are accepted, live, or reset if their
	// cursor needs Redis.
	late, st, err := c.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: c.Epoch() + "-0"})
	if err != nil || !st.Reset {
		t.Fatalf("subscribe during outage: %v, reset %v", err, st.Reset)
	}
	if e := a.StatsWithHistory().History; e == nil || e.Error == "" {
		t.Fatalf("stats during the outage: %+v", e)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case <-sub.Done():
		t.Fatalf("subscription ended by the outage: %v", sub.Err())
	default:
	}

	srv.Restart() // with its data: same epoch
	var id string
	waitFor(t, func() bool {
		ids, err := a.Publish(context.Background(), &hub.Message{Topic: "x", Data: []byte("2")})
		if err == nil {
			id = ids[0]
		}
		return err == nil
	})
	if seqOf(t, id) != seqOf(t, first)+1 || !strings.HasPrefix(id, b.Epoch()+"-") {
		t.Fatalf("after the outage: %s after %s", id, first)
	}
	for _, s := range []*hub.Subscription{sub, late} {
		if got := collect(t, s, 1); got[0].ID() != id {
			t.Fatalf("got %s, want %s", got[0].ID(), id)
		}
	}
}

// A Redis that hangs (no answer, connections open) costs a publisher
// the timeout, not more, and delivery resumes when it answers again.
func TestHungRedis(t *testing.T) {
	srv := redistest.Start(t)
	a := newNode(t, srv, hub.Config{}, nil)
	sub, _, _ := a.Subscribe([]string{"x"}, hub.SubscribeOptions{})
	publish(t, a, "x", "1")
	collect(t, sub, 1)
	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	start := time.Now()
	_, err := a.Publish(context.Background(), &hub.Message{Topic: "x", Data: []byte("2")})
	if !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("publish to a hung redis: %v", err)
	}
	if d := time.Since(start); d > 2*a.b.opts.Timeout {
		t.Fatalf("publish took %v, timeout is %v", d, a.b.opts.Timeout)
	}
	srv.Resume()
	resumed = true
	// The publish that timed out may have been queued in Redis and run
	// when it woke: either way, what follows arrives, in order.
	var id string
	waitFor(t, func() bool {
		ids, err := a.Publish(context.Background(), &hub.Message{Topic: "x", Data: []byte("3")})
		if err == nil {
			id = ids[0]
		}
		return err == nil
	})
	for {
		got := collect(t, sub, 1)
		if got[len(got)-1].ID() == id {
			break
		}
	}
}

func TestTLS(t *testing.T) {
	srv := redistest.StartTLS(t)
	// The test's certificate is self-signed; a real one verifies against
	// the system's roots.
	b, err := New(Options{URL: srv.URL() + "?skip_verify=true", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(b, hub.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	sub, _, _ := h.Subscribe([]string{"x"}, hub.SubscribeOptions{})
	ids, err := h.Publish(context.Background(), &hub.Message{Topic: "x", Data: []byte("over TLS")})
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, sub, 1); got[0].ID() != ids[0] {
		t.Fatalf("got %s, want %s", got[0].ID(), ids[0])
	}
	// Without skip_verify the self-signed certificate is refused.
	b, _ = New(Options{URL: srv.URL(), Timeout: 10 * time.Second})
	if _, err := hub.New(b, hub.Config{}, nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("self-signed certificate accepted: %v", err)
	}
}

func TestURLs(t *testing.T) {
	for _, u := range []string{
		"redis://h:1?master_set=m", "redis://h:1?addr=h:2", "redis-sentinel://h:1", "http://h", "h:1", "unix:///tmp/r.sock",
	} {
		if _, err := New(Options{URL: u}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	for _, u := range []string{"redis://h:1", "rediss://user:pw@h:1/2", "redis://h"} {
		if _, err := New(Options{URL: u}); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	if _, err := New(Options{URL: "redis://h:1", Prefix: "a b"}); err == nil {
		t.Error("prefix with a space accepted")
	}
	_, err := New(Options{URL: "redis://user:secret@h:1?master_set=m"})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("error shows the password: %v", err)
	}
}

// A subscriber that read a message on one instance and resumes on
// another that has not received it yet must not get it twice.
func TestResumeOnALaggingInstanceHasNoDuplicate(t *testing.T) {
	srv := redistest.Start(t)
	l := &lossy{drop: map[string]bool{"m1": true}}
	a := newNode(t, srv, hub.Config{}, nil)
	b := newNode(t, srv, hub.Config{}, func(b *Broker) {
		b.dropped = l.dropped
		b.poll = time.Hour
	})
	publish(t, a, "x", "m0")
	waitFor(t, func() bool { return b.Stats().LastID != b.Epoch()+"-0" })
	seen := publish(t, a, "x", "m1") // read on a; b does not have it
	sub, st, err := b.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: seen})
	if err != nil || st.Reset || len(st.Replay) != 0 {
		t.Fatalf("resume: %v, reset %v, replay %v", err, st.Reset, ids(st.Replay))
	}
	next := publish(t, a, "x", "m2") // b fills m1 from Redis, then m2
	if got := collect(t, sub, 1); got[0].ID() != next {
		t.Fatalf("got %s first, want %s", got[0].ID(), next)
	}
}

// A subscription served by the broker past what its lagging instance has
// received, adding a topic with a cursor: the added topic's replay must
// come from Redis too, or the messages the instance has not received yet
// would be skipped when they arrive, never having been replayed.
func TestAddOnALaggingInstanceReplaysFromRedis(t *testing.T) {
	srv := redistest.Start(t)
	l := &lossy{drop: map[string]bool{"ym": true, "xm": true}}
	a := newNode(t, srv, hub.Config{}, nil)
	b := newNode(t, srv, hub.Config{}, func(b *Broker) {
		b.dropped = l.dropped
		b.poll = time.Hour
	})
	before := publish(t, a, "y", "y0")
	waitFor(t, func() bool { info, _ := b.Topic("y"); return info.LastID == before })
	ym := publish(t, a, "y", "ym")
	xm := publish(t, a, "x", "xm") // read on a
	sub, st, err := b.Subscribe([]string{"x"}, hub.SubscribeOptions{LastEventID: xm})
	if err != nil || st.Reset {
		t.Fatalf("subscribe: %v, reset %v", err, st.Reset)
	}
	defer sub.Close()
	st, err = sub.Add([]string{"y"}, before)
	if err != nil || st.Reset || len(st.Replay) != 1 || st.Replay[0].ID() != ym {
		t.Fatalf("add: %v, reset %v, replay %v, want [%s]", err, st.Reset, ids(st.Replay), ym)
	}
}
