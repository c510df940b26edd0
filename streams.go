package push

import (
	"net/http"
	"sync"
	"time"

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
