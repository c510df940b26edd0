package push

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-push/push/hub"
)

// Subscription kinds the hub counts apart (hub.SubscribeOptions.Kind),
// and their transport label.
const (
	kindOther = iota
	kindSSE
	kindWS
)

var kindTransport = [...]string{kindSSE: "sse", kindWS: "ws"}

// Results of a subscriber's request, the result label of
// caddy_push_connections_total.
var connectionResults = []string{"accepted", "bad_request", "forbidden", "method_not_allowed", "unavailable", "error"}

// metrics are the process's push collectors. They are created once and
// registered in the registry of every config (a new one per config), so
// that a reload neither loses them nor registers them twice. Counters the
// hub keeps (published, delivered, dropped, evicted) are read from it when
// scraped: counting costs the fan-out nothing beyond the hub's own
// per-write and per-publish counters.
var metrics struct {
	once            sync.Once
	connections     *prometheus.CounterVec
	conn            [len(kindTransport)]map[string]prometheus.Counter
	publishDuration prometheus.Histogram
	brokerDuration  prometheus.Histogram
	brokerErrors    prometheus.Counter
	hub             *hubCollector
}

func initMetrics() {
	const ns, sub = "caddy", "push"
	metrics.connections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "connections_total",
		Help: "Subscriber requests, by transport and result: accepted, or refused and why.",
	}, []string{"transport", "result"})
	for k, transport := range kindTransport {
		if transport == "" {
			continue
		}
		metrics.conn[k] = make(map[string]prometheus.Counter, len(connectionResults))
		for _, result := range connectionResults {
			metrics.conn[k][result] = metrics.connections.WithLabelValues(transport, result)
		}
	}
	metrics.publishDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "publish_duration_seconds",
		Help:    "Time from a publish request to its messages being queued for every subscriber.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	metrics.brokerDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "broker_round_trip_duration_seconds",
		Help:    "Round trips of the broker to its store (Redis); none with the memory broker.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	metrics.brokerErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "broker_errors_total",
		Help: "Round trips of the broker to its store that failed.",
	})
	metrics.hub = newHubCollector(ns, sub)
}

// registerMetrics registers the push collectors in reg, creating them the
// first time.
func registerMetrics(reg *prometheus.Registry) error {
	metrics.once.Do(initMetrics)
	for _, c := range []prometheus.Collector{
		metrics.connections, metrics.publishDuration,
		metrics.brokerDuration, metrics.brokerErrors, metrics.hub,
	} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// countConnection counts a subscriber's request of kind k by how
// ServeHTTP ended: nil is accepted, a handler error is refused.
func countConnection(k int, err error) {
	metrics.once.Do(initMetrics)
	if metrics.conn[k] == nil {
		return
	}
	result := "accepted"
	if err != nil {
		result = "error"
		var he caddyhttp.HandlerError
		if errors.As(err, &he) {
			switch he.StatusCode {
			case http.StatusBadRequest:
				result = "bad_request"
			case http.StatusForbidden:
				result = "forbidden"
			case http.StatusMethodNotAllowed:
				result = "method_not_allowed"
			case http.StatusServiceUnavailable:
				result = "unavailable"
			}
		}
	}
	metrics.conn[k][result].Inc()
}

// observePublish records a publish that started at start.
func observePublish(start time.Time) {
	metrics.once.Do(initMetrics)
	metrics.publishDuration.Observe(time.Since(start).Seconds())
}

// observeBrokerRoundTrip is the hub.RoundTripObserver of every broker.
func observeBrokerRoundTrip(took time.Duration, err error) {
	metrics.once.Do(initMetrics)
	metrics.brokerDuration.Observe(took.Seconds())
	if err != nil {
		metrics.brokerErrors.Inc()
	}
}

// hubCollector reads the running hub's totals when scraped.
type hubCollector struct {
	subscribers, published, delivered, dropped *prometheus.Desc
	retained, retainedBytes, topics, evicted   *prometheus.Desc
}

func newHubCollector(ns, sub string) *hubCollector {
	name := func(n string) string { return prometheus.BuildFQName(ns, sub, n) }
	return &hubCollector{
		subscribers:   prometheus.NewDesc(name("subscribers"), "Connected subscribers, by transport.", []string{"transport"}, nil),
		published:     prometheus.NewDesc(name("published_total"), "Messages published.", nil, nil),
		delivered:     prometheus.NewDesc(name("delivered_total"), "Messages written to subscribers, replay included, by transport.", []string{"transport"}, nil),
		dropped:       prometheus.NewDesc(name("dropped_total"), "Subscribers disconnected by the server: slow (their queue filled) or shutdown (reload, stop).", []string{"reason"}, nil),
		retained:      prometheus.NewDesc(name("retained_messages"), "Messages retained for replay.", nil, nil),
		retainedBytes: prometheus.NewDesc(name("retained_bytes"), "Bytes of messages retained for replay, as counted against history_max_bytes.", nil, nil),
		topics:        prometheus.NewDesc(name("topics"), "Live topics: with subscribers or retained messages.", nil, nil),
		evicted:       prometheus.NewDesc(name("evicted_total"), "Retained messages evicted by the history caps (count, TTL, bytes).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.subscribers, c.published, c.delivered, c.dropped,
		c.retained, c.retainedBytes, c.topics, c.evicted,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. With no push app running,
// every series is 0.
func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	var st hub.Stats
	if app := running.Load(); app != nil {
		st = app.hub.Stats()
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for k, transport := range kindTransport {
		if transport == "" {
			continue
		}
		gauge(c.subscribers, float64(st.Kinds[k].Subscribers), transport)
		counter(c.delivered, st.Kinds[k].Delivered, transport)
	}
	counter(c.published, st.Published)
	counter(c.dropped, st.DroppedSlow, "slow")
	counter(c.dropped, st.DroppedShutdown, "shutdown")
	gauge(c.retained, float64(st.Retained))
	gauge(c.retainedBytes, float64(st.RetainedBytes))
	gauge(c.topics, float64(st.Topics))
	counter(c.evicted, st.Evicted)
}

// Interface guards
var _ prometheus.Collector = (*hubCollector)(nil)
