package push

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("push", parseGlobalOption)
	httpcaddyfile.RegisterDirective("push_sse", handlerDirective(func() handlerUnmarshaler { return new(SSE) }))
	httpcaddyfile.RegisterDirectiveOrder("push_sse", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterDirective("push_ws", handlerDirective(func() handlerUnmarshaler { return new(WS) }))
	httpcaddyfile.RegisterDirectiveOrder("push_ws", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("push_publish", parsePublish)
	httpcaddyfile.RegisterDirectiveOrder("push_publish", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("push_client", parseClient)
	httpcaddyfile.RegisterDirectiveOrder("push_client", httpcaddyfile.Before, "respond")
}

type handlerUnmarshaler interface {
	caddyhttp.MiddlewareHandler
	caddyfile.Unmarshaler
	hasTopics() bool
}

// handlerDirective is httpcaddyfile.RegisterHandlerDirective, except that
// a handler left with no topic after a path matcher is told that the path
// was read as a matcher: `push_sse /events/ticker` names no topic.
func handlerDirective(newHandler func() handlerUnmarshaler) httpcaddyfile.UnmarshalFunc {
	return func(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
		if !h.Next() {
			return nil, h.ArgErr()
		}
		dir := h.Val()
		var path string
		if h.NextArg() && strings.HasPrefix(h.Val(), "/") {
			path = h.Val()
		}
		h.Reset()
		h.Next()
		matcherSet, err := h.ExtractMatcherSet()
		if err != nil {
			return nil, err
		}
		handler := newHandler()
		if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
			if path != "" && !handler.hasTopics() {
				return nil, h.Errf("%s %s: %s is read as a path matcher, not a topic; name the topic after it (%s %s <topic>) or in a topic line",
					dir, path, path, dir, path)
			}
			return nil, err
		}
		return h.NewRoute(matcherSet, handler), nil
	}
}

// appOptions are the push app's options, which belong in the global
// `push` block, not in a handler.
var appOptions = []string{"history", "history_ttl", "history_max_bytes", "buffer", "broker"}

// unknownOption is the error for an unknown handler option.
func unknownOption(d *caddyfile.Dispenser, directive, opt string) error {
	if slices.Contains(appOptions, opt) || (opt == "max_message_size" && directive == "push_sse") {
		return d.Errf("%s is an option of the push app: put it in the global options block, as { push { %s ... } }", opt, opt)
	}
	return d.Errf("unrecognized %s option '%s'", directive, opt)
}

func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the push global option is given twice: put all its options in one block")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "push", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the push app from the `push` global option:
//
//	push {
//		history           <count>
//		history_ttl       <duration>
//		history_max_bytes <size>
//		buffer            <count>
//		max_message_size  <size>
//		broker <name> {
//			...
//		}
//	}
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "history":
			n, err := intArg(d, 0)
			if err != nil {
				return err
			}
			a.History = &n
		case "history_ttl":
			dur, err := durationArg(d, false)
			if err != nil {
				return err
			}
			a.HistoryTTL = caddy.Duration(dur)
		case "history_max_bytes":
			n, err := sizeArg(d)
			if err != nil {
				return err
			}
			a.HistoryMaxBytes = n
		case "buffer":
			n, err := intArg(d, 1)
			if err != nil {
				return err
			}
			a.Buffer = n
		case "max_message_size":
			n, err := sizeArg(d)
			if err != nil {
				return err
			}
			a.MaxMessageSize = n
		case "broker":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "push.brokers."+name)
			if err != nil {
				return err
			}
			a.BrokerRaw = caddyconfig.JSONModuleObject(unm, "module", name, nil)
		default:
			return d.Errf("unrecognized push option '%s'", opt)
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the memory broker: `broker memory`, no
// arguments.
func (*MemoryBroker) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume broker name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("the memory broker takes no options")
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	push_sse [<matcher>] [<topic...>] {
//		topic     <template...>
//		subscribe <pattern...>
//		heartbeat <duration>
//		retry     <duration>
//	}
func (h *SSE) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if err := h.Subscriber.unmarshalInline(d); err != nil {
		return err
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "topic", "subscribe":
			if err := h.Subscriber.unmarshalOption(d); err != nil {
				return err
			}
		case "heartbeat":
			dur, err := durationArg(d, true)
			if err != nil {
				return err
			}
			hb := caddy.Duration(dur)
			h.Heartbeat = &hb
		case "retry":
			dur, err := durationArg(d, false)
			if err != nil {
				return err
			}
			h.Retry = caddy.Duration(dur)
		default:
			return unknownOption(d, "push_sse", opt)
		}
	}
	if err := h.Validate(); err != nil {
		return d.Errf("push_sse: %v", err)
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	push_ws [<matcher>] [<topic...>] {
//		topic            <template...>
//		subscribe        <pattern...>
//		publish          <pattern...>
//		origins          <origin...>
//		ping             <duration>
//		format           json|raw
//		max_message_size <size>
//	}
func (h *WS) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if err := h.Subscriber.unmarshalInline(d); err != nil {
		return err
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "topic", "subscribe":
			if err := h.Subscriber.unmarshalOption(d); err != nil {
				return err
			}
		case "publish":
			args, err := listArgs(d, checkPattern)
			if err != nil {
				return err
			}
			h.Publish = append(h.Publish, args...)
		case "origins":
			args, err := listArgs(d, checkOrigin)
			if err != nil {
				return err
			}
			h.Origins = append(h.Origins, args...)
		case "ping":
			dur, err := durationArg(d, true)
			if err != nil {
				return err
			}
			p := caddy.Duration(dur)
			h.Ping = &p
		case "format":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Format = d.Val()
			if err := checkFormat(h.Format); err != nil {
				return d.Err(err.Error())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "max_message_size":
			size, err := sizeArg(d)
			if err != nil {
				return err
			}
			h.MaxMessageSize = size
		default:
			return unknownOption(d, "push_ws", opt)
		}
	}
	if err := h.Validate(); err != nil {
		return d.Errf("push_ws: %v", err)
	}
	return nil
}

// unmarshalInline reads the topics on the directive's line.
func (s *Subscriber) unmarshalInline(d *caddyfile.Dispenser) error {
	for d.NextArg() {
		if err := checkTemplate(d.Val()); err != nil {
			return d.Err(err.Error())
		}
		s.Topics = append(s.Topics, d.Val())
	}
	return nil
}

func parsePublish(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(Publisher)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	push_publish [<matcher>] [<pattern...>] {
//		publish          <pattern...>
//		max_message_size <size>
//	}
func (p *Publisher) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	for _, a := range d.RemainingArgs() {
		if err := checkPattern(a); err != nil {
			return d.Errf("push_publish: %v", err)
		}
		p.Publish = append(p.Publish, a)
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "publish":
			args, err := listArgs(d, checkPattern)
			if err != nil {
				return err
			}
			p.Publish = append(p.Publish, args...)
		case "max_message_size":
			size, err := sizeArg(d)
			if err != nil {
				return err
			}
			p.MaxMessageSize = size
		default:
			return d.Errf("unrecognized push_publish option '%s'", opt)
		}
	}
	if len(p.Publish) == 0 {
		return d.Err("push_publish needs a publish pattern")
	}
	return nil
}

func parseClient(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(Client)
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return c, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	push_client [<matcher>]
func (c *Client) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.Errf("push_client takes no arguments but a matcher, got '%s'", d.Val())
	}
	if d.NextBlock(0) {
		return d.Errf("push_client takes no options")
	}
	return nil
}

// unmarshalOption reads a `topic` or `subscribe` line.
func (s *Subscriber) unmarshalOption(d *caddyfile.Dispenser) error {
	if d.Val() == "topic" {
		args, err := listArgs(d, checkTemplate)
		s.Topics = append(s.Topics, args...)
		return err
	}
	args, err := listArgs(d, checkPattern)
	s.Subscribe = append(s.Subscribe, args...)
	return err
}

// listArgs reads the rest of the line: at least one value, each passing
// check.
func listArgs(d *caddyfile.Dispenser, check func(string) error) ([]string, error) {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	for _, a := range args {
		if err := check(a); err != nil {
			return nil, d.Errf("%s: %v", opt, err)
		}
	}
	return args, nil
}

func intArg(d *caddyfile.Dispenser, minimum int) (int, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(d.Val())
	if err != nil || n < minimum {
		return 0, d.Errf("%s: %q is not a whole number of at least %d", opt, d.Val(), minimum)
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return n, nil
}

func durationArg(d *caddyfile.Dispenser, zeroOK bool) (time.Duration, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil {
		return 0, d.Errf("%s: %v", opt, err)
	}
	if dur < 0 || (dur == 0 && !zeroOK) {
		return 0, d.Errf("%s: %q must be positive", opt, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return dur, nil
}

func sizeArg(d *caddyfile.Dispenser) (int64, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := parseSize(d.Val())
	if err != nil {
		return 0, d.Errf("%s: %v", opt, err)
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return n, nil
}

// parseSize reads a positive byte size such as 1024, 64KiB, 1MB or 2g.
// Decimal units (KB, MB, GB) are powers of 1000, binary ones (KiB, MiB,
// GiB) and bare letters (k, m, g) powers of 1024.
func parseSize(s string) (int64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	var mult int64
	switch strings.ToLower(strings.TrimSpace(s[i:])) {
	case "", "b":
		mult = 1
	case "k", "kib":
		mult = 1 << 10
	case "kb":
		mult = 1000
	case "m", "mib":
		mult = 1 << 20
	case "mb":
		mult = 1000 * 1000
	case "g", "gib":
		mult = 1 << 30
	case "gb":
		mult = 1000 * 1000 * 1000
	default:
		return 0, fmt.Errorf("%q: unknown size unit", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*SSE)(nil)
	_ caddyfile.Unmarshaler = (*Publisher)(nil)
	_ caddyfile.Unmarshaler = (*Client)(nil)
	_ caddyfile.Unmarshaler = (*WS)(nil)
	_ caddyfile.Unmarshaler = (*MemoryBroker)(nil)
)
