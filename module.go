// Package push is caddy-push: real-time push for sites behind Caddy.
// Browsers subscribe over Server-Sent Events (push_sse) or WebSocket; the
// application publishes through Caddy's admin API (/push/...).
package push

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-push/push/hub"
)

func init() {
	caddy.RegisterModule(App{})
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
		if ob, ok := b.(hub.ObservableBroker); ok {
			ob.ObserveRoundTrips(observeBrokerRoundTrip)
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
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
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

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ BrokerModule       = (*MemoryBroker)(nil)
)
