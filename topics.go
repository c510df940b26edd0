package push

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"go.uber.org/zap"

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
	// Placeholders are expanded per request, e.g.
	// `user/{http.auth.user.id}/*`; one that is unset, empty, or holds a
	// `/` or `*` makes that pattern allow nothing. Default: none.
	Subscribe []string `json:"subscribe,omitempty"`

	subscribe patternSet
}

func (s *Subscriber) provision() error {
	var err error
	s.subscribe, err = newPatternSet(s.Subscribe)
	return err
}

// validate checks the topics and patterns.
func (s *Subscriber) validate() error {
	for _, t := range s.Topics {
		if err := checkTemplate(t); err != nil {
			return err
		}
	}
	for _, p := range s.Subscribe {
		if err := checkPattern(p); err != nil {
			return fmt.Errorf("subscribe: %v", err)
		}
	}
	return nil
}

// checkTemplate reports why t cannot be a topic template, or nil: one
// without placeholders must be a valid topic; one with placeholders is
// checked once expanded.
func checkTemplate(t string) error {
	if strings.Contains(t, "{") {
		return nil
	}
	if err := hub.ValidTopic(t); err != nil {
		return fmt.Errorf("topic %q: %v", t, err)
	}
	return nil
}

// hasTopics reports whether a connection can get any topic at all.
func (s *Subscriber) hasTopics() bool { return len(s.Topics) > 0 || len(s.Subscribe) > 0 }

// requestTopics returns the topics of one request: the route's topic
// templates expanded, then those the client asked for with ?topic=,
// without duplicates; and the subscribe patterns of the request, for
// topics it may add later. The error is a caddyhttp.HandlerError with
// the status to answer.
func (s *Subscriber) requestTopics(r *http.Request, allowNone bool) ([]string, patterns, error) {
	repl := requestReplacer(r)
	allowed := s.subscribe.forRequest(r)
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
				return nil, nil, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("topic template %q: %v", tpl, err))
			}
		}
		if err := hub.ValidTopic(t); err != nil {
			return nil, nil, caddyhttp.Error(http.StatusBadRequest,
				fmt.Errorf("topic template %q expanded to %q: %v", tpl, t, err))
		}
		if err := add(t); err != nil {
			return nil, nil, err
		}
	}
	for _, t := range r.URL.Query()["topic"] {
		if err := hub.ValidTopic(t); err != nil {
			return nil, nil, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("topic %q: %v", t, err))
		}
		if _, ok := seen[t]; ok {
			continue
		}
		if !allowed.match(t) {
			return nil, nil, caddyhttp.Error(http.StatusForbidden, fmt.Errorf("topic %q may not be subscribed to here", t))
		}
		if err := add(t); err != nil {
			return nil, nil, err
		}
	}
	if len(topics) == 0 && !allowNone {
		return nil, nil, caddyhttp.Error(http.StatusBadRequest, errors.New("no topic: name one with ?topic="))
	}
	return topics, allowed, nil
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

// patternSet is a list of subscribe or publish patterns as configured:
// those without placeholders are compiled once, those with placeholders
// are expanded for each request, as topic templates are.
type patternSet struct {
	static  patterns
	dynamic []string
}

// newPatternSet compiles ps.
func newPatternSet(ps []string) (patternSet, error) {
	var set patternSet
	for _, p := range ps {
		pat, err := parsePattern(p)
		if err != nil {
			return patternSet{}, err
		}
		if strings.Contains(p, "{") {
			set.dynamic = append(set.dynamic, p)
		} else {
			set.static = append(set.static, pat)
		}
	}
	return set, nil
}

// forRequest returns the patterns that apply to r: placeholders are
// expanded with r's values. A pattern with a placeholder that is unset or
// empty, or whose value holds `/` or `*`, allows nothing: a value is one
// literal segment, never a wildcard and never more segments.
func (ps patternSet) forRequest(r *http.Request) patterns {
	if len(ps.dynamic) == 0 {
		return ps.static
	}
	repl := requestReplacer(r)
	out := slices.Clip(ps.static)
	for _, p := range ps.dynamic {
		if repl == nil {
			continue
		}
		expanded, err := repl.ReplaceFunc(p, func(_ string, val any) (any, error) {
			v := ""
			if val != nil {
				v = fmt.Sprint(val)
			}
			if v == "" || strings.ContainsAny(v, "/*") {
				return nil, errUnusable
			}
			return v, nil
		})
		if err != nil {
			continue
		}
		if pat, err := parsePattern(expanded); err == nil {
			out = append(out, pat)
		}
	}
	return out
}

// errUnusable marks a placeholder value that a pattern cannot use.
var errUnusable = errors.New("unusable placeholder value")

// requestReplacer returns the replacer of r, if Caddy gave it one.
func requestReplacer(r *http.Request) *caddy.Replacer {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	return repl
}

// refuse answers a request that cannot subscribe with its status and a
// one-line reason, logs it at DEBUG, and sets *refused to err so that
// the caller can count it. err is a caddyhttp.HandlerError from
// requestTopics or lastEventID; any other error is returned as is.
func refuse(w http.ResponseWriter, r *http.Request, logger *zap.Logger, refused *error, err error) error {
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode < 400 || he.StatusCode >= 500 {
		return err
	}
	*refused = err
	logger.Debug("subscription refused",
		zap.Int("status", he.StatusCode),
		zap.String("uri", r.RequestURI),
		zap.Error(he.Err))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(he.StatusCode)
	_, _ = io.WriteString(w, strings.ReplaceAll(he.Err.Error(), "\n", " ")+"\n")
	return nil
}

// patterns is a list of patterns, any of which may match.
type patterns []pattern

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
