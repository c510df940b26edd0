package push

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
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
	// frame; placeholders are expanded per request, as in subscribe.
	// Default: none.
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
	publish   patternSet
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
	if err := h.Subscriber.provision(); err != nil {
		return err
	}
	var err error
	if h.publish, err = newPatternSet(h.Publish); err != nil {
		return err
	}
	if err := h.provisionOrigins(); err != nil {
		return err
	}
	if h.hub, err = appHub(ctx); err != nil {
		return err
	}
	h.opts = wshub.Options{
		Ping:           DefaultHeartbeat,
		MaxMessageSize: h.MaxMessageSize,
		MaxTopics:      MaxTopicsPerConnection,
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
	if !h.hasTopics() && len(h.Publish) == 0 {
		return errors.New("no topic, subscribe or publish: the connection could do nothing")
	}
	if err := h.Subscriber.validate(); err != nil {
		return err
	}
	for _, p := range h.Publish {
		if err := checkPattern(p); err != nil {
			return fmt.Errorf("publish: %v", err)
		}
	}
	switch {
	case h.Ping != nil && *h.Ping < 0:
		return errors.New("ping must not be negative")
	case h.MaxMessageSize < 0:
		return errors.New("max_message_size must not be negative")
	case h.Format == "raw" && len(h.Publish) > 0:
		return errors.New("publish needs format json: format raw ignores client frames")
	}
	if err := checkFormat(h.Format); err != nil {
		return err
	}
	for _, o := range h.Origins {
		if err := checkOrigin(o); err != nil {
			return err
		}
	}
	return nil
}

// checkFormat reports why f cannot be a format, or nil.
func checkFormat(f string) error {
	if f != "" && f != "json" && f != "raw" {
		return fmt.Errorf("format must be json or raw, not %q", f)
	}
	return nil
}

// provisionOrigins reads `origins`: `*`, or a list kept normalized.
func (h *WS) provisionOrigins() error {
	h.anyOrigin = slices.Contains(h.Origins, "*")
	h.origins = h.origins[:0]
	for _, o := range h.Origins {
		if o == "*" {
			continue
		}
		n, ok := parseOrigin(o)
		if !ok {
			return checkOrigin(o)
		}
		h.origins = append(h.origins, n)
	}
	return nil
}

// checkOrigin reports whether o can be an entry of `origins`.
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	if _, ok := parseOrigin(o); !ok {
		return fmt.Errorf("origin %q: must be scheme://host[:port] or * (no user, path, query, fragment or wildcard)", o)
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

// originAllowed reports whether the request's Origin may connect. With
// no `origins`, the Origin must be the request's own scheme and host.
func (h *WS) originAllowed(r *http.Request) bool {
	origin, ok := r.Header["Origin"]
	if !ok || h.anyOrigin {
		return true
	}
	if len(origin) != 1 {
		return false
	}
	o, ok := parseOrigin(origin[0])
	if !ok {
		return false
	}
	if len(h.Origins) == 0 {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		own, ok := parseOrigin(scheme + "://" + r.Host)
		return ok && o == own
	}
	return slices.Contains(h.origins, o)
}

// maxOrigin bounds the length of an origin.
const maxOrigin = 2048

// parseOrigin parses an origin as browsers send it, scheme://host[:port]
// and nothing else (RFC 6454): no user, path, query or fragment. It
// returns it lowercase and without the scheme's default port, which
// browsers leave out.
func parseOrigin(s string) (string, bool) {
	if len(s) > maxOrigin {
		return "", false
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || !validScheme(scheme) {
		return "", false
	}
	scheme = strings.ToLower(scheme)
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", false
		}
		host, port = rest[:end+1], rest[end+1:]
		if ip, err := netip.ParseAddr(host[1 : len(host)-1]); err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", false
		}
	} else if i := strings.IndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i:]
	}
	if host == "" || (!strings.HasPrefix(host, "[") && !validHostName(host)) {
		return "", false
	}
	if port != "" {
		p := port[1:]
		if port[0] != ':' || p == "" || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
			return "", false
		}
		n, _ := strconv.Atoi(p)
		if n > 65535 {
			return "", false
		}
		p = strconv.Itoa(n)
		if ((scheme == "http" || scheme == "ws") && p == "80") || ((scheme == "https" || scheme == "wss") && p == "443") {
			port = ""
		} else {
			port = ":" + p
		}
	}
	return scheme + "://" + strings.ToLower(host) + port, true
}

// validScheme reports whether s is a URI scheme (RFC 3986, section 3.1).
func validScheme(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validHostName reports whether s is a host name or IPv4 address as an
// origin carries it: letters, digits, '-', '.' and '_' (browsers send
// international names in punycode).
func validHostName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !isDigit(c) && c != '-' && c != '.' && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// ServeHTTP upgrades the request, subscribes it to its topics and serves
// the connection.
func (h *WS) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) (err error) {
	// A refused request is answered here, with a reason, but counted by
	// why it was refused.
	var refused error
	defer func() {
		if refused == nil {
			refused = err
		}
		countConnection(kindWS, refused)
	}()
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
	topics, canSubscribe, err := h.requestTopics(r, h.opts.Format == wshub.JSON)
	if err != nil {
		return refuse(w, r, h.logger, &refused, err)
	}
	last, err := lastEventID(r)
	if err != nil {
		return refuse(w, r, h.logger, &refused, err)
	}
	canPublish := h.publish.forRequest(r)

	info := newStreamInfo(r, topics)
	// The session is the subscription's Waker from the start, and holds
	// the connection (Session.Upgrade), so that a delivery calls it
	// directly and finds both in one object; it is set up once upgraded.
	s := new(wshub.Session)
	var sess atomic.Pointer[wshub.Session]
	sub, start, end, err := h.streams.subscribe(h.hub, r, topics, hub.SubscribeOptions{
		LastEventID: last,
		Kind:        kindWS,
		OnEnd: func(reason error) {
			if s := sess.Load(); s != nil {
				s.Ended(reason)
			}
		},
		OnReadyDirect: s,
	})
	if err != nil {
		return err
	}

	c, err := s.Upgrade(w, r, writeTimeout)
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
	// An idle connection then keeps no goroutine where the poller is
	// available: Serve returns and done runs when the session ends.
	goServe(h.logger, "panic serving a WebSocket", c.Close, func() {
		opts := h.opts
		// A client may come back to a topic it was given and left.
		opts.CanSubscribe = func(t string) bool { return slices.Contains(topics, t) || canSubscribe.match(t) }
		opts.CanPublish = canPublish.match
		s.Init(c, sub, opts)
		sess.Store(s)
		s.Serve(start, last, func(err error) {
			defer end()
			bytes, msgs := s.Written()
			h.streams.ended(h.logger, "websocket ended", info, bytes, msgs, err)
		})
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
