package push

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-push/push/hub"
)

// MaxTopicsPerConnection bounds how many topics one connection may hold.
const MaxTopicsPerConnection = 64

// maxCursorLen bounds a Last-Event-ID.
const maxCursorLen = 1024

// Subscriber is the part of the push_sse and push_ws configuration that
// decides which topics a connection gets.
type Subscriber struct {
	// Topics every subscriber of this route gets. Placeholders are
	// expanded per request, e.g. `user/{http.auth.user.id}`; one that
	// expands to an empty or invalid topic answers 400.
	Topics []string `json:"topic,omitempty"`

	// Patterns of the topics a client may add with `?topic=`. `*` matches
	// within one `/`-separated segment, `**` any number of segments.
	// Default: none.
	Subscribe []string `json:"subscribe,omitempty"`

	patterns patterns
}

func (s *Subscriber) provision() error {
	for _, t := range s.Topics {
		if !strings.Contains(t, "{") {
			if err := hub.ValidTopic(t); err != nil {
				return fmt.Errorf("topic %q: %v", t, err)
			}
		}
	}
	var err error
	s.patterns, err = parsePatterns(s.Subscribe)
	return err
}

// hasTopics reports whether a connection can get any topic at all.
func (s *Subscriber) hasTopics() bool { return len(s.Topics) > 0 || len(s.Subscribe) > 0 }

// allowed reports whether a client may add topic.
func (s *Subscriber) allowed(topic string) bool { return s.patterns.match(topic) }

// requestTopics returns the topics of one request: the route's topic
// templates expanded, then those the client asked for with ?topic=,
// without duplicates. The error is a caddyhttp.HandlerError with the
// status to answer.
func (s *Subscriber) requestTopics(r *http.Request, allowNone bool) ([]string, error) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	topics := make([]string, 0, len(s.Topics)+1)
	seen := make(map[string]struct{}, len(s.Topics)+1)
	add := func(t string) error {
		if _, ok := seen[t]; ok {
			return nil
		}
		if len(topics) >= MaxTopicsPerConnection {
			return caddyhttp.Error(http.StatusBadRequest,
				fmt.Errorf("more than %d topics on one connection", MaxTopicsPerConnection))
		}
		seen[t] = struct{}{}
		topics = append(topics, t)
		return nil
	}
	for _, tpl := range s.Topics {
		t := tpl
		if repl != nil {
			var err error
			t, err = repl.ReplaceFunc(tpl, func(name string, val any) (any, error) {
				if val == nil || fmt.Sprint(val) == "" {
					return nil, fmt.Errorf("placeholder {%s} is empty", name)
				}
				return val, nil
			})
			if err != nil {
				return nil, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("topic template %q: %v", tpl, err))
			}
		}
		if err := hub.ValidTopic(t); err != nil {
			return nil, caddyhttp.Error(http.StatusBadRequest,
				fmt.Errorf("topic template %q expanded to %q: %v", tpl, t, err))
		}
		if err := add(t); err != nil {
			return nil, err
		}
	}
	for _, t := range r.URL.Query()["topic"] {
		if err := hub.ValidTopic(t); err != nil {
			return nil, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("topic %q: %v", t, err))
		}
		if _, ok := seen[t]; ok {
			continue
		}
		if !s.allowed(t) {
			return nil, caddyhttp.Error(http.StatusForbidden, fmt.Errorf("topic %q may not be subscribed to here", t))
		}
		if err := add(t); err != nil {
			return nil, err
		}
	}
	if len(topics) == 0 && !allowNone {
		return nil, caddyhttp.Error(http.StatusBadRequest, errors.New("no topic: name one with ?topic="))
	}
	return topics, nil
}

// lastEventID returns the cursor a request resumes from: the
// Last-Event-ID header, else the last_event_id query parameter.
func lastEventID(r *http.Request) (string, error) {
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = r.URL.Query().Get("last_event_id")
	}
	if len(id) > maxCursorLen {
		return "", caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("last event ID longer than %d bytes", maxCursorLen))
	}
	return id, nil
}

// pattern is a compiled subscribe or publish pattern: segments separated
// by `/`, where `**` matches any number of segments and `*` within a
// segment matches any run of characters other than `/`.
type pattern []string

func parsePattern(p string) (pattern, error) {
	if p == "" {
		return nil, errors.New("empty topic pattern")
	}
	if len(p) > hub.MaxTopicLen {
		return nil, fmt.Errorf("topic pattern longer than %d bytes", hub.MaxTopicLen)
	}
	segs := strings.Split(p, "/")
	for _, seg := range segs {
		if strings.Contains(seg, "**") && seg != "**" {
			return nil, fmt.Errorf("topic pattern %q: ** must be a whole segment", p)
		}
	}
	return pattern(segs), nil
}

// checkPattern reports why p cannot be a pattern, or nil.
func checkPattern(p string) error {
	_, err := parsePattern(p)
	return err
}

// patterns is a list of patterns, any of which may match.
type patterns []pattern

func parsePatterns(ps []string) (patterns, error) {
	var out patterns
	for _, p := range ps {
		pat, err := parsePattern(p)
		if err != nil {
			return nil, err
		}
		out = append(out, pat)
	}
	return out, nil
}

// match reports whether any of ps matches topic.
func (ps patterns) match(topic string) bool {
	for _, p := range ps {
		if p.match(topic) {
			return true
		}
	}
	return false
}

// match reports whether topic matches p, by dynamic programming over
// segments so that no pattern takes more than quadratic time.
func (p pattern) match(topic string) bool {
	segs := strings.Split(topic, "/")
	// ok[j]: p[:i] matches segs[:j]
	ok := make([]bool, len(segs)+1)
	ok[0] = true
	for _, ps := range p {
		if ps == "**" {
			for j := 1; j <= len(segs); j++ {
				ok[j] = ok[j] || ok[j-1]
			}
			continue
		}
		for j := len(segs); j >= 1; j-- {
			ok[j] = ok[j-1] && globSegment(ps, segs[j-1])
		}
		ok[0] = false
	}
	return ok[len(segs)]
}

// globSegment matches one segment against a pattern segment in which `*`
// matches any run of characters.
func globSegment(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && p[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
