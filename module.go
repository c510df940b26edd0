// Package push is caddy-push: real-time push for sites behind Caddy.
// Browsers subscribe over Server-Sent Events (push_sse) or WebSocket; the
// application publishes through Caddy's admin API (/push/...).
package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/sse"
	"github.com/caddy-push/push/wshub"
)

func init() {
	caddy.RegisterModule(App{})
	caddy.RegisterModule(SSE{})
	caddy.RegisterModule(WS{})
	caddy.RegisterModule(MemoryBroker{})
}

// hubs holds the process's hub, keyed by broker configuration, so that a
// config reload keeps history and IDs; only a change of broker replaces it.
var hubs = caddy.NewUsagePool()

// running is the push app of the running config, for the admin API,
// which is provisioned before apps and gets no config of its own.
var running atomic.Pointer[App]

// App is the `push` app: it owns the hub (history, buffers, broker).
// It is optional in a config; handlers load it with defaults if absent.
type App struct {
	// Messages kept per topic for replay; 0 keeps none. Default: 100.
	History *int `json:"history,omitempty"`

	// How long a message is kept for replay. Default: 1h.
	HistoryTTL caddy.Duration `json:"history_ttl,omitempty"`

	// Bytes of history kept for all topics together; the oldest messages
	// are evicted first. Default: 64 MiB.
	HistoryMaxBytes int64 `json:"history_max_bytes,omitempty"`

	// Messages queued per subscriber; a subscriber whose queue fills is
	// disconnected, and resumes from its last ID. Default: 256.
	Buffer int `json:"buffer,omitempty"`

	// Largest payload a publisher may send, in bytes. Default: 1 MiB.
	MaxMessageSize int64 `json:"max_message_size,omitempty"`

	// The broker that numbers and carries messages. Default: memory.
	BrokerRaw json.RawMessage `json:"broker,omitempty" caddy:"namespace=push.brokers inline_key=module"`

	hub      *hub.Hub // set in Provision, never changed: the admin API reads it
	poolKey  string
	released bool
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "push",
		New: func() caddy.Module { return new(App) },
	}
}

// BrokerModule is implemented by push.brokers.* modules. A module is
// configuration; the broker it opens belongs to the hub, which outlives
// any one config.
type BrokerModule interface {
	OpenBroker(logger *zap.Logger) (hub.Broker, error)
}

type hubEntry struct{ *hub.Hub }

func (e hubEntry) Destruct() error { return e.Close() }

// Provision sets up the app and obtains the hub.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	var bm BrokerModule = new(MemoryBroker)
	a.poolKey = "memory"
	if a.BrokerRaw != nil {
		key := string(a.BrokerRaw)
		mod, err := ctx.LoadModule(a, "BrokerRaw")
		if err != nil {
			return fmt.Errorf("loading broker: %v", err)
		}
		bm = mod.(BrokerModule)
		// Naming the default broker is no change of broker.
		if _, isMemory := bm.(*MemoryBroker); !isMemory {
			a.poolKey = key
		}
	}
	cfg := a.hubConfig()
	logger := a.logger
	val, _, err := hubs.LoadOrNew(a.poolKey, func() (caddy.Destructor, error) {
		b, err := bm.OpenBroker(logger)
		if err != nil {
			return nil, err
		}
		h, err := hub.New(b, cfg, logger)
		if err != nil {
			return nil, err
		}
		return hubEntry{h}, nil
	})
	if err != nil {
		return fmt.Errorf("provisioning hub: %v", err)
	}
	a.hub = val.(hubEntry).Hub
	return nil
}

func (a *App) hubConfig() hub.Config {
	cfg := hub.Config{
		HistoryTTL:      time.Duration(a.HistoryTTL),
		HistoryMaxBytes: a.HistoryMaxBytes,
		Buffer:          a.Buffer,
		MaxMessageSize:  a.MaxMessageSize,
	}
	if a.History != nil {
		cfg.History = *a.History
		if cfg.History == 0 {
			cfg.History = -1
		}
	}
	return cfg
}

// Validate checks the configuration.
func (a *App) Validate() error {
	switch {
	case a.History != nil && *a.History < 0:
		return errors.New("history must not be negative")
	case a.HistoryTTL < 0:
		return errors.New("history_ttl must not be negative")
	case a.HistoryMaxBytes < 0:
		return errors.New("history_max_bytes must not be negative")
	case a.Buffer < 0:
		return errors.New("buffer must not be negative")
	case a.MaxMessageSize < 0:
		return errors.New("max_message_size must not be negative")
	}
	return nil
}

// Start applies this config's limits to the hub and makes it the one the
// admin API publishes to.
func (a *App) Start() error {
	a.hub.SetConfig(a.hubConfig())
	a.hub.SetLogger(a.logger)
	running.Store(a)
	return nil
}

// Stop stops the app.
func (a *App) Stop() error {
	running.CompareAndSwap(a, nil)
	return nil
}

// Cleanup releases the hub; the last config to use it closes it.
func (a *App) Cleanup() error {
	if a.hub == nil || a.released {
		return nil
	}
	a.released = true
	_, err := hubs.Delete(a.poolKey)
	return err
}

// Hub returns the app's hub.
func (a *App) Hub() *hub.Hub { return a.hub }

// appHub returns the hub of the push app of ctx's config, loading the
// app with defaults if the config has none.
func appHub(ctx caddy.Context) (*hub.Hub, error) {
	app, err := ctx.App("push")
	if err != nil {
		return nil, fmt.Errorf("getting push app: %v", err)
	}
	return app.(*App).hub, nil
}

// MemoryBroker is the in-process broker, the default.
type MemoryBroker struct{}

// CaddyModule returns the Caddy module information.
func (MemoryBroker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "push.brokers.memory",
		New: func() caddy.Module { return new(MemoryBroker) },
	}
}

// OpenBroker implements BrokerModule.
func (*MemoryBroker) OpenBroker(*zap.Logger) (hub.Broker, error) {
	return new(hub.MemoryBroker), nil
}

// SSE is the `push_sse` handler: it streams topics to subscribers as
// Server-Sent Events.
type SSE struct {
	Subscriber

	// Interval after which an idle stream gets a comment line, to keep
	// proxies from closing it; 0 turns it off. Default: 25s.
	Heartbeat *caddy.Duration `json:"heartbeat,omitempty"`

	// If set, sent once as the SSE `retry:` field: how long the browser
	// waits before reconnecting. Default: not sent.
	Retry caddy.Duration `json:"retry,omitempty"`

	hub     *hub.Hub
	logger  *zap.Logger
	streams *streamSet
	opts    sse.Options
}

// CaddyModule returns the Caddy module information.
func (SSE) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.push_sse",
		New: func() caddy.Module { return new(SSE) },
	}
}

// DefaultHeartbeat is the default heartbeat and ping interval.
const DefaultHeartbeat = 25 * time.Second

// writeTimeout bounds one write to a subscriber: a write blocked on a
// client that stopped reading fails then, which also bounds how long an
// ended stream can hold its goroutine.
const writeTimeout = 10 * time.Second

// shutdownGrace is how long a stream ended by shutdown or reload may take
// to finish its last write.
const shutdownGrace = time.Second

// Provision sets up the handler.
func (h *SSE) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.streams = new(streamSet)
	if !h.hasTopics() {
		return errors.New("no topic and no subscribe: subscribers would get nothing")
	}
	if err := h.Subscriber.provision(); err != nil {
		return err
	}
	var err error
	if h.hub, err = appHub(ctx); err != nil {
		return err
	}
	h.opts = sse.Options{
		Heartbeat:    DefaultHeartbeat,
		Retry:        time.Duration(h.Retry),
		WriteTimeout: writeTimeout,
		Logger:       h.logger,
	}
	if h.Heartbeat != nil {
		h.opts.Heartbeat = time.Duration(*h.Heartbeat)
	}
	return nil
}

// Validate checks the configuration.
func (h *SSE) Validate() error {
	if h.Heartbeat != nil && *h.Heartbeat < 0 {
		return errors.New("heartbeat must not be negative")
	}
	if h.Retry < 0 {
		return errors.New("retry must not be negative")
	}
	return nil
}

// Cleanup ends the streams of this config, so that clients reconnect to
// the next one and resume.
func (h *SSE) Cleanup() error {
	if h.streams != nil {
		h.streams.endAll()
	}
	return nil
}

// ServeHTTP subscribes the request to its topics and streams them.
func (h *SSE) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed for an event stream", r.Method))
	}
	topics, err := h.requestTopics(r, false)
	if err != nil {
		return err
	}
	last, err := lastEventID(r)
	if err != nil {
		return err
	}
	if r.Method == http.MethodHead {
		sse.Headers(w.Header())
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if r.ProtoMajor == 1 && hijackable(w) {
		return h.serveHijacked(w, r, topics, last)
	}
	return h.serveStream(w, r, topics, last)
}

// serveStream streams through the ResponseWriter, from the handler's
// goroutine: HTTP/2, HTTP/3, and HTTP/1 behind encode.
func (h *SSE) serveStream(w http.ResponseWriter, r *http.Request, topics []string, last string) error {
	stream := sse.NewStream(w, h.opts)
	defer stream.Finish()
	sub, start, end, err := h.streams.subscribe(h.hub, r, topics, hub.SubscribeOptions{LastEventID: last})
	if err != nil {
		return err
	}
	defer end()

	if err := stream.Begin(start, last); err != nil {
		h.logger.Debug("subscriber gone", zap.Error(err))
		return nil
	}
	sub.Sent(len(start.Replay))
	err = stream.Run(sub, r.Context().Done())
	if reason := sub.Err(); reason != nil {
		// Ended by the hub: a subscriber too slow for its queue is
		// disconnected at once; on shutdown or reload a healthy one gets
		// a moment to see the stream end cleanly.
		grace := shutdownGrace
		if reason == hub.ErrSlow {
			grace = 0
		}
		stream.Interrupt(grace)
		err = reason
	}
	h.logger.Debug("stream ended", zap.Strings("topics", topics), zap.Error(err))
	return nil
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
	ids, err := h.hub.Publish(ctx, m)
	if err != nil {
		return "", err
	}
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
func (h *WS) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
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

	var sess atomic.Pointer[wshub.Session]
	sub, start, end, err := h.streams.subscribe(h.hub, r, topics, hub.SubscribeOptions{
		LastEventID: last,
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
	go func() {
		defer end()
		defer func() {
			// This goroutine is not a handler's: nothing above recovers.
			if v := recover(); v != nil {
				h.logger.Error("panic serving a WebSocket", zap.Any("panic", v), zap.Stack("stack"))
				_ = c.Close()
			}
		}()
		opts := h.opts
		// A client may come back to a topic it was given and left.
		opts.CanSubscribe = func(t string) bool { return slices.Contains(topics, t) || h.allowed(t) }
		s := wshub.NewSession(c, sub, opts)
		sess.Store(s)
		err := s.Serve(start, last)
		h.logger.Debug("websocket ended", zap.Strings("topics", topics), zap.Error(err))
	}()
	return nil
}

// hijackable reports whether an HTTP/1 response can be taken over: the
// connection supports it and no encoder (Caddy's encode) sits in between,
// which would have to see the bytes.
func hijackable(w http.ResponseWriter) bool {
	for {
		t := reflect.TypeOf(w)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if strings.HasSuffix(t.PkgPath(), "/caddyhttp/encode") {
			return false
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			_, ok := w.(http.Hijacker)
			return ok
		}
		w = u.Unwrap()
	}
}

// serveHijacked streams over an HTTP/1 connection taken over from
// net/http: the response is close-delimited, and the connection is served
// from two small goroutines of its own (one writes, one notices the client
// leaving) instead of the handler's, which carries Caddy's whole
// middleware stack and net/http's buffers. It falls back to the
// ResponseWriter if the connection cannot be taken over.
func (h *SSE) serveHijacked(w http.ResponseWriter, r *http.Request, topics []string, last string) error {
	var stream atomic.Pointer[sse.Stream]
	sub, start, end, err := h.streams.subscribe(h.hub, r, topics, hub.SubscribeOptions{
		LastEventID: last,
		OnEnd: func(reason error) {
			st := stream.Load()
			if st == nil {
				return // ServeConn sees the subscription ended
			}
			// A slow subscriber is cut at once; on shutdown or reload a
			// write in progress gets a moment to finish.
			if reason == hub.ErrSlow {
				_ = st.Conn().Close()
			} else {
				time.AfterFunc(shutdownGrace, func() { _ = st.Conn().Close() })
			}
			go st.Close()
		},
		OnReady: func() {
			if st := stream.Load(); st != nil {
				st.Kick()
			}
		},
	})
	if err != nil {
		return err
	}

	hdr := w.Header()
	sse.Headers(hdr)
	hdr.Set("Connection", "close")
	head := []byte("HTTP/1.1 200 OK\r\n")
	var hb bytes.Buffer
	_ = hdr.Write(&hb)
	head = append(append(head, hb.Bytes()...), "\r\n"...)

	nc, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		end()
		h.logger.Debug("cannot take over the connection", zap.Error(err))
		hdr.Del("Connection")
		return h.serveStream(w, r, topics, last)
	}
	// net/http's read and write deadlines no longer apply.
	_ = nc.SetDeadline(time.Time{})

	go func() {
		defer end()
		defer func() {
			// This goroutine is not a handler's: nothing above recovers.
			if v := recover(); v != nil {
				h.logger.Error("panic serving an event stream", zap.Any("panic", v), zap.Stack("stack"))
				_ = nc.Close()
			}
		}()
		st := sse.NewConnStream(nc, head, h.opts)
		stream.Store(st)
		// The subscription may have ended before the stream existed.
		select {
		case <-sub.Done():
			st.Close()
			return
		default:
		}
		err := st.ServeConn(sub, start, last)
		if reason := sub.Err(); reason != nil {
			err = reason
		}
		h.logger.Debug("stream ended", zap.Strings("topics", topics), zap.Error(err))
	}()
	return nil
}

// streamSet tracks one handler's live subscriptions, so that they can be
// ended when its server shuts down (http.Server.Shutdown waits for
// streaming responses but never ends them) or its config is unloaded.
type streamSet struct {
	mu       sync.Mutex
	subs     map[*hub.Subscription]struct{}
	servers  map[*http.Server]struct{}
	stopping bool
}

// subscribe subscribes a request to topics on h and registers the
// subscription, so that shutdown or unloading the config ends it; end
// undoes both. The error is a caddyhttp.HandlerError.
func (s *streamSet) subscribe(h *hub.Hub, r *http.Request, topics []string, opts hub.SubscribeOptions) (sub *hub.Subscription, start hub.Start, end func(), err error) {
	sub, start, err = h.Subscribe(topics, opts)
	if err != nil {
		return nil, hub.Start{}, nil, caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	if !s.add(sub, r) {
		sub.Close()
		return nil, hub.Start{}, nil, caddyhttp.Error(http.StatusServiceUnavailable, hub.ErrShutdown)
	}
	end = func() {
		s.remove(sub)
		sub.Close()
	}
	return sub, start, end, nil
}

// add registers sub, and hooks the shutdown of the request's server the
// first time that server is seen. It reports false if the set is already
// stopping.
func (s *streamSet) add(sub *hub.Subscription, r *http.Request) bool {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	if s.subs == nil {
		s.subs = make(map[*hub.Subscription]struct{})
		s.servers = make(map[*http.Server]struct{})
	}
	s.subs[sub] = struct{}{}
	if srv != nil {
		if _, ok := s.servers[srv]; !ok {
			s.servers[srv] = struct{}{}
			srv.RegisterOnShutdown(s.endAll)
		}
	}
	return true
}

func (s *streamSet) remove(sub *hub.Subscription) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
}

// endAll ends every stream with hub.ErrShutdown; new ones are refused.
func (s *streamSet) endAll() {
	s.mu.Lock()
	s.stopping = true
	subs := make([]*hub.Subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		sub.End(hub.ErrShutdown)
	}
}

// Interface guards
var (
	_ caddy.App                   = (*App)(nil)
	_ caddy.Provisioner           = (*App)(nil)
	_ caddy.Validator             = (*App)(nil)
	_ caddy.CleanerUpper          = (*App)(nil)
	_ BrokerModule                = (*MemoryBroker)(nil)
	_ caddy.Provisioner           = (*SSE)(nil)
	_ caddy.Validator             = (*SSE)(nil)
	_ caddy.CleanerUpper          = (*SSE)(nil)
	_ caddyhttp.MiddlewareHandler = (*SSE)(nil)
	_ caddy.Provisioner           = (*WS)(nil)
	_ caddy.Validator             = (*WS)(nil)
	_ caddy.CleanerUpper          = (*WS)(nil)
	_ caddyhttp.MiddlewareHandler = (*WS)(nil)
)
