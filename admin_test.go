package push

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAdminNeverPublishesToACleanedPath: Caddy's admin router answers a
// path with an empty, `.` or `..` segment with a 307 to the cleaned path.
// A client that follows it with the Referer set (Go's does) is refused;
// one that does not follow it publishes nothing; a segment sent
// percent-encoded reaches the module and is an invalid topic.
func TestAdminNeverPublishesToACleanedPath(t *testing.T) {
	tc := startCaddy(t, "", `push_sse /events/* chat/lobby`)
	follow := &http.Client{} // follows redirects, as http.Post does
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(c *http.Client, path, body string) (int, string) {
		t.Helper()
		resp, err := c.Post("http://"+tc.admin+path, "application/octet-stream", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	paths := []string{
		"/push/topics/chat//lobby",
		"/push/topics/chat/./lobby",
		"/push/topics/x/../chat/lobby",
		"/push/topics/chat/lobby/.",
		"/push/topics/chat/lobby/x/..",
		"/push/topics//chat/lobby",
		"/push//topics/chat/lobby",
	}
	for _, p := range paths {
		if status, body := post(follow, p, "x"); status != http.StatusBadRequest {
			t.Errorf("following redirects, POST %s: %d %s, want 400", p, status, body)
		}
		if status, body := post(noFollow, p, "x"); status != http.StatusTemporaryRedirect {
			t.Errorf("POST %s: %d %s, want the router's 307", p, status, body)
		}
	}
	// The raw route cleaned into the JSON one.
	jsonBody := `{"topic":"chat/lobby","data":"x"}`
	for _, p := range []string{"/push/topics/x/../../publish", "/push/topics/../publish", "/push/./publish"} {
		if status, body := post(follow, p, jsonBody); status != http.StatusBadRequest {
			t.Errorf("following redirects, POST %s: %d %s, want 400", p, status, body)
		}
	}
	// Percent-encoded, the router leaves the path alone and the topic is
	// refused for what it is.
	for _, p := range []string{"/push/topics/chat/%2E/lobby", "/push/topics/chat/%2E%2E/lobby", "/push/topics/chat%2F%2Flobby"} {
		if status, body := post(follow, p, "x"); status != http.StatusBadRequest || !strings.Contains(body, "segment") {
			t.Errorf("POST %s: %d %s, want 400 for the segment", p, status, body)
		}
	}
	if st := tc.stats(); st["published"] != float64(0) {
		t.Fatalf("published %v messages", st["published"])
	}
	// A request that names its topic plainly still works, and a GET that
	// the router cleans is harmless.
	if status, body := post(follow, "/push/topics/chat/lobby", "x"); status != http.StatusOK {
		t.Fatalf("POST chat/lobby: %d %s", status, body)
	}
	resp, err := follow.Get("http://" + tc.admin + "/push/topics/p/q/../../../stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("GET p/q/../../../stats after the redirect: %d, want 400", resp.StatusCode)
	}
}

// TestAdminRejectsInvalidUTF8 checks that JSON input is never silently
// changed: invalid UTF-8 and lone surrogate escapes are 400, not U+FFFD.
func TestAdminRejectsInvalidUTF8(t *testing.T) {
	tc := startCaddy(t, "", `push_sse /events/* news`)
	for _, body := range []string{
		"{\"topic\":\"bad\xff\",\"data\":\"x\"}",
		"{\"topic\":\"news\",\"event\":\"e\xff\",\"data\":\"x\"}",
		"{\"topic\":\"news\",\"data\":\"\xc3\"}",
		`{"topic":"bad\ud800","data":"x"}`,
		`{"topic":"news","event":"\udc00","data":"x"}`,
		`{"topic":"news","data":"\ud83d"}`,
		`[{"topic":"news","data":"ok"},{"topic":"news","data":"\ud800"}]`,
	} {
		status, resp := tc.adminDo(http.MethodPost, "/push/publish", body)
		if status != http.StatusBadRequest {
			t.Errorf("%q: %d %s, want 400", body, status, resp)
		}
	}
	for _, p := range []string{"/push/topics/news?event=%FF", "/push/topics/bad%FF", "/push/topics/news%E2%80%8B"} {
		if status, resp := tc.adminDo(http.MethodPost, p, "x"); status != http.StatusBadRequest {
			t.Errorf("POST %s: %d %s, want 400", p, status, resp)
		}
	}
	if st := tc.stats(); st["published"] != float64(0) {
		t.Fatalf("published %v messages", st["published"])
	}
	// A surrogate pair is a character like any other.
	status, resp := tc.adminDo(http.MethodPost, "/push/publish", `{"topic":"news","data":"\ud83d\ude00"}`)
	if status != http.StatusOK {
		t.Fatalf("surrogate pair: %d %s", status, resp)
	}
}

func TestAdminTopicsPaging(t *testing.T) {
	tc := startCaddy(t, "", `push_sse /events/* news`)
	for i := range 5 {
		tc.publish(fmt.Sprintf("t/%d", i), "", "x")
	}
	list := func(query string) []string {
		t.Helper()
		status, body := tc.adminDo(http.MethodGet, "/push/topics"+query, "")
		if status != http.StatusOK {
			t.Fatalf("GET /push/topics%s: %d %s", query, status, body)
		}
		var infos []struct{ Topic string }
		if err := json.Unmarshal(body, &infos); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, i := range infos {
			names = append(names, i.Topic)
		}
		return names
	}
	if got := fmt.Sprint(list("")); got != "[t/0 t/1 t/2 t/3 t/4]" {
		t.Fatalf("all: %s", got)
	}
	if got := fmt.Sprint(list("?limit=2")); got != "[t/0 t/1]" {
		t.Fatalf("limit 2: %s", got)
	}
	if got := fmt.Sprint(list("?limit=2&after=t/1")); got != "[t/2 t/3]" {
		t.Fatalf("after t/1: %s", got)
	}
	if got := fmt.Sprint(list("?after=t/4")); got != "[]" {
		t.Fatalf("after the last: %s", got)
	}
	for _, q := range []string{"?limit=0", "?limit=-1", "?limit=x", "?limit=10001"} {
		if status, body := tc.adminDo(http.MethodGet, "/push/topics"+q, ""); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", q, status, body)
		}
	}
}
