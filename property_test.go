package push

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRandomResumeIsGapFreeAndDuplicateFree(t *testing.T) {
	runResumeProperty(t, 10_000, 50, 0)
}

func TestReloadDuringRunLosesNothing(t *testing.T) {
	runResumeProperty(t, 3_000, 20, 3)
}

// runResumeProperty publishes total messages over several topics while
// subscribers connect, drop and resume at random (and the config is
// reloaded reloads times), then checks that every subscriber's stream,
// across all its connections, is gap-free and duplicate-free from its
// first ID to the end.
func runResumeProperty(t *testing.T, total, subscribers, reloads int) {
	const push = "history 20000"
	sites := []string{
		"push_sse /events/* {\n\t\tsubscribe t*\n\t}",
		"push_sse /events/* {\n\t\tsubscribe t*\n\t\theartbeat 1s\n\t}",
	}
	tc := startCaddy(t, push, sites[0])
	runResumeOn(t, resumeRig{
		bases:   []string{"http://" + tc.http},
		adminDo: tc.adminDo,
		reload:  func(n int) error { return tc.load(push, sites[n%2]) },
		stats:   tc.stats,
	}, total, subscribers, reloads)
}

// resumeRig is what runResumeOn drives: one or more instances serving
// push_sse on /events/, subscribers connecting to any of them, publishes
// going through the admin endpoint of the first.
type resumeRig struct {
	bases   []string // http://host:port of each instance
	adminDo func(method, path, body string) (int, []byte)
	reload  func(n int) error
	stats   func() map[string]any
}

func runResumeOn(t *testing.T, rig resumeRig, total, subscribers, reloads int) {
	topics := []string{"t0", "t1", "t2", "t3", "t4", "t5"}
	var (
		mu      sync.Mutex
		topicOf = map[uint64]string{} // seq -> topic, of every published message
	)
	done := make(chan struct{})
	results := make([]subResult, subscribers)
	var wg sync.WaitGroup
	for i := range subscribers {
		rng := rand.New(rand.NewPCG(uint64(i), 42))
		mine := slices.Clone(topics)
		rng.Shuffle(len(mine), func(a, b int) { mine[a], mine[b] = mine[b], mine[a] })
		mine = mine[:1+rng.IntN(3)]
		results[i].topics = mine
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].run(t, rig.bases, rng, done)
		}()
	}

	rng := rand.New(rand.NewPCG(7, 7))
	published := 0
	for reload := 1; published < total; {
		n := min(1+rng.IntN(10), total-published)
		batch := make([]map[string]string, n)
		for j := range batch {
			batch[j] = map[string]string{"topic": topics[rng.IntN(len(topics))], "data": fmt.Sprint("m", published+j)}
		}
		body, _ := json.Marshal(batch)
		status, resp := rig.adminDo(http.MethodPost, "/push/publish", string(body))
		if status != http.StatusOK {
			t.Fatalf("publish: %d %s", status, resp)
		}
		var ids []struct{ ID string }
		if err := json.Unmarshal(resp, &ids); err != nil || len(ids) != n {
			t.Fatalf("publish answer %s: %v", resp, err)
		}
		mu.Lock()
		for j, id := range ids {
			topicOf[seq(t, id.ID)] = batch[j]["topic"]
		}
		mu.Unlock()
		published += n
		if reload <= reloads && published >= reload*total/(reloads+1) {
			if err := rig.reload(reload); err != nil {
				t.Fatalf("reload %d: %v", reload, err)
			}
			reload++
		}
	}
	for _, topic := range topics {
		status, resp := rig.adminDo(http.MethodPost, "/push/topics/"+topic, "end")
		var m struct{ ID string }
		if err := json.Unmarshal(resp, &m); status != http.StatusOK || err != nil {
			t.Fatalf("publish: %d %s", status, resp)
		}
		id := m.ID
		mu.Lock()
		topicOf[seq(t, id)] = topic
		mu.Unlock()
	}

	waitOrFail(t, &wg, 3*time.Minute, done)
	connections := 0
	for i, r := range results {
		if r.err != "" {
			t.Fatalf("subscriber %d: %s", i, r.err)
		}
		if err := r.check(topicOf); err != nil {
			t.Fatalf("subscriber %d (%v): %v", i, r.topics, err)
		}
		connections += r.connections
	}
	t.Logf("%d messages, %d subscribers, %d connections, %d reloads, stats %v",
		len(topicOf), subscribers, connections, reloads, rig.stats())
}

// subResult is what one subscriber of runResumeProperty saw.
type subResult struct {
	topics      []string
	got         []uint64
	ends        int // final messages received
	connections int
	err         string
}

// run subscribes, reads a random number of events, drops the connection
// and resumes from the last ID, until it has the final message of each of
// its topics.
func (r *subResult) run(t *testing.T, bases []string, rng *rand.Rand, done chan struct{}) {
	path := "/events/?topic=" + strings.Join(r.topics, "&topic=")
	last := ""
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			r.err = "stopped"
			return
		default:
		}
		var header http.Header
		if last != "" {
			header = lastID(last)
		}
		c, err := subscribe(t, bases[rng.IntN(len(bases))]+path, header)
		if err != nil {
			// A reload in progress may refuse new streams for a moment.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		r.connections++
		budget := 1 + rng.IntN(400)
		for ev := range c.events {
			if ev.Event == "push.reset" {
				r.err = fmt.Sprintf("unexpected reset after %s: %s", last, ev.Data)
				c.close()
				return
			}
			r.got = append(r.got, seq(t, ev.ID))
			last = ev.ID
			if ev.Data == "end" {
				// Each topic's final message comes once, after all others.
				if r.ends++; r.ends == len(r.topics) {
					c.close()
					return
				}
			}
			if budget--; budget == 0 {
				break
			}
		}
		c.close()
	}
	r.err = "did not receive every final message in time"
}

// check verifies that r.got is strictly increasing, holds only messages
// of r's topics, and misses none of them after the first it received.
func (r *subResult) check(topicOf map[uint64]string) error {
	if len(r.got) == 0 {
		return fmt.Errorf("received nothing")
	}
	got := make(map[uint64]bool, len(r.got))
	for i, s := range r.got {
		if i > 0 && s <= r.got[i-1] {
			return fmt.Errorf("message %d arrived after %d (duplicate or out of order)", s, r.got[i-1])
		}
		if !slices.Contains(r.topics, topicOf[s]) {
			return fmt.Errorf("message %d of topic %q is not one of ours", s, topicOf[s])
		}
		got[s] = true
	}
	for s, topic := range topicOf {
		if s > r.got[0] && slices.Contains(r.topics, topic) && !got[s] {
			return fmt.Errorf("message %d on %s missing (first received %d)", s, topic, r.got[0])
		}
	}
	return nil
}

// waitOrFail waits for wg, failing the test (and closing stop) after d.
func waitOrFail(t *testing.T, wg *sync.WaitGroup, d time.Duration, stop chan struct{}) {
	t.Helper()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(d):
		close(stop)
		<-finished
		t.Fatalf("subscribers still running after %v", d)
	}
}

// TestNodeEventSourceResumes runs the npm eventsource package, a client
// written by others, against the server: it receives messages, and when
// the server drops it (here: a config reload), it reconnects by itself
// with its own Last-Event-ID and gets what it missed, exactly once.
func TestNodeEventSourceResumes(t *testing.T) {
	site := "push_sse /events/* news {\n\t\tretry 300ms\n\t}"
	tc := startCaddy(t, "", site)
	c := startNode(t, []string{"SSE_EVENTS=update,push.reset", "SSE_TIMEOUT_MS=60000"}, "sse_client.mjs", tc.url("/events/"))
	expect := func(id, ev, data string) {
		t.Helper()
		if l := c.expect("event"); l["id"] != id || l["event"] != ev || l["data"] != data {
			t.Fatalf("node client got %v, want %s %s %q", l, id, ev, data)
		}
	}

	c.expect("open")
	id1 := tc.publish("news", "", "one")
	id2 := tc.publish("news", "update", "two\nlines")
	expect(id1, "message", "one")
	expect(id2, "update", "two\nlines")

	// The reload ends the stream; publish while the client is away.
	if err := tc.load("", site); err != nil {
		t.Fatal(err)
	}
	if subs := tc.stats()["subscribers"]; subs != float64(0) {
		t.Fatalf("subscribers after reload = %v, want 0 (client still connected)", subs)
	}
	id3 := tc.publish("news", "", "missed three")
	id4 := tc.publish("news", "update", "missed four")
	c.expect("open")
	expect(id3, "message", "missed three")
	expect(id4, "update", "missed four")
	id5 := tc.publish("news", "", "live five")
	expect(id5, "message", "live five")
}
