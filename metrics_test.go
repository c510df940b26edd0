package push

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-push/push/hub"
)

// scrape reads a Prometheus text exposition and returns the caddy_push_
// series by their name and labels as printed.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := adminClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	series := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddy_push_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q", line)
		}
		series[line[:i]] = v
	}
	return series
}

// waitMetric waits until the series reaches want (or more, with atLeast).
func waitMetric(t *testing.T, url, name string, want float64) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := scrape(t, url)
		if m[name] >= want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, m[name], want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var metricSeries = []string{
	`caddy_push_subscribers{transport="sse"}`,
	`caddy_push_subscribers{transport="ws"}`,
	`caddy_push_connections_total{result="accepted",transport="sse"}`,
	`caddy_push_connections_total{result="forbidden",transport="ws"}`,
	`caddy_push_connections_total{result="bad_request",transport="sse"}`,
	`caddy_push_connections_total{result="unavailable",transport="ws"}`,
	`caddy_push_published_total`,
	`caddy_push_delivered_total{transport="sse"}`,
	`caddy_push_delivered_total{transport="ws"}`,
	`caddy_push_dropped_total{reason="slow"}`,
	`caddy_push_dropped_total{reason="shutdown"}`,
	`caddy_push_retained_messages`,
	`caddy_push_retained_bytes`,
	`caddy_push_topics`,
	`caddy_push_evicted_total`,
	`caddy_push_publish_duration_seconds_count`,
	`caddy_push_broker_round_trip_duration_seconds_count`,
	`caddy_push_broker_errors_total`,
}

// TestMetrics scrapes the admin endpoint's /metrics and a site's metrics
// directive: every series is there before anything happens, and each
// moves as subscribers connect, messages flow and configs reload.
func TestMetrics(t *testing.T) {
	site := `
	metrics /metrics
	push_sse /events/* news
	push_ws /ws/* {
		subscribe news
		publish news
	}
	push_publish /pub news`
	tc := startCaddy(t, "history 2", site)
	admin := "http://" + tc.admin + "/metrics"

	m := scrape(t, admin)
	for _, s := range metricSeries {
		if _, ok := m[s]; !ok {
			t.Errorf("%s missing from the start", s)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	base := m // the hub outlives earlier tests: compare with what it had

	sse := mustSubscribe(t, tc.url("/events/"), nil)
	defer sse.close()
	ws, _, err := dialWS(t, "ws://"+tc.http+"/ws/?topic=news", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, _, err := dialWS(t, "ws://"+tc.http+"/ws/?topic=secret", nil); err == nil {
		t.Fatal("a forbidden topic was accepted")
	}
	waitSubscribers(t, tc, 2)
	for i := range 3 {
		tc.publish("news", "", "m"+strconv.Itoa(i))
	}
	resp, err := http.Post(tc.url("/pub?topic=news"), "text/plain", strings.NewReader("m3"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for range 4 {
		sse.next(t)
	}

	m = waitMetric(t, admin, `caddy_push_delivered_total{transport="sse"}`, base[`caddy_push_delivered_total{transport="sse"}`]+4)
	m = waitMetric(t, admin, `caddy_push_delivered_total{transport="ws"}`, base[`caddy_push_delivered_total{transport="ws"}`]+4)
	for name, delta := range map[string]float64{
		`caddy_push_subscribers{transport="sse"}`:                         1,
		`caddy_push_subscribers{transport="ws"}`:                          1,
		`caddy_push_connections_total{result="accepted",transport="sse"}`: 1,
		`caddy_push_connections_total{result="accepted",transport="ws"}`:  1,
		`caddy_push_connections_total{result="forbidden",transport="ws"}`: 1,
		`caddy_push_published_total`:                                      4,
		`caddy_push_publish_duration_seconds_count`:                       4,
		// history 2: two of the four were evicted.
		`caddy_push_evicted_total`: 2,
	} {
		if got := m[name] - base[name]; got != delta {
			t.Errorf("%s moved by %v, want %v", name, got, delta)
		}
	}
	if m[`caddy_push_retained_messages`] != 2 || m[`caddy_push_topics`] < 1 || m[`caddy_push_retained_bytes`] <= 0 {
		t.Errorf("retained %v messages, %v bytes, %v topics; want 2, >0, >=1",
			m[`caddy_push_retained_messages`], m[`caddy_push_retained_bytes`], m[`caddy_push_topics`])
	}

	// The site's metrics directive serves the same registry.
	if s := scrape(t, tc.url("/metrics")); s[`caddy_push_published_total`] != m[`caddy_push_published_total`] {
		t.Errorf("site /metrics says %v published, admin %v", s[`caddy_push_published_total`], m[`caddy_push_published_total`])
	}

	// A reload registers again without error, ends the streams of the
	// old config (dropped, reason shutdown) and keeps the counts.
	if err := tc.load("history 2", site); err != nil {
		t.Fatalf("reload: %v", err)
	}
	sse.ended(t)
	m2 := waitMetric(t, admin, `caddy_push_dropped_total{reason="shutdown"}`, m[`caddy_push_dropped_total{reason="shutdown"}`]+2)
	if m2[`caddy_push_published_total`] != m[`caddy_push_published_total`] {
		t.Errorf("published_total after reload %v, before %v", m2[`caddy_push_published_total`], m[`caddy_push_published_total`])
	}
	for _, s := range metricSeries {
		if _, ok := m2[s]; !ok {
			t.Errorf("%s missing after reload", s)
		}
	}
}

// observedBroker is the memory broker reporting a round trip per
// publish, as a broker with a store does; a message "fail" fails.
type observedBroker struct {
	hub.MemoryBroker
	mu  sync.Mutex
	obs hub.RoundTripObserver
}

func (b *observedBroker) ObserveRoundTrips(o hub.RoundTripObserver) {
	b.mu.Lock()
	b.obs = o
	b.mu.Unlock()
}

func (b *observedBroker) Publish(ctx context.Context, msgs []*hub.Message) (string, error) {
	start := time.Now()
	var epoch string
	var err error
	if len(msgs) == 1 && string(msgs[0].Data) == "fail" {
		err = errors.New("store unreachable")
	} else {
		epoch, err = b.MemoryBroker.Publish(ctx, msgs)
	}
	b.mu.Lock()
	obs := b.obs
	b.mu.Unlock()
	if obs != nil {
		obs(time.Since(start), err)
	}
	return epoch, err
}

// observedBrokerModule is push.brokers.observed_test.
type observedBrokerModule struct{}

func (observedBrokerModule) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "push.brokers.observed_test",
		New: func() caddy.Module { return new(observedBrokerModule) },
	}
}

func (*observedBrokerModule) OpenBroker(*zap.Logger) (hub.Broker, error) {
	return new(observedBroker), nil
}

func (*observedBrokerModule) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

func init() { caddy.RegisterModule(observedBrokerModule{}) }

// TestMetricsBrokerRoundTrips: a broker that reports round trips fills
// the broker metrics, errors included.
func TestMetricsBrokerRoundTrips(t *testing.T) {
	tc := startCaddy(t, "broker observed_test", `push_sse /events/* news`)
	admin := "http://" + tc.admin + "/metrics"
	base := scrape(t, admin)
	tc.publish("news", "", "ok")
	if status, body := tc.adminDo(http.MethodPost, "/push/topics/news", "fail"); status != http.StatusServiceUnavailable {
		t.Fatalf("failing broker: %d %s", status, body)
	}
	m := scrape(t, admin)
	if got := m[`caddy_push_broker_round_trip_duration_seconds_count`] - base[`caddy_push_broker_round_trip_duration_seconds_count`]; got != 2 {
		t.Errorf("round trips moved by %v, want 2", got)
	}
	if got := m[`caddy_push_broker_errors_total`] - base[`caddy_push_broker_errors_total`]; got != 1 {
		t.Errorf("broker errors moved by %v, want 1", got)
	}
}
