package push

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-push/push/hub"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// MaxPublishBatch is the most messages one POST /push/publish may hold.
const MaxPublishBatch = 1000

// Paging of GET /push/topics.
const (
	DefaultTopicsLimit = 1000
	MaxTopicsLimit     = 10000
)

// AdminAPI is the `admin.api.push` module: publish and inspect through
// Caddy's admin endpoint.
//
//	POST /push/topics/<topic>   publish the raw body (?event=<type>)
//	POST /push/publish          publish JSON: one message or an array
//	GET  /push/topics           live topics, sorted (?limit=&after=)
//	GET  /push/topics/<topic>   one topic
//	GET  /push/stats            hub totals
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.push",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes of the push API.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/push/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func (AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	app := running.Load()
	if app == nil {
		return apiError(http.StatusServiceUnavailable, errors.New("push app is not running"))
	}
	if err := cleanedByRedirect(r); err != nil {
		return apiError(http.StatusBadRequest, err)
	}
	h := app.hub
	pub := publisher{hub: h}
	path := strings.TrimPrefix(r.URL.Path, "/push/")
	switch {
	case path == "publish":
		if r.Method != http.MethodPost {
			return methodNotAllowed(w, http.MethodPost)
		}
		return publishJSON(w, r, pub)
	case path == "stats":
		if r.Method != http.MethodGet {
			return methodNotAllowed(w, http.MethodGet)
		}
		return writeJSON(w, h.StatsWithHistory())
	case path == "topics":
		if r.Method != http.MethodGet {
			return methodNotAllowed(w, http.MethodGet)
		}
		return listTopics(w, r, h)
	case strings.HasPrefix(path, "topics/"):
		topic := strings.TrimPrefix(path, "topics/")
		switch r.Method {
		case http.MethodGet:
			if topic == "" {
				return listTopics(w, r, h)
			}
			info, ok := h.Topic(topic)
			if !ok {
				return apiError(http.StatusNotFound, fmt.Errorf("topic %q has no subscribers and no retained messages", topic))
			}
			return writeJSON(w, info)
		case http.MethodPost:
			return publishRaw(w, r, pub, topic)
		default:
			return methodNotAllowed(w, http.MethodGet, http.MethodPost)
		}
	default:
		return apiError(http.StatusNotFound, fmt.Errorf("no such push endpoint: %s", r.URL.Path))
	}
}

// cleanedByRedirect reports a request that Caddy's admin router redirected
// from a path it cleaned: the router answers a path with an empty, `.` or
// `..` segment with a 307 to the cleaned path before any admin module
// sees it, and a client that follows the redirect would publish to a
// topic it never named (`chat//lobby` to `chat/lobby`, or
// `topics/x/../../publish` to the JSON route). The only trace the
// redirected request carries is the Referer that some clients (Go's
// net/http among them) set to the URL they were redirected from.
func cleanedByRedirect(r *http.Request) error {
	ref := r.Header.Get("Referer")
	if ref == "" {
		return nil
	}
	u, err := url.Parse(ref)
	if err != nil || u.Host != r.Host {
		return nil
	}
	from := u.EscapedPath()
	if !strings.HasPrefix(from, "/push/") || from == r.URL.EscapedPath() {
		return nil
	}
	cleaned := path.Clean(from)
	if strings.HasSuffix(from, "/") && cleaned != "/" {
		cleaned += "/"
	}
	if cleaned != r.URL.EscapedPath() {
		return nil
	}
	return fmt.Errorf("redirected from %s, whose path has an empty, '.' or '..' segment: topics may not have one", from)
}

// listTopics answers GET /push/topics: at most ?limit= live topics
// (default DefaultTopicsLimit), sorted, after the topic ?after=.
func listTopics(w http.ResponseWriter, r *http.Request, h *hub.Hub) error {
	q := r.URL.Query()
	limit := DefaultTopicsLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxTopicsLimit {
			return apiError(http.StatusBadRequest, fmt.Errorf("limit %q: must be a whole number from 1 to %d", v, MaxTopicsLimit))
		}
		limit = n
	}
	return writeJSON(w, h.TopicsAfter(q.Get("after"), limit))
}

type idResponse struct {
	ID string `json:"id"`
}

// publisher is where the admin routes and push_publish publish: a hub,
// the topics a request may publish to and the largest payload.
type publisher struct {
	hub *hub.Hub
	// allowed, if set, reports whether a request may publish to a topic;
	// nil allows every topic.
	allowed func(r *http.Request, topic string) bool
	// maxSize, if not 0, is the largest payload, in bytes; the hub's
	// max_message_size applies too.
	maxSize int64
}

// limit returns the largest payload a request may publish.
func (p publisher) limit() int64 {
	limit := p.hub.Config().MaxMessageSize
	if p.maxSize > 0 && p.maxSize < limit {
		limit = p.maxSize
	}
	return limit
}

// check reports why m may not be published by r, and the status to
// answer.
func (p publisher) check(r *http.Request, m *hub.Message) (int, error) {
	if p.allowed != nil && hub.ValidTopic(m.Topic) == nil && !p.allowed(r, m.Topic) {
		return http.StatusForbidden, fmt.Errorf("topic %q may not be published to here", m.Topic)
	}
	if int64(len(m.Data)) > p.limit() {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("message is larger than max_message_size (%d bytes)", p.limit())
	}
	return 0, nil
}

// publish publishes msgs, all or none, and records how long the request
// took from start until they were handed to the subscribers' queues.
func (p publisher) publish(r *http.Request, start time.Time, msgs ...*hub.Message) ([]string, error) {
	ids, err := p.hub.Publish(r.Context(), msgs...)
	if err != nil {
		return nil, publishError(err)
	}
	observePublish(start)
	return ids, nil
}

// publishRaw publishes the request body as one message on topic.
func publishRaw(w http.ResponseWriter, r *http.Request, p publisher, topic string) error {
	start := time.Now()
	if err := hub.ValidTopic(topic); err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("topic: %v", err))
	}
	if status, err := p.check(r, &hub.Message{Topic: topic}); err != nil {
		return apiError(status, err)
	}
	limit := p.limit()
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("reading body: %v", err))
	}
	if int64(len(data)) > limit {
		return apiError(http.StatusRequestEntityTooLarge, fmt.Errorf("body is larger than max_message_size (%d bytes)", limit))
	}
	msg := &hub.Message{Topic: topic, Event: r.URL.Query().Get("event"), Data: data}
	ids, err := p.publish(r, start, msg)
	if err != nil {
		return err
	}
	return writeJSON(w, idResponse{ids[0]})
}

// publishRequest is one message of POST /push/publish.
type publishRequest struct {
	Topic      string  `json:"topic"`
	Event      string  `json:"event,omitempty"`
	Data       *string `json:"data,omitempty"`
	DataBase64 *string `json:"data_base64,omitempty"`
}

func (p publishRequest) message() (*hub.Message, error) {
	m := &hub.Message{Topic: p.Topic, Event: p.Event}
	switch {
	case p.Data != nil && p.DataBase64 != nil:
		return nil, errors.New("both data and data_base64 given: send one")
	case p.Data != nil:
		m.Data = []byte(*p.Data)
	case p.DataBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*p.DataBase64)
		if err != nil {
			return nil, fmt.Errorf("data_base64: %v", err)
		}
		m.Data = b
	default:
		return nil, errors.New("neither data nor data_base64 given")
	}
	return m, nil
}

// publishJSON publishes one JSON message or a batch, all or nothing.
func publishJSON(w http.ResponseWriter, r *http.Request, p publisher) error {
	start := time.Now()
	h := p.hub
	// Room for a batch of messages, and for one message of the largest
	// size in base64.
	limit := 8*p.limit() + 64<<10
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("reading body: %v", err))
	}
	if int64(len(body)) > limit {
		return apiError(http.StatusRequestEntityTooLarge, fmt.Errorf("body is larger than %d bytes", limit))
	}
	if err := hub.CheckJSONText(body); err != nil {
		return apiError(http.StatusBadRequest, err)
	}
	body = bytes.TrimSpace(body)
	batch := len(body) > 0 && body[0] == '['
	var reqs []publishRequest
	if batch {
		err = decodeStrict(body, &reqs)
	} else {
		reqs = make([]publishRequest, 1)
		err = decodeStrict(body, &reqs[0])
	}
	if err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("decoding JSON: %v", err))
	}
	switch {
	case len(reqs) == 0:
		return apiError(http.StatusBadRequest, errors.New("empty batch"))
	case len(reqs) > MaxPublishBatch:
		return apiError(http.StatusRequestEntityTooLarge, fmt.Errorf("batch holds %d messages, more than %d", len(reqs), MaxPublishBatch))
	}
	msgs := make([]*hub.Message, len(reqs))
	for i, req := range reqs {
		where := func(err error) error {
			if batch {
				return fmt.Errorf("message %d: %w", i, err)
			}
			return err
		}
		m, err := req.message()
		if err != nil {
			return apiError(http.StatusBadRequest, where(err))
		}
		if err := h.Validate(m); err != nil {
			return publishError(where(err))
		}
		if status, err := p.check(r, m); err != nil {
			return apiError(status, where(err))
		}
		msgs[i] = m
	}
	ids, err := p.publish(r, start, msgs...)
	if err != nil {
		return err
	}
	if !batch {
		return writeJSON(w, idResponse{ids[0]})
	}
	resp := make([]idResponse, len(ids))
	for i, id := range ids {
		resp[i].ID = id
	}
	return writeJSON(w, resp)
}

// decodeStrict decodes exactly one JSON value with no unknown fields.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// publishError maps a publish error to its status: invalid input is the
// client's fault, anything else is the broker's.
func publishError(err error) error {
	switch {
	case errors.Is(err, hub.ErrTooLarge):
		return apiError(http.StatusRequestEntityTooLarge, err)
	case errors.Is(err, hub.ErrClosed):
		return apiError(http.StatusServiceUnavailable, err)
	case errors.Is(err, hub.ErrInvalid):
		return apiError(http.StatusBadRequest, err)
	default:
		return apiError(http.StatusServiceUnavailable, fmt.Errorf("broker: %w", err))
	}
}

func apiError(status int, err error) error {
	return caddy.APIError{HTTPStatus: status, Err: err}
}

func methodNotAllowed(w http.ResponseWriter, allowed ...string) error {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	return apiError(http.StatusMethodNotAllowed, errors.New("method not allowed"))
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var _ caddy.AdminRouter = AdminAPI{}
