package push

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"testing"
)

func TestResumeWithLastEventID(t *testing.T) {
	tc := startCaddy(t, "history 5", `push_sse /events/* news`)
	c := mustSubscribe(t, tc.url("/events/"), nil)
	first := tc.publish("news", "", "m0")
	if ev := c.next(t); ev.ID != first {
		t.Fatalf("got %+v", ev)
	}
	c.close()

	// N messages while it is away, on its topic and on another.
	var want []string
	for i := range 4 {
		want = append(want, tc.publish("news", "", fmt.Sprint("m", i+1)))
		tc.publish("other", "", "not for news")
	}
	c = mustSubscribe(t, tc.url("/events/"), lastID(first))
	for i, id := range want {
		if ev := c.next(t); ev.ID != id || ev.Data != fmt.Sprint("m", i+1) {
			t.Fatalf("replay %d: got %+v, want %s", i, ev, id)
		}
	}
	// Then live, with no duplicate.
	live := tc.publish("news", "", "live")
	if ev := c.next(t); ev.ID != live {
		t.Fatalf("after replay got %+v, want live %s", ev, live)
	}
	c.close()

	// The query parameter works too (first connect, no header).
	c = mustSubscribe(t, tc.url("/events/?last_event_id="+want[2]), nil)
	for _, id := range []string{want[3], live} {
		if ev := c.next(t); ev.ID != id {
			t.Fatalf("query resume: got %+v, want %s", ev, id)
		}
	}
	c.close()

	// earliest: everything retained (history 5), in order.
	c = mustSubscribe(t, tc.url("/events/?last_event_id=earliest"), nil)
	for _, id := range append(want, live)[len(want)+1-5:] {
		if ev := c.next(t); ev.ID != id {
			t.Fatalf("earliest: got %+v, want %s", ev, id)
		}
	}
	c.close()

	// An evicted ID: first push.reset naming it, then live only. One more
	// message evicts m1, the first one after the cursor.
	live = tc.publish("news", "", "evicts m1")
	c = mustSubscribe(t, tc.url("/events/"), lastID(first))
	ev := c.next(t)
	var reset struct {
		LastEventID string `json:"last_event_id"`
	}
	if ev.Event != "push.reset" || json.Unmarshal([]byte(ev.Data), &reset) != nil || reset.LastEventID != first {
		t.Fatalf("evicted ID: got %+v, want push.reset for %s", ev, first)
	}
	// Its id is the current head, so a reconnect from there is not reset again.
	if ev.ID != live {
		t.Fatalf("reset id %q, want head %s", ev.ID, live)
	}
	next := tc.publish("news", "", "after reset")
	if ev := c.next(t); ev.ID != next {
		t.Fatalf("after reset got %+v, want %s", ev, next)
	}
	c.close()

	// A foreign ID (another epoch, or garbage) is reset too.
	for _, foreign := range []string{"abc-1", "garbage", first + "0000"} {
		c = mustSubscribe(t, tc.url("/events/"), lastID(foreign))
		if ev := c.next(t); ev.Event != "push.reset" || ev.ID != next {
			t.Fatalf("foreign %q: got %+v", foreign, ev)
		}
		c.close()
	}

	// No ID: live only.
	c = mustSubscribe(t, tc.url("/events/"), nil)
	last := tc.publish("news", "", "only this")
	if ev := c.next(t); ev.ID != last {
		t.Fatalf("no ID: got %+v, want %s", ev, last)
	}
}

func TestReloadKeepsHistoryAndIDs(t *testing.T) {
	tc := startCaddy(t, "history 50", `push_sse /events/* news`)
	c := mustSubscribe(t, tc.url("/events/"), nil)
	var got []string
	for i := range 3 {
		id := tc.publish("news", "", fmt.Sprint(i))
		if ev := c.next(t); ev.ID != id {
			t.Fatalf("got %+v", ev)
		}
		got = append(got, id)
	}
	// A changed Caddyfile: the old config's streams end cleanly...
	if err := tc.load("history 60\n\t\tbuffer 100\n\t\tbroker memory", `push_sse /events/* news {
		heartbeat 10s
	}`); err != nil {
		t.Fatal(err)
	}
	if rest := c.ended(t); len(rest) != 0 {
		t.Fatalf("events after reload on the old stream: %+v", rest)
	}
	// ...and the client resumes on the new one without loss or reset.
	missed := tc.publish("news", "", "while away")
	c = mustSubscribe(t, tc.url("/events/"), lastID(got[2]))
	if ev := c.next(t); ev.ID != missed || ev.Event != "" {
		t.Fatalf("after reload got %+v, want %s", ev, missed)
	}
	c.close()
	c = mustSubscribe(t, tc.url("/events/?last_event_id=earliest"), nil)
	for _, id := range append(got, missed) {
		if ev := c.next(t); ev.ID != id {
			t.Fatalf("history after reload: got %+v, want %s", ev, id)
		}
	}
}

func TestSlowSubscriberIsCut(t *testing.T) {
	tc := startCaddy(t, "buffer 4\n\t\thistory 10", `push_sse /events/* news`)
	// A subscriber that never reads: its socket buffers fill, then its
	// queue, and the hub cuts it.
	stuck := rawSubscribe(t, tc.http, "/events/")
	defer stuck.Close()
	reader := mustSubscribe(t, tc.url("/events/"), nil)

	payload := string(make([]byte, 256<<10))
	for i := 0; tc.stats()["dropped_slow"] == float64(0); i++ {
		if i == 400 { // 100 MiB: far more than any socket buffer
			t.Fatal("stuck subscriber was never cut")
		}
		id := tc.publish("news", "", payload)
		if ev := reader.next(t); ev.ID != id {
			t.Fatalf("reading subscriber got %s, want %s", ev.ID, id)
		}
	}
	st := tc.stats()
	if st["subscribers"] != float64(1) {
		t.Fatalf("subscribers after cut = %v, want 1", st["subscribers"])
	}
	// The server disconnected it: reading drains what was in flight and
	// then ends (EOF or reset), never times out.
	if err := stuck.waitEOF(); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("cut subscriber's connection still open: %v", err)
		}
	}
}

func TestShutdownWithManySubscribers(t *testing.T) {
	const n = 1000
	tc := startCaddy(t, "", `push_sse /events/* news`)
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = rawSubscribe(t, tc.http, "/events/")
	}
	if got := tc.stats()["subscribers"]; got != float64(n) {
		t.Fatalf("subscribers = %v, want %d", got, n)
	}
	elapsed := stopCaddy(t)
	t.Logf("caddy stop with %d SSE subscribers: %v", n, elapsed)
	if elapsed > stopBound {
		t.Fatalf("stop took %v, want under %v", elapsed, stopBound)
	}
	for i, c := range conns {
		if err := c.waitEOF(); err != nil {
			t.Fatalf("connection %d not closed: %v", i, err)
		}
	}
}
