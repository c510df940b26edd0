package push

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/sse"
)

func init() {
	caddy.RegisterModule(SSE{})
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
func (h *SSE) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) (err error) {
	defer func() { countConnection(kindSSE, err) }()
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
	sub, start, end, err := h.streams.subscribe(h.hub, r, topics, hub.SubscribeOptions{LastEventID: last, Kind: kindSSE})
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
		Kind:        kindSSE,
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

// Interface guards
var (
	_ caddy.Provisioner           = (*SSE)(nil)
	_ caddy.Validator             = (*SSE)(nil)
	_ caddy.CleanerUpper          = (*SSE)(nil)
	_ caddyhttp.MiddlewareHandler = (*SSE)(nil)
)
