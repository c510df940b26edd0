// Package redis is a hub.Broker on Redis: several processes pointed at one
// Redis act as one hub. One Lua script call numbers, retains and
// publishes each batch; pub/sub carries it to every process; history and
// the epoch live in Redis, so IDs outlive every process.
package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/caddy-push/push/hub"
)

// Defaults for Options fields left at zero.
const (
	DefaultPrefix  = "push:"
	DefaultTimeout = time.Second
)

// DefaultMaxReplay is the most payload bytes a subscriber's replay from
// Redis may hold; a cursor that would need more gets a reset.
const DefaultMaxReplay = 16 << 20

// MaxPrefixLen is the longest key prefix.
const MaxPrefixLen = 128

// Options configure a Broker.
type Options struct {
	// URL is redis://[user:password@]host:port[/db] or rediss:// for TLS.
	URL string
	// Prefix starts every key and the channel. Default: "push:".
	Prefix string
	// Timeout bounds each Redis call. Default: 1s.
	Timeout time.Duration
	// Logger, if set, gets the broker's logs.
	Logger *zap.Logger
	// Observe, if set, is called after every Redis call with its name
	// (publish, replay, fill, sync, stats), how long it took and its error: what
	// round-trip and error metrics need. It must not block.
	Observe func(op string, d time.Duration, err error)
}

// Broker is a hub.HistoryBroker on Redis.
type Broker struct {
	opts   Options
	client rueidis.Client
	logger *zap.Logger
	limits atomic.Pointer[limits]

	roundTrips hub.RoundTripObserver // set before Open

	// known is where delivery stands, for Publish to detect that Redis
	// came back from an older snapshot.
	known atomic.Pointer[hub.Position]

	// state of the delivery loop
	recv  hub.Receiver
	epoch string
	last  uint64

	payloads chan string
	queued   atomic.Int64 // bytes in payloads
	kick     chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
	closed   sync.Once

	// poll is how often the delivery loop looks at the sequence in Redis
	// (to notice lost messages while nothing else arrives).
	poll time.Duration
	// maxReplay is the most payload bytes one replay from Redis may hold;
	// a larger one is a reset.
	maxReplay int64
	// dropped, if set (tests), says whether to lose a pub/sub message.
	dropped func(p string) bool
}

type limits struct {
	history  int
	ttlMS    int64
	maxBytes int64
}

// New checks opts and makes a broker; it connects when opened.
func New(opts Options) (*Broker, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if len(opts.Prefix) > MaxPrefixLen || !utf8.ValidString(opts.Prefix) || strings.ContainsAny(opts.Prefix, " \t\r\n") {
		return nil, fmt.Errorf("prefix must be at most %d bytes of UTF-8 without whitespace", MaxPrefixLen)
	}
	if _, err := clientOption(opts); err != nil {
		return nil, err
	}
	b := &Broker{
		opts:      opts,
		logger:    opts.Logger,
		payloads:  make(chan string, 4096),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		poll:      time.Second,
		maxReplay: DefaultMaxReplay,
	}
	b.SetLimits(hub.DefaultHistory, hub.DefaultHistoryTTL, hub.DefaultHistoryMaxBytes)
	return b, nil
}

// clientOption turns the URL into rueidis options, refusing what the
// broker does not support.
func clientOption(opts Options) (rueidis.ClientOption, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return rueidis.ClientOption{}, fmt.Errorf("redis URL: %v", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return rueidis.ClientOption{}, fmt.Errorf("redis URL %s: scheme must be redis:// or rediss:// (Sentinel and Cluster are not supported: point the broker at the primary)", redact(u))
	}
	q := u.Query()
	if q.Has("addr") || q.Has("master_set") {
		return rueidis.ClientOption{}, fmt.Errorf("redis URL %s: one server only (Sentinel and Cluster are not supported: point the broker at the primary)", redact(u))
	}
	opt, err := rueidis.ParseURL(opts.URL)
	if err != nil {
		return rueidis.ClientOption{}, fmt.Errorf("redis URL %s: %v", redact(u), err)
	}
	if len(opt.InitAddress) != 1 {
		return rueidis.ClientOption{}, fmt.Errorf("redis URL %s: one server only", redact(u))
	}
	opt.ForceSingleClient = true
	opt.DisableCache = true
	// A publish is not idempotent: retrying one could publish it twice.
	opt.DisableRetry = true
	opt.Dialer = net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}
	return opt, nil
}

func redact(u *url.URL) string { return u.Redacted() }

// SetLimits implements hub.HistoryBroker.
func (b *Broker) SetLimits(history int, ttl time.Duration, maxBytes int64) {
	l := &limits{history: history, ttlMS: ttl.Milliseconds(), maxBytes: maxBytes}
	if l.history < 0 || l.ttlMS <= 0 {
		l.history, l.ttlMS = 0, 0
	}
	b.limits.Store(l)
}

// Open implements hub.Broker: it connects, refusing a Redis Cluster, and
// starts delivering.
func (b *Broker) Open(r hub.Receiver) (hub.Position, error) {
	opt, err := clientOption(b.opts)
	if err != nil {
		return hub.Position{}, err
	}
	b.client, err = rueidis.NewClient(opt)
	if err != nil {
		return hub.Position{}, fmt.Errorf("connecting to redis: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
	defer cancel()
	info, err := b.client.Do(ctx, b.client.B().Info().Section("cluster").Build()).ToString()
	if err == nil && strings.Contains(info, "cluster_enabled:1") {
		err = errors.New("redis cluster is not supported: point the broker at a standalone primary")
	}
	var pos hub.Position
	if err == nil {
		pos, err = b.sync(ctx)
	}
	if err != nil {
		b.client.Close()
		return hub.Position{}, fmt.Errorf("connecting to redis: %v", err)
	}
	b.recv, b.epoch, b.last = r, pos.Epoch, pos.Seq
	b.known.Store(&pos)
	b.wg.Add(2)
	go b.subscribe()
	go b.deliver()
	return pos, nil
}

// ObserveRoundTrips implements hub.ObservableBroker: o is told of every
// call to Redis (as well as Options.Observe). Call it before Open.
func (b *Broker) ObserveRoundTrips(o hub.RoundTripObserver) { b.roundTrips = o }

// observe reports a call to the observers.
func (b *Broker) observe(op string, start time.Time, err error) {
	if b.opts.Observe == nil && b.roundTrips == nil {
		return
	}
	took := time.Since(start)
	if b.opts.Observe != nil {
		b.opts.Observe(op, took, err)
	}
	if b.roundTrips != nil {
		b.roundTrips(took, err)
	}
}

func unavailable(err error) error {
	return fmt.Errorf("%w: redis: %v", hub.ErrBrokerUnavailable, err)
}

// Publish implements hub.Broker: one script call numbers, retains and
// publishes the batch.
func (b *Broker) Publish(ctx context.Context, msgs []*hub.Message) (string, error) {
	candidate, err := hub.NewEpoch()
	if err != nil {
		return "", err
	}
	known := b.known.Load()
	l := b.limits.Load()
	args := make([]string, 0, 7+3*len(msgs))
	args = append(args, b.opts.Prefix, candidate, known.Epoch, strconv.FormatUint(known.Seq, 10),
		strconv.Itoa(l.history), strconv.FormatInt(l.ttlMS, 10), strconv.FormatInt(l.maxBytes, 10))
	for _, m := range msgs {
		args = append(args, m.Topic, m.Event, string(m.Data))
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	start := time.Now()
	res, err := publishScript.Exec(ctx, b.client, nil, args).ToArray()
	b.observe("publish", start, err)
	if err != nil {
		return "", unavailable(err)
	}
	if len(res) != 2 {
		return "", unavailable(errors.New("unexpected answer to publish"))
	}
	epoch, err1 := res[0].ToString()
	first, err2 := res[1].AsInt64()
	if err1 != nil || err2 != nil || first <= 0 {
		return "", unavailable(errors.New("unexpected answer to publish"))
	}
	for i, m := range msgs {
		m.Seq = uint64(first) + uint64(i)
	}
	return epoch, nil
}

// sync looks at the sequence in Redis, starting a new epoch if Redis lost
// it, and expires history.
func (b *Broker) sync(ctx context.Context) (hub.Position, error) {
	candidate, err := hub.NewEpoch()
	if err != nil {
		return hub.Position{}, err
	}
	known := hub.Position{}
	if k := b.known.Load(); k != nil {
		known = *k
	}
	l := b.limits.Load()
	ttl, maxBytes := l.ttlMS, l.maxBytes
	if l.history == 0 {
		ttl = 0
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	start := time.Now()
	res, err := syncScript.Exec(ctx, b.client, nil, []string{
		b.opts.Prefix, candidate, known.Epoch, strconv.FormatUint(known.Seq, 10),
		strconv.FormatInt(ttl, 10), strconv.FormatInt(maxBytes, 10),
	}).ToArray()
	b.observe("sync", start, err)
	if err != nil {
		return hub.Position{}, err
	}
	return position(res)
}

func position(res []rueidis.RedisMessage) (hub.Position, error) {
	if len(res) < 2 {
		return hub.Position{}, errors.New("unexpected answer from redis")
	}
	epoch, err1 := res[0].ToString()
	seq, err2 := res[1].AsInt64()
	if err1 != nil || err2 != nil || seq < 0 {
		return hub.Position{}, errors.New("unexpected answer from redis")
	}
	return hub.Position{Epoch: epoch, Seq: uint64(seq)}, nil
}

// Replay implements hub.HistoryBroker.
func (b *Broker) Replay(ctx context.Context, epoch string, topics []string, after uint64, earliest bool) (hub.BrokerReplay, error) {
	args := make([]string, 0, 4+len(topics))
	e := "0"
	if earliest {
		e = "1"
	}
	args = append(args, b.opts.Prefix, epoch, strconv.FormatUint(after, 10), e, strconv.FormatInt(b.maxReplay, 10))
	args = append(args, topics...)
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	start := time.Now()
	res, err := replayScript.Exec(ctx, b.client, nil, args).ToArray()
	b.observe("replay", start, err)
	if err != nil {
		return hub.BrokerReplay{}, unavailable(err)
	}
	var r hub.BrokerReplay
	if r.Head, err = position(res); err != nil || len(res) < 3 {
		return hub.BrokerReplay{}, unavailable(errors.New("unexpected answer to replay"))
	}
	if reset, _ := res[2].AsInt64(); reset == 1 {
		r.Reset = true
		return r, nil
	}
	for i := 3; i+1 < len(res); i += 2 {
		topic, err := res[i].ToString()
		if err != nil {
			return hub.BrokerReplay{}, unavailable(err)
		}
		entries, err := res[i+1].AsXRange()
		if err != nil {
			return hub.BrokerReplay{}, unavailable(err)
		}
		for _, e := range entries {
			m, ok := entryMessage(topic, e)
			if !ok {
				return hub.BrokerReplay{}, unavailable(errors.New("malformed history entry"))
			}
			r.Messages = append(r.Messages, m)
		}
	}
	return r, nil
}

// HistoryStats implements hub.HistoryBroker.
func (b *Broker) HistoryStats(ctx context.Context) (hub.HistoryStats, error) {
	st := hub.HistoryStats{Broker: "redis"}
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	start := time.Now()
	res, err := statsScript.Exec(ctx, b.client, nil, []string{b.opts.Prefix}).ToArray()
	b.observe("stats", start, err)
	if err != nil {
		return st, unavailable(err)
	}
	pos, err := position(res)
	if err != nil || len(res) != 4 {
		return st, unavailable(errors.New("unexpected answer to stats"))
	}
	if pos.Epoch != "" {
		st.LastID = pos.Epoch + "-" + strconv.FormatUint(pos.Seq, 10)
	}
	st.Retained, _ = res[2].AsInt64()
	st.RetainedBytes, _ = res[3].AsInt64()
	return st, nil
}

// entryMessage turns a topic stream entry back into a message.
func entryMessage(topic string, e rueidis.XRangeEntry) (*hub.Message, bool) {
	seqStr, _, _ := strings.Cut(e.ID, "-")
	seq, err := strconv.ParseUint(seqStr, 10, 64)
	if err != nil {
		return nil, false
	}
	ms, err := strconv.ParseInt(e.FieldValues["ms"], 10, 64)
	if err != nil {
		return nil, false
	}
	return &hub.Message{
		Topic: topic,
		Event: e.FieldValues["e"],
		Data:  []byte(e.FieldValues["d"]),
		Seq:   seq,
		Time:  time.UnixMilli(ms),
	}, true
}

// subscribe keeps a pub/sub subscription to the channel, reconnecting
// with backoff; every (re)subscription makes the delivery loop look for
// what it missed meanwhile.
func (b *Broker) subscribe() {
	defer b.wg.Done()
	channel := b.opts.Prefix + "msg"
	backoff := 50 * time.Millisecond
	down := false // logged as lost, not yet back
	for {
		dc, cancel := b.client.Dedicate()
		wait := dc.SetPubSubHooks(rueidis.PubSubHooks{
			OnMessage: func(m rueidis.PubSubMessage) {
				if b.dropped != nil && b.dropped(m.Message) {
					return
				}
				// A loop that is behind finds the gap left by a dropped
				// message and fills it from the history.
				n := int64(len(m.Message))
				if b.queued.Add(n) > maxQueuedBytes {
					b.queued.Add(-n)
					return
				}
				select {
				case b.payloads <- m.Message:
				default:
					b.queued.Add(-n)
				}
			},
			OnSubscription: func(s rueidis.PubSubSubscription) {
				if s.Kind == "subscribe" {
					b.wake()
				}
			},
		})
		ctx, cancelDo := context.WithTimeout(context.Background(), b.opts.Timeout)
		err := dc.Do(ctx, dc.B().Subscribe().Channel(channel).Build()).Error()
		cancelDo()
		if err == nil {
			backoff = 50 * time.Millisecond
			if down {
				b.logger.Info("redis subscription restored")
				down = false
			}
			select {
			case err = <-wait:
			case <-b.stop:
				cancel()
				return
			}
		}
		cancel()
		if !down {
			b.logger.Warn("redis subscription lost; reconnecting (streams stay up, publishes fail until it is back)", zap.Error(err))
			down = true
		} else {
			b.logger.Debug("redis still unreachable", zap.Error(err), zap.Duration("backoff", backoff))
		}
		select {
		case <-b.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (b *Broker) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// deliver is the delivery loop: the one goroutine that calls the hub.
func (b *Broker) deliver() {
	defer b.wg.Done()
	tick := time.NewTicker(b.poll)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case p := <-b.payloads:
			b.queued.Add(-int64(len(p)))
			b.handle(p)
		case <-b.kick:
			b.catchUp()
		case <-tick.C:
			b.catchUp()
		}
	}
}

// handle delivers one pub/sub message, first filling any gap before it.
func (b *Broker) handle(p string) {
	bt, err := decodeBatch(p)
	if err != nil {
		b.logger.Warn("ignoring a pub/sub message", zap.Error(err))
		b.catchUp()
		return
	}
	if bt.epoch != b.epoch {
		b.catchUp() // Redis says which epoch is current
		return
	}
	if bt.last() <= b.last {
		return // already delivered, from the history
	}
	if bt.first > b.last+1 && !b.fill(bt.first-1) {
		return // the next look at Redis tries again
	}
	msgs := bt.msgs
	for len(msgs) > 0 && msgs[0].Seq <= b.last {
		msgs = msgs[1:]
	}
	b.deliverMsgs(msgs)
}

func (b *Broker) deliverMsgs(msgs []*hub.Message) {
	if len(msgs) == 0 {
		return
	}
	b.recv.Deliver(msgs)
	b.last = msgs[len(msgs)-1].Seq
	b.known.Store(&hub.Position{Epoch: b.epoch, Seq: b.last})
}

func (b *Broker) reset(to hub.Position) {
	b.recv.Reset(to)
	b.epoch, b.last = to.Epoch, to.Seq
	b.known.Store(&to)
}

// catchUp compares with the sequence in Redis: a new epoch resets the
// hub, messages not yet delivered are filled from the history.
func (b *Broker) catchUp() {
	pos, err := b.sync(context.Background())
	if err != nil {
		b.logger.Debug("looking at redis", zap.Error(err))
		return
	}
	if pos.Epoch != b.epoch {
		b.logger.Warn("redis lost the sequence (restarted empty or flushed): a new epoch begins",
			zap.String("old_epoch", b.epoch), zap.String("epoch", pos.Epoch))
		b.reset(hub.Position{Epoch: pos.Epoch})
	}
	if pos.Seq > b.last {
		b.fill(pos.Seq)
	}
}

// maxQueuedBytes bounds the pub/sub messages waiting for the delivery
// loop; beyond it they are dropped, and filled from the history later.
const maxQueuedBytes = 64 << 20

// fillBatch is the most messages one fill call reads.
const fillBatch = 1000

// fill delivers the messages after the last delivered one up to to, from
// the history. Messages no longer retained there are lost to this
// instance: the hub is reset past them. It reports whether it got to to.
func (b *Broker) fill(to uint64) bool {
	for b.last < to {
		select {
		case <-b.stop:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
		start := time.Now()
		res, err := fillScript.Exec(ctx, b.client, nil, []string{
			b.opts.Prefix, b.epoch, strconv.FormatUint(b.last, 10), strconv.FormatUint(to, 10), strconv.Itoa(fillBatch),
		}).ToArray()
		cancel()
		b.observe("fill", start, err)
		if err != nil {
			b.logger.Debug("filling a gap from redis", zap.Error(err))
			return false
		}
		pos, err := position(res)
		if err != nil {
			return false
		}
		if pos.Epoch != b.epoch {
			return false // catchUp resets to the new epoch
		}
		entries := res[2:]
		var msgs []*hub.Message
		for i := 0; i+4 < len(entries); i += 5 {
			m, ok := fillMessage(entries[i : i+5])
			if !ok || m.Seq <= b.last || m.Seq > to {
				b.logger.Warn("malformed history entry from redis")
				return false
			}
			if want := b.last + 1 + uint64(len(msgs)); m.Seq > want {
				// Evicted before this instance saw it.
				b.deliverMsgs(msgs)
				msgs = nil
				b.reset(hub.Position{Epoch: b.epoch, Seq: m.Seq - 1})
			}
			msgs = append(msgs, m)
		}
		b.deliverMsgs(msgs)
		if len(entries)/5 < fillBatch && b.last < to {
			b.reset(hub.Position{Epoch: b.epoch, Seq: to})
		}
	}
	return true
}

func fillMessage(f []rueidis.RedisMessage) (*hub.Message, bool) {
	var s [5]string
	for i := range s {
		v, err := f[i].ToString()
		if err != nil {
			return nil, false
		}
		s[i] = v
	}
	seq, err1 := strconv.ParseUint(s[0], 10, 64)
	ms, err2 := strconv.ParseInt(s[4], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	return &hub.Message{Topic: s[1], Event: s[2], Data: []byte(s[3]), Seq: seq, Time: time.UnixMilli(ms)}, true
}

// Close implements hub.Broker.
func (b *Broker) Close() error {
	b.closed.Do(func() {
		close(b.stop)
		b.wg.Wait()
		if b.client != nil {
			b.client.Close()
		}
	})
	return nil
}

// Interface guards
var (
	_ hub.HistoryBroker    = (*Broker)(nil)
	_ hub.ObservableBroker = (*Broker)(nil)
)
