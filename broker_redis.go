package push

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/redis"
)

func init() {
	caddy.RegisterModule(RedisBroker{})
}

// RedisBroker is the `push.brokers.redis` module: every Caddy instance
// pointed at one Redis acts as one hub, with one ID sequence, history
// kept in Redis and fan-out over Redis pub/sub.
type RedisBroker struct {
	// The Redis server: redis://[user:password@]host:port[/db], or
	// rediss:// for TLS. Placeholders such as {env.REDIS_URL} are
	// replaced. Sentinel and Cluster are not supported.
	URL string `json:"url,omitempty"`

	// Starts every key and the pub/sub channel, so that several hubs can
	// share one Redis. Default: "push:".
	Prefix string `json:"prefix,omitempty"`

	// Bounds each Redis call; a publish that Redis has not answered by
	// then fails with 503. Default: 1s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (RedisBroker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "push.brokers.redis",
		New: func() caddy.Module { return new(RedisBroker) },
	}
}

// Validate checks the configuration.
func (r *RedisBroker) Validate() error {
	if r.URL == "" {
		return fmt.Errorf("redis broker: url is required")
	}
	if r.Timeout < 0 {
		return fmt.Errorf("redis broker: timeout must not be negative")
	}
	_, err := r.options(nil)
	return err
}

func (r *RedisBroker) options(logger *zap.Logger) (redis.Options, error) {
	opts := redis.Options{
		URL:     caddy.NewReplacer().ReplaceKnown(r.URL, ""),
		Prefix:  r.Prefix,
		Timeout: time.Duration(r.Timeout),
		Logger:  logger,
	}
	if _, err := redis.New(opts); err != nil {
		return opts, fmt.Errorf("redis broker: %w", err)
	}
	return opts, nil
}

// OpenBroker implements BrokerModule.
func (r *RedisBroker) OpenBroker(logger *zap.Logger) (hub.Broker, error) {
	opts, err := r.options(logger.Named("redis"))
	if err != nil {
		return nil, err
	}
	return redis.New(opts)
}

// UnmarshalCaddyfile sets up the Redis broker:
//
//	broker redis <url> {
//		prefix  <string>
//		timeout <duration>
//	}
func (r *RedisBroker) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume broker name
	if !d.NextArg() {
		return d.Err("broker redis needs a URL: redis://host:port or rediss://host:port")
	}
	r.URL = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "prefix":
			if !d.NextArg() {
				return d.ArgErr()
			}
			r.Prefix = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "timeout":
			dur, err := durationArg(d, false)
			if err != nil {
				return err
			}
			r.Timeout = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized redis broker option '%s'", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Validator       = (*RedisBroker)(nil)
	_ BrokerModule          = (*RedisBroker)(nil)
	_ caddyfile.Unmarshaler = (*RedisBroker)(nil)
)
