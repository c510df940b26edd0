package push

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/wshub"
)

func init() {
	caddy.RegisterModule(WS{})
}

// WS is the `push_ws` handler: it streams topics to subscribers over
// WebSocket and, where allowed, lets them subscribe and publish with
// frames of their own.
type WS struct {
	Subscriber

	// Patterns of the topics a client may publish to with a publish
	// frame. Default: none.
	Publish []string `json:"publish,omitempty"`

	// Origin headers allowed to open a connection, as scheme://host[:port];
	// `*` allows any. A request without Origin (not from a browser) is
	// always allowed. Default: the request's own host.
	Origins []string `json:"origins,omitempty"`

	// Interval of server pings; a client that answers none in two
	// intervals is disconnected. 0 turns pings off. Default: 25s.
	Ping *caddy.Duration `json:"ping,omitempty"`

	// The protocol: `json`, one JSON frame per message and JSON frames
	// from the client, or `raw`, one frame per message holding only its
	// payload. Default: json.
	Format string `json:"format,omitempty"`

	// Largest frame a client may send, in bytes; a larger one closes the
	// connection with 1009. Default: 64 KiB.
	MaxMessageSize int64 `json:"max_message_size,omitempty"`

	hub       *hub.Hub
	logger    *zap.Logger
	streams   *streamSet
	publish   patterns
	origins   []string // normalized
	anyOrigin bool
	opts      wshub.Options
}

// DefaultWSMaxMessageSize is the default largest frame a client may send.
const DefaultWSMaxMessageSize = 64 << 10

// CaddyModule returns the Caddy module information.
func (WS) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.push_ws",
		New: func() caddy.Module { return new(WS) },
	}
}

// Provision sets up the handler.
func (h *WS) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.streams = new(streamSet)
	if !h.hasTopics() && len(h.Publish) == 0 {
		return errors.New("no topic, subscribe or publish: the connection could do nothing")
	}
	if err := h.Subscriber.provision(); err != nil {
		return err
	}
	var err error
	if h.publish, err = parsePatterns(h.Publish); err != nil {
		return err
	}
	h.anyOrigin = slices.Contains(h.Origins, "*")
	h.origins = h.origins[:0]
	for _, o := range h.Origins {
		if u, err := url.Parse(o); err == nil && o != "*" {
			h.origins = append(h.origins, normalOrigin(u))
		}
	}
	if h.hub, err = appHub(ctx); err != nil {
		return err
	}
	h.opts = wshub.Options{
		Ping:           DefaultHeartbeat,
		MaxMessageSize: h.MaxMessageSize,
		MaxTopics:      MaxTopicsPerConnection,
		CanPublish:     h.publish.match,
		Publish:        h.publishMessage,
		Logger:         h.logger,
	}
	if h.Ping != nil {
		h.opts.Ping = time.Duration(*h.Ping)
	}
	if h.opts.MaxMessageSize == 0 {
		h.opts.MaxMessageSize = DefaultWSMaxMessageSize
	}
	if h.Format == "raw" {
		h.opts.Format = wshub.Raw
	}
	return nil
}

// Validate checks the configuration.
func (h *WS) Validate() error {
	switch {
	case h.Ping != nil && *h.Ping < 0:
		return errors.New("ping must not be negative")
	case h.MaxMessageSize < 0:
		return errors.New("max_message_size must not be negative")
	case h.Format != "" && h.Format != "json" && h.Format != "raw":
		return fmt.Errorf("format %q: must be json or raw", h.Format)
	case h.Format == "raw" && len(h.Publish) > 0:
		return errors.New("publish needs format json: format raw ignores client frames")
	}
	for _, o := range h.Origins {
		if err := checkOrigin(o); err != nil {
			return err
		}
	}
	return nil
}

// checkOrigin reports whether o can be an entry of `origins`.
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.Contains(o, "#") ||
		strings.Contains(u.Host, "*") {
		return fmt.Errorf("origin %q: must be scheme://host[:port] or * (no paths or wildcards)", o)
	}
	return nil
}

// Cleanup closes the connections of this config with 1001, so that
// clients reconnect to the next one and resume.
func (h *WS) Cleanup() error {
	if h.streams != nil {
		h.streams.endAll()
	}
	return nil
}

func (h *WS) publishMessage(ctx context.Context, m *hub.Message) (string, error) {
	start := time.Now()
	ids, err := h.hub.Publish(ctx, m)
	if err != nil {
		return "", err
	}
	observePublish(start)
	return ids[0], nil
}

// originAllowed reports whether the request's Origin may connect.
func (h *WS) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || h.anyOrigin {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(h.Origins) == 0 {
		return sameHost(u.Host, r.Host)
	}
	o := normalOrigin(u)
	return slices.Contains(h.origins, o)
}

// normalOrigin is u as scheme://host[:port], lowercase, without the
// scheme's default port: browsers leave it out of Origin.
func normalOrigin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host
}

// sameHost compares two host[:port] values, ignoring case and the ports
// 80 and 443, which one side may spell out and the other leave out.
func sameHost(a, b string) bool {
	strip := func(h string) string {
		h = strings.ToLower(h)
		if host, port, err := net.SplitHostPort(h); err == nil && (port == "80" || port == "443") {
			return host
		}
		return strings.Trim(h, "[]")
	}
	return strip(a) == strip(b)
}

// ServeHTTP upgrades the request, subscribes it to its topics and serves
// the connection.
func (h *WS) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) (err error) {
	defer func() { countConnection(kindWS, err) }()
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed for a WebSocket", r.Method))
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return caddyhttp.Error(http.StatusBadRequest, wshub.ErrNotUpgrade)
	}
	if !h.originAllowed(r) {
		return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("origin %q not allowed", r.Header.Get("Origin")))
	}
	// In format raw the client cannot subscribe with frames: it needs a
	// topic from the start.
	topics, err := h.requestTopics(r, h.opts.Format == wshub.JSON)
	if err != nil {
		return err
	}
	last, err := lastEventID(r)
	if err != nil {
		return err
	}

	info := newStreamInfo(r, topics)
	var sess atomic.Pointer[wshub.Session]
	sub, start, end, err := h.streams.subscribe(h.hub, r, topics, hub.SubscribeOptions{
		LastEventID: last,
		Kind:        kindWS,
		OnEnd: func(reason error) {
			if s := sess.Load(); s != nil {
				s.Ended(reason)
			}
		},
		OnReady: func() {
			if s := sess.Load(); s != nil {
				s.Kick()
			}
		},
	})
	if err != nil {
		return err
	}

	c, err := wshub.Upgrade(w, r, writeTimeout)
	if err != nil {
		// The upgrader has answered the client.
		end()
		h.logger.Debug("upgrade failed", zap.Error(err))
		return nil
	}
	// The connection is ours now: serve it from a goroutine of its own and
	// let this one, with the stack of Caddy's whole middleware chain, end.
	// Caddy's access log is written when this returns, at connect; the
	// connection's end is logged here.
	goServe(h.logger, "panic serving a WebSocket", c, func() {
		defer end()
		opts := h.opts
		// A client may come back to a topic it was given and left.
		opts.CanSubscribe = func(t string) bool { return slices.Contains(topics, t) || h.allowed(t) }
		s := wshub.NewSession(c, sub, opts)
		sess.Store(s)
		err := s.Serve(start, last)
		bytes, msgs := s.Written()
		h.streams.ended(h.logger, "websocket ended", info, bytes, msgs, err)
	})
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*WS)(nil)
	_ caddy.Validator             = (*WS)(nil)
	_ caddy.CleanerUpper          = (*WS)(nil)
	_ caddyhttp.MiddlewareHandler = (*WS)(nil)
)
