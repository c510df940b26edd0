package push

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-push/push/hub"
)

// DefaultHeartbeat is the default heartbeat and ping interval.
const DefaultHeartbeat = 25 * time.Second

// writeTimeout bounds one write to a subscriber: a write blocked on a
// client that stopped reading fails then, which also bounds how long an
// ended stream can hold its goroutine.
const writeTimeout = 10 * time.Second

// shutdownGrace is how long a stream ended by shutdown or reload may take
// to finish its last write.
const shutdownGrace = time.Second

// streamSet tracks one handler's live subscriptions, so that they can be
// ended when its server shuts down (http.Server.Shutdown waits for
// streaming responses but never ends them) or its config is unloaded.
type streamSet struct {
	mu       sync.Mutex
	subs     map[*hub.Subscription]struct{}
	servers  map[*http.Server]struct{}
	stopping bool

	// Sampling of the WARN lines for slow subscribers.
	slowWindow     time.Time
	slowLogged     int
	slowSuppressed int
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

// graceFor is how long a stream ended by the hub for reason may take to
// finish a write in progress: none for a subscriber too slow for its
// queue, a moment on shutdown or reload.
func graceFor(reason error) time.Duration {
	if errors.Is(reason, hub.ErrSlow) {
		return 0
	}
	return shutdownGrace
}

// errClientGone is why a stream ended when its client left.
var errClientGone = errors.New("client went away")

// goServe serves a connection from a goroutine of its own. Nothing above
// such a goroutine recovers: a panic in serve is logged with msg and
// closes the connection (closeConn) instead of ending the process.
func goServe(logger *zap.Logger, msg string, closeConn func() error, serve func()) {
	go func() {
		defer func() {
			if v := recover(); v != nil {
				logger.Error(msg, zap.Any("panic", v), zap.Stack("stack"))
				_ = closeConn()
			}
		}()
		serve()
	}()
}

// streamInfo is what the end of a stream is logged with, taken from the
// request while its handler runs.
type streamInfo struct {
	remote, uri string
	topics      []string
	begun       time.Time
}

func newStreamInfo(r *http.Request, topics []string) streamInfo {
	return streamInfo{remote: r.RemoteAddr, uri: r.RequestURI, topics: topics, begun: time.Now()}
}

// slowWarnings is how many cuts of slow subscribers a handler logs at
// WARN per second; the others are counted in the next line logged.
const slowWarnings = 5

// ended logs the end of a stream at DEBUG, with how long it lasted, what
// it sent and why it ended; Caddy's access log entry for it was written at
// connect. A subscriber cut for being too slow is logged at WARN, sampled
// so that a storm of cuts cannot flood the log.
func (s *streamSet) ended(logger *zap.Logger, msg string, info streamInfo, bytes, msgs int64, reason error) {
	fields := func(extra ...zap.Field) []zap.Field {
		return append([]zap.Field{
			zap.String("remote_addr", info.remote),
			zap.String("uri", info.uri),
			zap.Strings("topics", info.topics),
			zap.Duration("duration", time.Since(info.begun)),
			zap.Int64("bytes", bytes),
			zap.Int64("messages", msgs),
			zap.NamedError("reason", reason),
		}, extra...)
	}
	if errors.Is(reason, hub.ErrSlow) {
		if ok, suppressed := s.sampleSlow(time.Now()); ok {
			logger.Warn("subscriber too slow for its queue: disconnected", fields(zap.Int("not_logged_since", suppressed))...)
			return
		}
	}
	if c := logger.Check(zapcore.DebugLevel, msg); c != nil {
		c.Write(fields()...)
	}
}

// sampleSlow reports whether a slow subscriber's cut may be logged at
// WARN now, and how many were not since the last one that was.
func (s *streamSet) sampleSlow(now time.Time) (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.slowWindow) >= time.Second {
		s.slowWindow, s.slowLogged = now, 0
	}
	if s.slowLogged >= slowWarnings {
		s.slowSuppressed++
		return false, 0
	}
	s.slowLogged++
	n := s.slowSuppressed
	s.slowSuppressed = 0
	return true, n
}
