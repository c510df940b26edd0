package push

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestSSEDeliversAdminPublish(t *testing.T) {
	tc := startCaddy(t, "", `push_sse /events/* news`)
	c := mustSubscribe(t, tc.url("/events/"), nil)
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := c.resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	id1 := tc.publish("news", "update", "line one\nline two\r\nline three\rfour")
	ev := c.next(t)
	if ev.ID != id1 || ev.Event != "update" || ev.Data != "line one\nline two\nline three\nfour" {
		t.Fatalf("got %+v, want id %s event update and four lines", ev, id1)
	}

	status, body := tc.adminDo(http.MethodPost, "/push/publish",
		`[{"topic":"news","data":"a"},{"topic":"news","event":"e","data":"b"},{"topic":"other","data":"x"},{"topic":"news","data":""}]`)
	if status != http.StatusOK {
		t.Fatalf("batch: %d %s", status, body)
	}
	var ids []struct{ ID string }
	if err := json.Unmarshal(body, &ids); err != nil || len(ids) != 4 {
		t.Fatalf("batch answer %s: %v", body, err)
	}
	seen := map[string]bool{id1: true}
	for i, want := range []event{{ids[0].ID, "", "a"}, {ids[1].ID, "e", "b"}, {ids[3].ID, "", ""}} {
		if ev := c.next(t); ev != want {
			t.Fatalf("batch event %d: got %+v, want %+v", i, ev, want)
		}
		if seen[want.ID] {
			t.Fatalf("ID %s repeated", want.ID)
		}
		seen[want.ID] = true
	}
	if !(seq(t, id1) < seq(t, ids[0].ID) && seq(t, ids[0].ID) < seq(t, ids[1].ID) &&
		seq(t, ids[1].ID) < seq(t, ids[2].ID) && seq(t, ids[2].ID) < seq(t, ids[3].ID)) {
		t.Fatalf("IDs not increasing: %s %v", id1, ids)
	}

	status, body = tc.adminDo(http.MethodPost, "/push/publish", `{"topic":"news","data_base64":"/wAB"}`)
	if status != http.StatusOK {
		t.Fatalf("binary: %d %s", status, body)
	}
	if ev := c.next(t); ev.Data != "/wAB" {
		t.Fatalf("binary payload sent as %q, want base64 /wAB", ev.Data)
	}
}

func TestSSEHeartbeatAndRetry(t *testing.T) {
	tc := startCaddy(t, "", `push_sse /events/* {
		topic news
		heartbeat 50ms
		retry 1500ms
	}`)
	resp, err := http.Get(tc.url("/events/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// retry comes first, then comment lines while idle.
	buf := make([]byte, 0, 64)
	tmp := make([]byte, 64)
	for !strings.Contains(string(buf), ":\n:\n") {
		n, err := resp.Body.Read(tmp)
		if err != nil {
			t.Fatalf("reading stream: %v (got %q)", err, buf)
		}
		buf = append(buf, tmp[:n]...)
	}
	if !strings.HasPrefix(string(buf), "retry: 1500\n\n:\n") {
		t.Fatalf("stream starts %q, want retry then heartbeats", buf)
	}
}

func TestSSERequestErrors(t *testing.T) {
	tc := startCaddy(t, "", `push_sse /events/* {
		topic news
		subscribe chat/* public/**
	}`)
	cases := []struct {
		method, path string
		header       http.Header
		status       int
	}{
		{http.MethodPost, "/events/", nil, http.StatusMethodNotAllowed},
		{http.MethodDelete, "/events/", nil, http.StatusMethodNotAllowed},
		{http.MethodGet, "/events/?topic=secret", nil, http.StatusForbidden},
		{http.MethodGet, "/events/?topic=chat/a/b", nil, http.StatusForbidden},
		{http.MethodGet, "/events/?topic=chat/has%20space", nil, http.StatusBadRequest},
		{http.MethodGet, "/events/?topic=", nil, http.StatusBadRequest},
		{http.MethodGet, "/events/?topic=" + strings.Repeat("x", 1025), nil, http.StatusBadRequest},
		{http.MethodGet, "/events/?last_event_id=" + strings.Repeat("x", 2000), nil, http.StatusBadRequest},
		{http.MethodHead, "/events/", nil, http.StatusOK},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, tc.url(c.path), nil)
		req.Header = c.header
		if req.Header == nil {
			req.Header = http.Header{}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %.60s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
		if c.method == http.MethodHead && resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Errorf("HEAD Content-Type %q", resp.Header.Get("Content-Type"))
		}
	}
	// Allowed topics work, patterns as documented.
	for _, topic := range []string{"chat/lobby", "public/a/b/c", "public/x"} {
		c := mustSubscribe(t, tc.url("/events/?topic="+topic), nil)
		id := tc.publish(topic, "", "hi")
		if ev := c.next(t); ev.ID != id {
			t.Fatalf("%s: got %+v", topic, ev)
		}
		c.close()
	}
}

func TestSSEPlaceholderTopic(t *testing.T) {
	tc := startCaddy(t, "", `push_sse /events/* user/{http.request.header.X-User}`)
	for _, user := range []string{"", "a b"} {
		req, _ := http.NewRequest(http.MethodGet, tc.url("/events/"), nil)
		req.Header.Set("X-User", user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("placeholder expanding to %q: %d, want 400", user, resp.StatusCode)
		}
	}
	c := mustSubscribe(t, tc.url("/events/"), http.Header{"X-User": {"alice"}})
	id := tc.publish("user/alice", "", "for alice")
	if ev := c.next(t); ev.ID != id || ev.Data != "for alice" {
		t.Fatalf("got %+v", ev)
	}
}

func TestSSEBehindEncode(t *testing.T) {
	tc := startCaddy(t, "", `encode gzip zstd
	push_sse /events/* news`)
	req, _ := http.NewRequest(http.MethodGet, tc.url("/events/"), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := sseClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// encode compresses event streams but flushes each write through, so
	// every event must arrive while the stream is open.
	var body io.Reader = resp.Body
	if ce := resp.Header.Get("Content-Encoding"); ce == "gzip" {
		tc.publish("news", "", "first") // gzip.NewReader needs the header
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = zr
	} else if ce != "" {
		t.Fatalf("unexpected Content-Encoding %s", ce)
	}
	c := &sseConn{resp: resp, r: bufio.NewReader(body), cancel: func() {}, events: make(chan event, 16)}
	go c.read()
	if resp.Header.Get("Content-Encoding") == "gzip" {
		c.next(t)
	}
	for i := range 3 {
		id := tc.publish("news", "", fmt.Sprint(i))
		if ev := c.next(t); ev.ID != id {
			t.Fatalf("got %+v, want %s", ev, id)
		}
	}
}

func TestAdminErrors(t *testing.T) {
	tc := startCaddy(t, "max_message_size 1KiB", `push_sse /events/* news`)
	big := strings.Repeat("x", 1025)
	cases := []struct {
		name, method, path, body string
		status                   int
	}{
		{"bad JSON", "POST", "/push/publish", `{"topic":`, 400},
		{"not an object", "POST", "/push/publish", `"news"`, 400},
		{"trailing data", "POST", "/push/publish", `{"topic":"news","data":"a"} {}`, 400},
		{"unknown field", "POST", "/push/publish", `{"topic":"news","dat":"a"}`, 400},
		{"missing topic", "POST", "/push/publish", `{"data":"a"}`, 400},
		{"invalid topic", "POST", "/push/publish", `{"topic":"a b","data":"a"}`, 400},
		{"control char topic", "POST", "/push/publish", `{"topic":"a\u0001","data":"a"}`, 400},
		{"long topic", "POST", "/push/publish", `{"topic":"` + strings.Repeat("t", 1025) + `","data":"a"}`, 400},
		{"both data", "POST", "/push/publish", `{"topic":"news","data":"a","data_base64":"YQ=="}`, 400},
		{"neither data", "POST", "/push/publish", `{"topic":"news"}`, 400},
		{"bad base64", "POST", "/push/publish", `{"topic":"news","data_base64":"!!"}`, 400},
		{"event CR", "POST", "/push/publish", `{"topic":"news","event":"a\rb","data":"a"}`, 400},
		{"event LF", "POST", "/push/publish", `{"topic":"news","event":"a\nb","data":"a"}`, 400},
		{"reserved event", "POST", "/push/publish", `{"topic":"news","event":"push.reset","data":"a"}`, 400},
		{"empty batch", "POST", "/push/publish", `[]`, 400},
		{"bad batch member", "POST", "/push/publish", `[{"topic":"news","data":"a"},{"topic":"","data":"b"}]`, 400},
		{"too large JSON", "POST", "/push/publish", `{"topic":"news","data":"` + big + `"}`, 413},
		{"too large in batch", "POST", "/push/publish", `[{"topic":"news","data":"a"},{"topic":"news","data":"` + big + `"}]`, 413},
		{"too large raw", "POST", "/push/topics/news", big, 413},
		{"raw reserved event", "POST", "/push/topics/news?event=push.x", "a", 400},
		{"raw event CRLF", "POST", "/push/topics/news?event=a%0D%0Ab", "a", 400},
		{"raw bad topic", "POST", "/push/topics/a%20b", "a", 400},
		{"raw empty topic", "POST", "/push/topics/", "a", 400},
		{"trailing bracket", "POST", "/push/publish", `{"topic":"news","data":"a"}]`, 400},
		{"publish GET", "GET", "/push/publish", "", 405},
		{"topics POST", "POST", "/push/topics", "", 405},
		{"topic DELETE", "DELETE", "/push/topics/news", "", 405},
		{"stats PUT", "PUT", "/push/stats", "", 405},
		{"unknown topic", "GET", "/push/topics/nobody", "", 404},
		{"unknown route", "GET", "/push/nope", "", 404},
	}
	before := tc.stats()["published"]
	for _, c := range cases {
		status, body := tc.adminDo(c.method, c.path, c.body)
		if status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.status)
			continue
		}
		var e struct{ Error string }
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
			t.Errorf("%s: body %q is not {\"error\":...}", c.name, body)
		}
	}
	if after := tc.stats()["published"]; after != before {
		t.Fatalf("rejected requests published: %v -> %v", before, after)
	}

	// A batch at the size limit is fine, and nothing rejected left a topic behind.
	status, body := tc.adminDo("POST", "/push/publish", `{"topic":"news","data":"`+big[:1024]+`"}`)
	if status != 200 {
		t.Fatalf("max size message: %d %s", status, body)
	}
	status, body = tc.adminDo("GET", "/push/topics", "")
	var topics []map[string]any
	if status != 200 || json.Unmarshal(body, &topics) != nil || len(topics) != 1 || topics[0]["topic"] != "news" {
		t.Fatalf("topics: %d %s", status, body)
	}
	status, body = tc.adminDo("GET", "/push/topics/news", "")
	var info map[string]any
	if status != 200 || json.Unmarshal(body, &info) != nil || info["retained"] != float64(1) || info["last_id"] == "" {
		t.Fatalf("topic: %d %s", status, body)
	}
}

// TestSSEThroughReverseProxy streams through a reverse_proxy (Caddy in
// front of Caddy, here the same server proxying to itself): events must
// not be buffered on the way, and resume headers must pass through.
func TestSSEThroughReverseProxy(t *testing.T) {
	tc := startCaddy(t, "", `push_sse /events/* news
	handle_path /proxied/* {
		rewrite * /events{path}
		reverse_proxy {http.request.hostport}
	}`)
	c := mustSubscribe(t, tc.url("/proxied/"), nil)
	first := tc.publish("news", "", "via proxy")
	if ev := c.next(t); ev.ID != first {
		t.Fatalf("got %+v", ev)
	}
	c.close()
	missed := tc.publish("news", "", "missed")
	c = mustSubscribe(t, tc.url("/proxied/"), lastID(first))
	if ev := c.next(t); ev.ID != missed {
		t.Fatalf("resume through proxy: got %+v, want %s", ev, missed)
	}
}

// TestSSEOverHTTP2 streams over cleartext HTTP/2.
func TestSSEOverHTTP2(t *testing.T) {
	tc := startCaddy(t, "", `push_sse /events/* news`)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
	resp, err := client.Get(tc.url("/events/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	c := &sseConn{resp: resp, r: bufio.NewReader(resp.Body), cancel: func() {}, events: make(chan event, 16)}
	go c.read()
	for i := range 3 {
		id := tc.publish("news", "", fmt.Sprint(i))
		if ev := c.next(t); ev.ID != id {
			t.Fatalf("got %+v, want %s", ev, id)
		}
	}
}

// TestSSEOverHTTP1 checks the HTTP/1 stream, which is served from the
// connection itself: headers set by earlier handlers are kept, the body is
// close-delimited, and a client that leaves is noticed.
func TestSSEOverHTTP1(t *testing.T) {
	tc := startCaddy(t, "", `header X-Frame-Options DENY
	push_sse /events/* news`)
	c := mustSubscribe(t, tc.url("/events/"), nil)
	if got := c.resp.Header.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("X-Frame-Options = %q, want DENY", got)
	}
	if !c.resp.Close || c.resp.ContentLength != -1 || len(c.resp.TransferEncoding) != 0 {
		t.Errorf("response close %v, length %d, encoding %v: want a close-delimited body",
			c.resp.Close, c.resp.ContentLength, c.resp.TransferEncoding)
	}
	id := tc.publish("news", "", "hello")
	if ev := c.next(t); ev.ID != id {
		t.Fatalf("got %+v", ev)
	}
	c.close()
	waitSubscribers(t, tc, 0)
}
