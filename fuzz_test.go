package push

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-push/push/hub"
)

func TestPatterns(t *testing.T) {
	for _, c := range []struct {
		pattern, topic string
		want           bool
	}{
		{"chat/*", "chat/lobby", true},
		{"chat/*", "chat/a/b", false},
		{"chat/*", "chat", false},
		{"chat/**", "chat/a/b", true},
		{"chat/**", "chat", true},
		{"**", "anything/at/all", true},
		{"*/news", "eu/news", true},
		{"*/news", "eu/x/news", false},
		{"room-*", "room-1", true},
		{"room-*", "hall-1", false},
		{"a/**/z", "a/z", true},
		{"a/**/z", "a/b/c/z", true},
		{"a/**/z", "a/b/c", false},
		{"news", "news", true},
		{"news", "news2", false},
	} {
		p, err := parsePattern(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.match(c.topic); got != c.want {
			t.Errorf("%q matches %q = %v, want %v", c.pattern, c.topic, got, c.want)
		}
	}
	for _, bad := range []string{"", "a**", "**b/c"} {
		if _, err := parsePattern(bad); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func FuzzPattern(f *testing.F) {
	f.Add("chat/*", "chat/lobby")
	f.Add("**/x/**/*", "a/x/b/c")
	f.Add("a*b*c", "aXbYc")
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		p, err := parsePattern(pattern)
		if err != nil {
			return
		}
		got := p.match(topic)
		if !strings.Contains(pattern, "*") && got != (pattern == topic) {
			t.Fatalf("literal %q matches %q = %v", pattern, topic, got)
		}
		all, _ := parsePattern("**")
		if !all.match(topic) {
			t.Fatalf("** does not match %q", topic)
		}
	})
}

// FuzzPlaceholderPattern: a placeholder's value is one literal segment in
// a pattern: user/{v}/* matches user/<v>/<one segment> and nothing else,
// and nothing at all if v is empty or holds `/` or `*`.
func FuzzPlaceholderPattern(f *testing.F) {
	f.Add("alice", "user/alice/inbox")
	f.Add("*", "user/x/inbox")
	f.Add("a/**", "user/a/b/c/d")
	f.Add("", "user//x")
	set, err := newPatternSet([]string{"user/{v}/*"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value, topic string) {
		repl := caddy.NewReplacer()
		repl.Set("v", value)
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		got := set.forRequest(r).match(topic)
		rest, ok := strings.CutPrefix(topic, "user/"+value+"/")
		want := ok && value != "" && !strings.ContainsAny(value, "/*") && !strings.Contains(rest, "/")
		if got != want {
			t.Fatalf("value %q, topic %q: match %v, want %v", value, topic, got, want)
		}
	})
}

// FuzzPublishBody feeds arbitrary bodies to the admin API's JSON decoding
// and checks that whatever it accepts is a valid message.
func FuzzPublishBody(f *testing.F) {
	f.Add(`{"topic":"news","data":"x"}`)
	f.Add(`[{"topic":"a","data_base64":"/w=="},{"topic":"b","event":"e","data":""}]`)
	f.Add(`{"topic":"a","data":"x","data_base64":"eA=="}`)
	h, err := hub.New(new(hub.MemoryBroker), hub.Config{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer h.Close()
	f.Fuzz(func(t *testing.T, body string) {
		var reqs []publishRequest
		if decodeStrict([]byte(body), &reqs) != nil {
			reqs = make([]publishRequest, 1)
			if decodeStrict([]byte(body), &reqs[0]) != nil {
				return
			}
		}
		for _, r := range reqs {
			m, err := r.message()
			if err != nil {
				continue
			}
			if (r.Data == nil) == (r.DataBase64 == nil) {
				t.Fatalf("accepted %+v", r)
			}
			if h.Validate(m) == nil && hub.ValidTopic(m.Topic) != nil {
				t.Fatalf("invalid topic %q validated", m.Topic)
			}
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1", "64KiB", "1MB", "2g", "0", "-1", "99999999999999999999", "1xb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := parseSize(s); err == nil && n <= 0 {
			t.Fatalf("%q parsed to %d", s, n)
		}
	})
}
