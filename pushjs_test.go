package push

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClientServed: push_client serves push.js and its types with an
// ETag, a Cache-Control that a header directive can override, and 304 to
// a matching If-None-Match.
func TestClientServed(t *testing.T) {
	tc := startCaddy(t, "", `
	push_client /push.js
	push_client /push.d.ts
	header /custom/* Cache-Control no-cache
	push_client /custom/push.js`)
	get := func(path string, hdr http.Header) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, tc.url(path), nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("/push.js", nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || !strings.Contains(body, "export class PushClient") || etag == "" ||
		resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" ||
		resp.Header.Get("Cache-Control") != "public, max-age=3600" {
		t.Fatalf("push.js: %d %v %.60q", resp.StatusCode, resp.Header, body)
	}
	if resp, body := get("/push.js", http.Header{"If-None-Match": {etag}}); resp.StatusCode != http.StatusNotModified || body != "" {
		t.Fatalf("If-None-Match: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get("/push.js", http.Header{"If-None-Match": {`"other"`}}); resp.StatusCode != 200 {
		t.Fatalf("stale If-None-Match: %d", resp.StatusCode)
	}
	if resp, body := get("/push.d.ts", nil); resp.StatusCode != 200 || !strings.Contains(body, "export class PushClient") ||
		resp.Header.Get("ETag") == etag {
		t.Fatalf("push.d.ts: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := get("/custom/push.js", nil); resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("header directive: Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
	req, _ := http.NewRequest(http.MethodPost, tc.url("/push.js"), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", resp, err)
	}
}

// pushJSPage runs page_check.mjs on testdata/pushjs/index.html.
type pushJSPage struct {
	t *testing.T
	p *nodeProc
}

// eval waits until expr is truthy in the page and returns its value.
func (pg pushJSPage) eval(expr string, v any) {
	pg.t.Helper()
	if strings.ContainsAny(expr, "\r\n") {
		pg.t.Fatalf("page expressions are one line each: %q", expr)
	}
	pg.p.send(expr)
	l := pg.p.next(true)
	if l["type"] != "value" {
		pg.t.Fatalf("page: %v", l)
	}
	if v != nil {
		b, _ := json.Marshal(l["value"])
		if err := json.Unmarshal(b, v); err != nil {
			pg.t.Fatalf("page value %s: %v", b, err)
		}
	}
}

type pageMessage struct {
	ID, Data, Topic, Event, Via string
}

// backgroundPublisher publishes through push_publish on the site (the
// admin endpoint restarts on every reload) until stopped, and returns the
// IDs of the messages it published.
func backgroundPublisher(t *testing.T, tc *testCaddy) (stop func() []string) {
	var (
		mu   sync.Mutex
		ids  []string
		done = make(chan struct{})
		quit = make(chan struct{})
	)
	go func() {
		defer close(done)
		client := &http.Client{Timeout: 5 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			case <-time.After(15 * time.Millisecond):
			}
			resp, err := client.Post(tc.url("/pub?topic=news"), "text/plain", strings.NewReader(fmt.Sprintf("bg%d", i)))
			if err != nil {
				continue
			}
			var ans struct{ ID string }
			err = json.NewDecoder(resp.Body).Decode(&ans)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && err == nil {
				mu.Lock()
				ids = append(ids, ans.ID)
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		close(quit)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return ids
	}
}

// TestBrowserPushJS runs push.js in headless Chromium: delivery over
// WebSocket; a reload while messages are published, after which it
// resumes without loss; a reload to a config whose WebSocket route
// answers 403, while messages are published, after which it falls back to
// SSE with the same cursor and loses nothing; reset surfaced on both
// transports.
func TestBrowserPushJS(t *testing.T) {
	chromium := requireBrowser(t)
	root, err := filepath.Abs("testdata/pushjs")
	if err != nil {
		t.Fatal(err)
	}
	// The application's auth endpoint: a session cookie names the user.
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		if err != nil || c.Value != "alice" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-User-Id", c.Value)
	}))
	defer auth.Close()
	config := func(wsOrigins string) string {
		return fmt.Sprintf(`push_client /push.js
	push_sse /events/* news {
		subscribe user/*/inbox
	}
	push_ws /ws/* news {
		origins %s
		publish news
	}
	push_publish /pub news
	route /me/publish {
		forward_auth %s {
			uri /auth
			copy_headers X-User-Id
		}
		push_publish user/{http.request.header.X-User-Id}/*
	}
	root * %s
	file_server`, wsOrigins, strings.TrimPrefix(auth.URL, "http://"), root)
	}
	withWS := config("*")
	tc := startCaddy(t, "history 1000", withWS)
	first := tc.publish("news", "", "before the page")
	b := startNode(t, []string{"CHROMIUM=" + chromium}, "page_check.mjs", tc.url("/?last="+first))
	b.next(true) // ready
	pg := pushJSPage{t, b}

	var transport string
	pg.eval(`window.clients.main.client.state === "open" && window.clients.main.client.transport`, &transport)
	if transport != "ws" {
		t.Fatalf("first transport %q, want ws", transport)
	}
	var published []string
	for i := range 3 {
		published = append(published, tc.publish("news", "e", fmt.Sprintf("m%d", i)))
	}
	var got []pageMessage
	pg.eval(`window.clients.main.got.length >= 3 && window.clients.main.got`, &got)
	for i, m := range got {
		if m.ID != published[i] || m.Data != fmt.Sprintf("m%d", i) || m.Event != "e" || m.Topic != "news" || m.Via != "ws" {
			t.Fatalf("message %d: %+v, want %s", i, m, published[i])
		}
	}

	// A publish from the page through forward_auth: to the user's own
	// inbox it goes through, to another's it is refused.
	inbox := mustSubscribe(t, tc.url("/events/?topic=user/alice/inbox&topic=user/bob/inbox"), nil)
	defer inbox.close()
	var answers []struct {
		Status int
		Body   string
	}
	pg.eval(`window.pub ??= (document.cookie = "session=alice", Promise.all(["alice", "bob"].map((u) => `+
		`fetch("/me/publish?topic=user/" + u + "/inbox", { method: "POST", body: "hi " + u })`+
		`.then(async (r) => ({ status: r.status, body: await r.text() }))))).then((a) => (window.pubDone = a)); window.pubDone`, &answers)
	if len(answers) != 2 || answers[0].Status != 200 || answers[1].Status != 403 {
		t.Fatalf("page publishes through forward_auth: %+v, want 200 then 403", answers)
	}
	if ev := inbox.next(t); ev.Data != "hi alice" {
		t.Fatalf("inbox got %+v", ev)
	}
	inbox.close()
	for _, ev := range inbox.ended(t) {
		if ev.Data == "hi bob" {
			t.Fatal("a refused publish reached bob's inbox")
		}
	}

	// Publish over the WebSocket: acknowledged with the message's ID.
	var ack string
	pg.eval(`window.ackP ??= window.clients.main.client.publish("news", "from the page").then((id) => (window.ackID = id)); window.ackID`, &ack)
	published = append(published, ack)

	// Reload while publishing: the WebSocket is closed with 1001 and the
	// client resumes from its cursor.
	stop := backgroundPublisher(t, tc)
	waitPublished(t, tc, 5)
	if err := tc.load("history 1000", withWS); err != nil {
		t.Fatal(err)
	}
	pg.eval(`window.clients.main.states.filter((s) => s.state === "open").length >= 2 && window.clients.main.client.state === "open" && window.clients.main.client.transport`, &transport)
	if transport != "ws" {
		t.Fatalf("after reload: transport %q, want ws", transport)
	}
	waitPublished(t, tc, 5)

	// Reload to a config whose WebSocket route answers 403, still
	// publishing: the client falls back to SSE with the same cursor.
	if err := tc.load("history 1000", config("https://elsewhere.example")); err != nil {
		t.Fatal(err)
	}
	pg.eval(`window.clients.main.client.state === "open" && window.clients.main.client.transport === "sse"`, nil)
	waitPublished(t, tc, 5)
	published = append(published, stop()...)

	want := len(published)
	pg.eval(fmt.Sprintf(`window.clients.main.got.length >= %d && window.clients.main.got`, want), &got)
	ids := make([]string, len(got))
	for i, m := range got {
		ids[i] = m.ID
	}
	for _, id := range published {
		if !slices.Contains(ids, id) {
			t.Errorf("message %s published during the reloads never reached the page", id)
		}
	}
	for i := 1; i < len(got); i++ {
		if seq(t, got[i].ID) <= seq(t, got[i-1].ID) {
			t.Fatalf("page got %s after %s: repeated or out of order", got[i].ID, got[i-1].ID)
		}
	}
	if got[len(got)-1].Via != "sse" {
		t.Errorf("last message via %q, want sse", got[len(got)-1].Via)
	}
	last := tc.publish("news", "", "after the switch")
	pg.eval(fmt.Sprintf(`window.clients.main.got.find((m) => m.id === %q)`, last), nil)

	// A client whose WebSocket was never let in takes SSE at once, and
	// gets the same messages from the same cursor.
	var mainGot, fbGot []pageMessage
	pg.eval(`window.clients.main.got`, &mainGot)
	pg.eval(fmt.Sprintf(`(window.clients.fb || window.start("fb", { ws: "/ws/", sse: "/events/", lastEventId: %q })) && `+
		`window.clients.fb.got.length >= %d && window.clients.fb`, first, len(mainGot)), nil)
	pg.eval(`window.clients.fb.got`, &fbGot)
	var fbStates []struct{ State, Transport string }
	pg.eval(`window.clients.fb.states`, &fbStates)
	if fbStates[0].State != "open" || fbStates[0].Transport != "sse" {
		t.Errorf("fallback client states %+v, want open over sse first", fbStates)
	}
	for i := range mainGot {
		if fbGot[i].ID != mainGot[i].ID || fbGot[i].Via != "sse" {
			t.Fatalf("fallback client message %d: %+v, want %s over sse", i, fbGot[i], mainGot[i].ID)
		}
	}

	// A cursor the hub does not know: reset surfaced, over SSE and over
	// WebSocket.
	for _, c := range []struct{ name, opts string }{
		{"sse", `{ sse: "/events/", lastEventId: "foreign-1" }`},
		{"ws", `{ ws: "/ws2/", lastEventId: "foreign-2" }`},
	} {
		if c.name == "ws" {
			if err := tc.load("history 1000", withWS+"\n\tpush_ws /ws2/* news"); err != nil {
				t.Fatal(err)
			}
		}
		var reset []struct{ LastEventID string }
		pg.eval(fmt.Sprintf(`(window.clients[%q] || window.start(%q, %s)) && window.clients[%q].resets.length > 0 && window.clients[%q].resets`, c.name, c.name, c.opts, c.name, c.name), &reset)
		want := map[string]string{"sse": "foreign-1", "ws": "foreign-2"}[c.name]
		if reset[0].LastEventID != want {
			t.Errorf("%s reset: %+v, want %s", c.name, reset, want)
		}
	}
}

// waitPublished waits until the hub's published count grew by n.
func waitPublished(t *testing.T, tc *testCaddy, n float64) {
	t.Helper()
	start := publishedCount(t, tc)
	deadline := time.Now().Add(10 * time.Second)
	for publishedCount(t, tc) < start+n {
		if time.Now().After(deadline) {
			t.Fatalf("nothing published for 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
