package push

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/internal/takeover"
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
	if !h.hasTopics() {
		return errors.New("no topic and no subscribe: subscribers would get nothing")
	}
	if err := h.Subscriber.validate(); err != nil {
		return err
	}
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
	// A refused request is answered here, with a reason, but counted by
	// why it was refused.
	var refused error
	defer func() {
		if refused == nil {
			refused = err
		}
		countConnection(kindSSE, refused)
	}()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed for an event stream", r.Method))
	}
	topics, _, err := h.requestTopics(r, false)
	if err != nil {
		return refuse(w, r, h.logger, &refused, err)
	}
	last, err := lastEventID(r)
	if err != nil {
		return refuse(w, r, h.logger, &refused, err)
	}
	if r.Method == http.MethodHead {
		sse.Headers(w.Header())
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if r.ProtoMajor == 1 && takeover.Possible(w) {
		return h.serveConn(w, r, topics, last)
	}
	return h.serveStream(w, r, topics, last)
}

// serveStream streams through the ResponseWriter, from the handler's
// goroutine: HTTP/2, HTTP/3, and HTTP/1 behind encode.
func (h *SSE) serveStream(w http.ResponseWriter, r *http.Request, topics []string, last string) error {
	info := newStreamInfo(r, topics)
	stream := sse.NewStream(w, h.opts)
	defer stream.Finish()
	sub, start, end, err := h.streams.subscribe(h.hub, r, topics, hub.SubscribeOptions{LastEventID: last, Kind: kindSSE})
	if err != nil {
		return err
	}
	defer end()

	err = stream.Begin(sub, start, last)
	if err == nil {
		err = stream.Run(r.Context().Done())
	}
	if reason := sub.Err(); reason != nil {
		// Ended by the hub: a subscriber too slow for its queue is
		// disconnected at once; on shutdown or reload a healthy one gets
		// a moment to see the stream end cleanly.
		stream.Interrupt(graceFor(reason))
		err = reason
	} else if err == nil {
		err = errClientGone
	}
	bytes, msgs := stream.Written()
	h.streams.ended(h.logger, "event stream ended", info, bytes, msgs, err)
	return nil
}

// serveConn streams over an HTTP/1 connection taken over from net/http
// once the response head is written through Caddy's writers: the body is
// close-delimited (Transfer-Encoding: identity), and the connection is
// served from a goroutine of its own instead of the handler's, which
// carries Caddy's whole middleware stack and net/http's buffers; queued
// messages are written by a goroutine that lives only while they flow.
// Caddy's access log is written when this returns, at connect; the
// stream's end is logged here.
func (h *SSE) serveConn(w http.ResponseWriter, r *http.Request, topics []string, last string) error {
	info := newStreamInfo(r, topics)
	// The stream is the subscription's Waker from the start, so that a
	// delivery calls it directly; it is set up once the connection is
	// taken over.
	c := new(sse.Conn)
	var conn atomic.Pointer[sse.Conn]
	sub, start, end, err := h.streams.subscribe(h.hub, r, topics, hub.SubscribeOptions{
		LastEventID: last,
		Kind:        kindSSE,
		OnEnd: func(reason error) {
			if c := conn.Load(); c != nil {
				c.End(graceFor(reason))
			} // else Serve sees the subscription ended
		},
		OnReadyDirect: c,
	})
	if err != nil {
		return err
	}

	hdr := w.Header()
	sse.Headers(hdr)
	hdr.Set("Transfer-Encoding", "identity")
	nc, _, err := takeover.Hijack(w, http.StatusOK)
	if err != nil {
		// The head went through but stayed in a writer in between: the
		// stream must follow the same way.
		end()
		h.logger.Debug("cannot take over the connection", zap.Error(err))
		return h.serveStream(w, r, topics, last)
	}
	// net/http's read and write deadlines no longer apply.
	_ = nc.SetDeadline(time.Time{})

	c.Init(nc, h.opts)
	conn.Store(c)
	goServe(h.logger, "panic serving an event stream", c.Abort, func() {
		ended := func(err error) {
			defer end()
			if reason := sub.Err(); reason != nil {
				err = reason
			} else if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = errClientGone
			}
			bytes, msgs := c.Written()
			h.streams.ended(h.logger, "event stream ended", info, bytes, msgs, err)
		}
		// The subscription may have ended before the stream existed.
		select {
		case <-sub.Done():
			c.Close()
			ended(nil)
		default:
			// An idle stream then keeps no goroutine where the poller
			// is available: Serve returns and ended runs when it ends.
			c.Serve(sub, start, last, ended)
		}
	})
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*SSE)(nil)
	_ caddy.Validator             = (*SSE)(nil)
	_ caddy.CleanerUpper          = (*SSE)(nil)
	_ caddyhttp.MiddlewareHandler = (*SSE)(nil)
)
