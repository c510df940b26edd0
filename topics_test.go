package push

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestPlaceholderPatterns: placeholders in subscribe and publish patterns
// expand per request; an unset one, or a value holding `*`, allows
// nothing; the literal placeholder text is no topic anyone may use.
func TestPlaceholderPatterns(t *testing.T) {
	tc := startCaddy(t, "", `
	push_sse /events/* {
		subscribe user/{http.request.header.X-User}/*
	}
	push_ws /ws/* {
		subscribe room/{http.request.header.X-User}
		publish room/{http.request.header.X-User}
	}`)
	get := func(topic, user string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, tc.url("/events/?topic="+topic), nil)
		if user != "" {
			req.Header.Set("X-User", user)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return resp.StatusCode, ""
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct {
		topic, user string
		status      int
	}{
		{"user/bob/inbox", "alice", http.StatusForbidden},
		{"user/alice/inbox", "", http.StatusForbidden},
		{"user/%7Bhttp.request.header.X-User%7D/inbox", "", http.StatusForbidden},
		{"user/%7Bhttp.request.header.X-User%7D/inbox", "alice", http.StatusForbidden},
		{"user/x/inbox", "*", http.StatusForbidden},
		{"user/a/b/inbox", "a/*", http.StatusForbidden},
	} {
		status, body := get(tt.topic, tt.user)
		if status != tt.status {
			t.Errorf("%s as %q: %d, want %d", tt.topic, tt.user, status, tt.status)
		}
		// A refusal says why, on one line.
		if !strings.Contains(body, "may not be subscribed") || strings.Count(body, "\n") != 1 {
			t.Errorf("%s as %q: body %q, want one line saying why", tt.topic, tt.user, body)
		}
	}
	c := mustSubscribe(t, tc.url("/events/?topic=user/alice/inbox"), http.Header{"X-User": {"alice"}})
	id := tc.publish("user/alice/inbox", "", "for alice")
	if ev := c.next(t); ev.ID != id {
		t.Fatalf("got %+v", ev)
	}
	c.close()

	// WebSocket: subscribe and publish frames checked against this
	// connection's expansion.
	ws, _, err := dialWS(t, wsURL(tc, "/ws/"), http.Header{"X-User": {"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ frame, want string }{
		{`{"type":"publish","topic":"room/bob","data":"x","ref":1}`, "error"},
		{`{"type":"publish","topic":"room/{http.request.header.X-User}","data":"x","ref":2}`, "error"},
		{`{"type":"subscribe","topics":["room/bob"],"ref":3}`, "error"},
		{`{"type":"subscribe","topics":["room/alice"],"ref":4}`, "ack"},
	} {
		ws.send(tt.frame)
		if f := ws.frame(); f.Type != tt.want {
			t.Errorf("%s: got %+v, want %s", tt.frame, f, tt.want)
		}
	}
	ws.send(`{"type":"publish","topic":"room/alice","data":"hi","ref":5}`)
	if ack, msg := ws.ackAndMessage(); ack.ID == "" || msg.ID != ack.ID {
		t.Fatalf("publish to room/alice: ack %+v, message %+v", ack, msg)
	}
	// Without the header, nothing may be published.
	anon := mustDialWS(t, wsURL(tc, "/ws/"))
	anon.send(`{"type":"publish","topic":"room/alice","data":"x","ref":6}`)
	if f := anon.frame(); f.Type != "error" {
		t.Fatalf("anonymous publish: %+v", f)
	}
}

// TestRefusedSubscriptionSaysWhy: 400 and 403 answers carry a one-line
// text reason, over SSE and before a WebSocket upgrade.
func TestRefusedSubscriptionSaysWhy(t *testing.T) {
	tc := startCaddy(t, "", `
	push_sse /events/* {
		topic news
		subscribe chat/*
	}
	push_ws /ws/* {
		topic news
		subscribe chat/*
	}`)
	for _, tt := range []struct {
		path, want string
		status     int
	}{
		{"/events/?topic=secret", `topic "secret" may not be subscribed to here`, 403},
		{"/events/?topic=chat//x", "segment", 400},
		{"/events/?topic=chat/%E2%80%8Bx", "invisible", 400},
		{"/events/?last_event_id=" + strings.Repeat("x", 2000), "last event ID", 400},
		{"/ws/?topic=secret", "may not be subscribed", 403},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.url(tt.path), nil)
		if strings.HasPrefix(tt.path, "/ws/") {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) ||
			!strings.HasSuffix(body, "\n") || strings.Count(body, "\n") != 1 ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("%.40s: %d %q (%s), want %d and one line with %q", tt.path, resp.StatusCode, body,
				resp.Header.Get("Content-Type"), tt.status, tt.want)
		}
	}
}

// TestTemplateExpandingToAnInvalidTopic: a placeholder value that makes
// a segment empty, `.` or `..`, or adds an invisible character, is a 400.
func TestTemplateExpandingToAnInvalidTopic(t *testing.T) {
	tc := startCaddy(t, "", `push_sse /events/* user/{http.request.header.X-User}/inbox`)
	for _, user := range []string{"..", ".", "a//b", "a/../b", "bob\u200b"} {
		req, _ := http.NewRequest(http.MethodGet, tc.url("/events/"), nil)
		req.Header.Set("X-User", user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("X-User %q: %d, want 400", user, resp.StatusCode)
		}
	}
}

// TestValidateChecksTopicsAndPatterns: a JSON config gets the checks the
// Caddyfile does.
func TestValidateChecksTopicsAndPatterns(t *testing.T) {
	for _, h := range []interface{ Validate() error }{
		&SSE{Subscriber: Subscriber{Topics: []string{"chat//lobby"}}},
		&SSE{Subscriber: Subscriber{Topics: []string{"news\u202e"}}},
		&SSE{Subscriber: Subscriber{Subscribe: []string{"a**"}}},
		&SSE{},
		&WS{Subscriber: Subscriber{Topics: []string{"x/../y"}}},
		&WS{Publish: []string{"a/b**"}},
		&WS{Subscriber: Subscriber{Topics: []string{"news"}}, Format: "xml"},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%+v: valid", h)
		}
	}
	for _, h := range []interface{ Validate() error }{
		&SSE{Subscriber: Subscriber{Topics: []string{"user/{http.auth.user.id}"}, Subscribe: []string{"room/{http.auth.user.id}/*"}}},
		&WS{Publish: []string{"room/*"}},
	} {
		if err := h.Validate(); err != nil {
			t.Errorf("%+v: %v", h, err)
		}
	}
}
