package push

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// appPublish publishes from another process, as an application in
// another container would: the test binary run as a plain HTTP client.
// It returns the status and the body of the answer.
func appPublish(t *testing.T, url, auth, body string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "PUSH_HELPER_URL="+url, "PUSH_HELPER_AUTH="+auth, "PUSH_HELPER_BODY="+body)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("publisher process: %v %s", err, out)
	}
	var status int
	var rest string
	if _, err := fmt.Sscanf(string(out), "%d", &status); err != nil {
		t.Fatalf("publisher process printed %q", out)
	}
	_, rest, _ = strings.Cut(string(out), " ")
	return status, rest
}

func publishedCount(t *testing.T, tc *testCaddy) float64 {
	t.Helper()
	return tc.stats()["published"].(float64)
}

// TestPublishRouteBearerKey: an application in another process publishes
// through push_publish behind a bearer-key header matcher; without the
// key, with another key, or to a topic outside `publish`, nothing is
// published.
func TestPublishRouteBearerKey(t *testing.T) {
	t.Setenv("PUSH_TEST_KEY", "s3cret-key")
	tc := startCaddy(t, "", `
	push_sse /events/* {
		subscribe news/* other
	}
	@app header Authorization "Bearer {env.PUSH_TEST_KEY}"
	handle /pub {
		push_publish @app {
			publish news/*
			max_message_size 16
		}
		respond 401
	}`)
	sub := mustSubscribe(t, tc.url("/events/?topic=news/a&topic=other"), nil)
	defer sub.close()
	waitSubscribers(t, tc, 1)
	url := tc.url("/pub")

	status, body := appPublish(t, url+"?topic=news/a&event=flash", "Bearer s3cret-key", "hello")
	if status != http.StatusOK || !strings.Contains(body, `"id"`) {
		t.Fatalf("raw publish: %d %s", status, body)
	}
	var one struct{ ID string }
	_ = json.Unmarshal([]byte(body), &one)
	if ev := sub.next(t); ev.ID != one.ID || ev.Event != "flash" || ev.Data != "hello" {
		t.Fatalf("subscriber got %+v, want %s", ev, one.ID)
	}

	status, body = appPublish(t, url, "Bearer s3cret-key", `[{"topic":"news/a","data":"one"},{"topic":"news/a","data_base64":"dHdv"}]`)
	var ids []struct{ ID string }
	if status != http.StatusOK || json.Unmarshal([]byte(body), &ids) != nil || len(ids) != 2 {
		t.Fatalf("batch publish: %d %s", status, body)
	}
	for i, want := range []string{"one", "two"} {
		if ev := sub.next(t); ev.ID != ids[i].ID || ev.Data != want {
			t.Fatalf("subscriber got %+v, want %s %s", ev, ids[i].ID, want)
		}
	}

	before := publishedCount(t, tc)
	for _, c := range []struct {
		name, query, auth, body string
		status                  int
	}{
		{"no key", "?topic=news/a", "", "x", 401},
		{"wrong key", "?topic=news/a", "Bearer guess", "x", 401},
		{"key of another scheme", "?topic=news/a", "Basic s3cret-key", "x", 401},
		{"topic outside publish", "?topic=other", "Bearer s3cret-key", "x", 403},
		{"batch with one topic outside", "", "Bearer s3cret-key", `[{"topic":"news/a","data":"a"},{"topic":"other","data":"b"}]`, 403},
		{"over the route's max_message_size", "?topic=news/a", "Bearer s3cret-key", strings.Repeat("x", 17), 413},
		{"JSON over the route's max_message_size", "", "Bearer s3cret-key", `{"topic":"news/a","data":"` + strings.Repeat("x", 17) + `"}`, 413},
		{"invalid topic", "?topic=a%20b", "Bearer s3cret-key", "x", 400},
		{"bad JSON", "", "Bearer s3cret-key", `{"topic":`, 400},
	} {
		status, body := appPublish(t, url+c.query, c.auth, c.body)
		if status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.status)
		}
	}
	if after := publishedCount(t, tc); after != before {
		t.Fatalf("refused requests published: %v -> %v", before, after)
	}
	sub.close()
	if evs := sub.ended(t); len(evs) != 0 {
		t.Fatalf("subscriber got refused messages: %+v", evs)
	}

	// Other methods: 405 with Allow.
	req, _ := http.NewRequest(http.MethodGet, url+"?topic=news/a", nil)
	req.Header.Set("Authorization", "Bearer s3cret-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestPublishRouteRemoteIP: push_publish behind remote_ip publishes for
// the allowed network and refuses every other.
func TestPublishRouteRemoteIP(t *testing.T) {
	tc := startCaddy(t, "", `
	@loopback remote_ip 127.0.0.0/8
	@private remote_ip 10.0.0.0/8
	handle /pub/local {
		push_publish @loopback news
		respond 403
	}
	handle /pub/private {
		push_publish @private news
		respond 403
	}`)
	if status, body := appPublish(t, tc.url("/pub/local?topic=news"), "", "hi"); status != http.StatusOK {
		t.Fatalf("from loopback: %d %s", status, body)
	}
	before := publishedCount(t, tc)
	if status, body := appPublish(t, tc.url("/pub/private?topic=news"), "", "hi"); status != http.StatusForbidden {
		t.Fatalf("from outside the allowed network: %d %s", status, body)
	}
	if after := publishedCount(t, tc); after != before {
		t.Fatalf("refused request published: %v -> %v", before, after)
	}
}

// TestPublishRouteForwardAuth: a browser's publish passes forward_auth,
// which asks the application who the user is; the route publishes only
// under that user's own topics.
func TestPublishRouteForwardAuth(t *testing.T) {
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Cookie") {
		case "session=alice":
			w.Header().Set("X-User-Id", "alice")
		case "session=star":
			// A user ID that must not act as a wildcard.
			w.Header().Set("X-User-Id", "*")
		case "session=slash":
			w.Header().Set("X-User-Id", "bob/x")
		default:
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer auth.Close()
	tc := startCaddy(t, "", fmt.Sprintf(`
	route /me/publish {
		forward_auth %s {
			uri /auth
			copy_headers X-User-Id
		}
		push_publish {
			publish user/{http.request.header.X-User-Id}/*
		}
	}`, strings.TrimPrefix(auth.URL, "http://")))

	do := func(cookie, spoof, query, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, tc.url("/me/publish"+query), strings.NewReader(body))
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		if spoof != "" {
			req.Header.Set("X-User-Id", spoof)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := do("session=alice", "", "?topic=user/alice/inbox", "hi"); status != http.StatusOK {
		t.Fatalf("alice to her inbox: %d %s", status, body)
	}
	if status, body := do("session=alice", "", "", `{"topic":"user/alice/notes","data":"x"}`); status != http.StatusOK {
		t.Fatalf("alice JSON to her notes: %d %s", status, body)
	}
	before := publishedCount(t, tc)
	for _, c := range []struct {
		name, cookie, spoof, query string
		status                     int
	}{
		{"alice to bob", "session=alice", "", "?topic=user/bob/inbox", 403},
		{"alice claiming to be bob", "session=alice", "bob", "?topic=user/bob/inbox", 403},
		{"no session, claiming bob", "", "bob", "?topic=user/bob/inbox", 401},
		{"user ID *", "session=star", "", "?topic=user/bob/inbox", 403},
		{"user ID with a slash", "session=slash", "", "?topic=user/bob/x/inbox", 403},
	} {
		if status, body := do(c.cookie, c.spoof, c.query, "x"); status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.status)
		}
	}
	if after := publishedCount(t, tc); after != before {
		t.Fatalf("refused requests published: %v -> %v", before, after)
	}
}

// TestPublishRouteAnswersAsAdmin: for the same input, push_publish and
// the admin routes answer the same status and the same body shape.
func TestPublishRouteAnswersAsAdmin(t *testing.T) {
	tc := startCaddy(t, "max_message_size 1KiB", `push_publish /pub **`)
	big := strings.Repeat("x", 1025)
	for _, body := range []string{
		`{"topic":"news","data":"a"}`,
		`[{"topic":"news","data":"a"},{"topic":"news","data":"b"}]`,
		`{"topic":`, `"news"`, `{"topic":"news","data":"a"} {}`, `{"topic":"news","dat":"a"}`,
		`{"data":"a"}`, `{"topic":"a b","data":"a"}`, `{"topic":"news","data":"a","data_base64":"YQ=="}`,
		`{"topic":"news"}`, `{"topic":"news","data_base64":"!!"}`, `{"topic":"news","event":"push.reset","data":"a"}`,
		`[]`, `[{"topic":"news","data":"a"},{"topic":"","data":"b"}]`, `{"topic":"news","data":"` + big + `"}`,
	} {
		aStatus, aBody := tc.adminDo(http.MethodPost, "/push/publish", body)
		resp, err := http.Post(tc.url("/pub"), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var got, want map[string]any
		var gotList, wantList []map[string]any
		dec := json.NewDecoder(resp.Body)
		var raw json.RawMessage
		_ = dec.Decode(&raw)
		resp.Body.Close()
		if resp.StatusCode != aStatus {
			t.Errorf("%.40s: push_publish %d %s, admin %d %s", body, resp.StatusCode, raw, aStatus, aBody)
			continue
		}
		if json.Unmarshal(raw, &got) == nil && json.Unmarshal(aBody, &want) == nil {
			if (got["error"] == nil) != (want["error"] == nil) || (got["id"] == nil) != (want["id"] == nil) {
				t.Errorf("%.40s: push_publish %s, admin %s", body, raw, aBody)
			}
			if got["error"] != nil && got["error"] != want["error"] {
				t.Errorf("%.40s: push_publish says %q, admin %q", body, got["error"], want["error"])
			}
		} else if json.Unmarshal(raw, &gotList) != nil || json.Unmarshal(aBody, &wantList) != nil || len(gotList) != len(wantList) {
			t.Errorf("%.40s: push_publish %s, admin %s", body, raw, aBody)
		}
	}
	// Raw bodies: the same limits.
	resp, err := http.Post(tc.url("/pub?topic=news"), "text/plain", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if aStatus, _ := tc.adminDo(http.MethodPost, "/push/topics/news", big); resp.StatusCode != aStatus || aStatus != 413 {
		t.Fatalf("raw too large: push_publish %d, admin %d", resp.StatusCode, aStatus)
	}
}

// FuzzPublishPlaceholder: whatever a placeholder in a publish pattern
// expands to, the pattern allows at most the topics under that value
// taken literally as one segment: a value never widens a pattern.
func FuzzPublishPlaceholder(f *testing.F) {
	for _, seed := range [][2]string{
		{"alice", "user/alice/inbox"}, {"*", "user/bob/inbox"}, {"**", "user/a/b/c"},
		{"a/b", "user/a/b/c"}, {"", "user//inbox"}, {"{x}", "user/{x}/inbox"}, {"a*", "user/ab/c"},
	} {
		f.Add(seed[0], seed[1])
	}
	set, err := newPatternSet([]string{"user/{http.request.header.X-User-Id}/*"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, user, topic string) {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header["X-User-Id"] = []string{user}
		repl := caddyhttp.NewTestReplacer(r)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		if !set.forRequest(r).match(topic) {
			return
		}
		rest, ok := strings.CutPrefix(topic, "user/"+user+"/")
		if !ok || user == "" || strings.ContainsAny(user, "/*") || strings.Contains(rest, "/") {
			t.Fatalf("user %q may publish to %q", user, topic)
		}
	})
}
