package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Config is one load run.
type Config struct {
	Transport   string        // sse or ws
	SubURL      string        // where subscribers connect
	SubHeaders  http.Header   // sent by every subscriber
	Subscribers int           // how many
	ConnectConc int           // connections opened at once
	PubURL      string        // where messages are published
	PubMethod   string        // usually POST
	PubHeaders  http.Header   // e.g. Authorization, Content-Type
	PubBody     string        // template; see expandBody
	Messages    int           // how many to publish
	Rate        float64       // messages a second; 0 = flat out
	PubConc     int           // publishers at once when flat out
	Size        int           // payload bytes (at least what the stamp needs)
	PID         int           // server process to read RSS and CPU from; 0 = none
	Timeout     time.Duration // the whole run
	Settle      time.Duration // wait after connecting before measuring RSS
	Drain       time.Duration // wait for stragglers after the last publish

	Insecure       bool // accept any server certificate (self-signed)
	HTTP2          bool // SSE over HTTP/2 (https:// only)
	StreamsPerConn int  // with HTTP2, subscribers sharing one connection

	PubProcess bool // publish from a child process (see publishFromProcess)
}

// Report is what a run measured.
type Report struct {
	Transport      string  `json:"transport"`
	Subscribers    int     `json:"subscribers"`
	Connected      int     `json:"connected"`
	Connections    int64   `json:"connections"` // TCP connections the subscribers opened
	ConnectFailed  int     `json:"connect_failed"`
	FirstError     string  `json:"first_error,omitempty"`
	Published      int     `json:"published"`
	PublishFailed  int     `json:"publish_failed"`
	Expected       int64   `json:"expected"`
	Delivered      int64   `json:"delivered"`
	Lost           int64   `json:"lost"`
	Unconfirmed    int64   `json:"unconfirmed"` // delivered although the publish failed (timed out)
	Duplicates     int64   `json:"duplicates"`
	OutOfOrder     int64   `json:"out_of_order"` // meaningful with one publisher only
	Disconnects    int64   `json:"disconnects"`
	PublishSeconds float64 `json:"publish_seconds"`
	PublishRate    float64 `json:"publish_rate"` // achieved, messages a second
	DeliverSeconds float64 `json:"deliver_seconds"`
	MsgsPerSecond  float64 `json:"delivered_per_second"`
	LatencyMs      Pcts    `json:"latency_ms"`
	PublishMs      Pcts    `json:"publish_rtt_ms"`
	PubPriority    string  `json:"pub_priority,omitempty"` // with PubProcess: the publishers' scheduling

	RSSBeforeKB     int64   `json:"rss_before_kb,omitempty"`
	RSSAfterKB      int64   `json:"rss_after_kb,omitempty"`
	KBPerConn       float64 `json:"kb_per_conn,omitempty"`
	CPUConnectSec   float64 `json:"cpu_connect_s,omitempty"`
	CPUPublishSec   float64 `json:"cpu_publish_s,omitempty"`
	CPUPerDelivered float64 `json:"cpu_us_per_delivered,omitempty"`
	TimedOut        bool    `json:"timed_out,omitempty"`
}

// Pcts are latency percentiles in milliseconds.
type Pcts struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// histogram counts durations in buckets 1% wide, from 1µs to about 7
// minutes (1.01^2000 µs); it takes concurrent adds.
type histogram struct {
	counts [bucketCount]atomic.Int64
	max    atomic.Int64
}

const bucketCount = 2000

func bucketOf(us int64) int {
	if us < 1 {
		return 0
	}
	b := int(math.Log(float64(us)) / math.Log(1.01))
	return min(b, bucketCount-1)
}

func (h *histogram) add(d time.Duration) {
	us := d.Microseconds()
	h.counts[bucketOf(us)].Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

func (h *histogram) pcts() Pcts {
	var total int64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	if total == 0 {
		return Pcts{}
	}
	at := func(q float64) float64 {
		want := int64(math.Ceil(q * float64(total)))
		var n int64
		for i := range h.counts {
			n += h.counts[i].Load()
			if n >= want {
				// The bucket's upper edge, but never above the maximum.
				return min(math.Pow(1.01, float64(i+1)), float64(h.max.Load())) / 1000
			}
		}
		return float64(h.max.Load()) / 1000
	}
	return Pcts{P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: float64(h.max.Load()) / 1000}
}

// subscriber tracks what one connection received.
type subscriber struct {
	seen       []uint64 // bitset of sequence numbers
	last       int64
	delivered  int64
	dupes      int64
	outOfOrder int64
}

// record counts message seq and reports whether it is new.
func (s *subscriber) record(seq int64) bool {
	if seq < 0 || int(seq/64) >= len(s.seen) {
		return false
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if s.seen[w]&bit != 0 {
		s.dupes++
		return false
	}
	s.seen[w] |= bit
	s.delivered++
	if seq < s.last {
		s.outOfOrder++
	}
	s.last = seq
	return true
}

// run carries out one load run.
func run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	raiseFileLimit()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	rep := &Report{Transport: cfg.Transport, Subscribers: cfg.Subscribers}
	proc := procStats{pid: cfg.PID}
	rep.RSSBeforeKB = proc.rssKB()
	cpu0 := proc.cpuSeconds()

	var lat histogram
	var total atomic.Int64 // deliveries, for the wait at the end
	subs := make([]*subscriber, cfg.Subscribers)
	var firstErr atomic.Pointer[string]
	var failed, disconnects atomic.Int64
	var wg sync.WaitGroup
	ready := make(chan int, cfg.Subscribers)
	sem := make(chan struct{}, cfg.ConnectConc)
	conns := make([]io.Closer, cfg.Subscribers)
	var connsMu sync.Mutex
	var pool *h2Pool
	if cfg.HTTP2 {
		pool = newH2Pool(&cfg)
	}
	for i := range subs {
		subs[i] = &subscriber{seen: make([]uint64, (cfg.Messages+63)/64), last: -1}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var g *h2Group
			var first bool
			if pool != nil {
				// Wait for the group's connection outside the semaphore,
				// which the group's first stream may still need.
				if g, first = pool.transport(i); !first {
					select {
					case <-g.opened:
					case <-ctx.Done():
						failed.Add(1)
						ready <- 0
						return
					}
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				failed.Add(1)
				ready <- 0
				return
			}
			var c io.Closer
			var read func(func([]byte, time.Time)) error
			var err error
			if pool != nil {
				c, read, err = dialSSEH2(ctx, cfg, g, first)
			} else {
				c, read, err = dial(ctx, cfg)
			}
			<-sem
			if err != nil {
				failed.Add(1)
				msg := err.Error()
				firstErr.CompareAndSwap(nil, &msg)
				ready <- 0
				return
			}
			connsMu.Lock()
			conns[i] = c
			connsMu.Unlock()
			ready <- 1
			s := subs[i]
			err = read(func(payload []byte, now time.Time) {
				seq, sent, ok := parseStamp(payload)
				if !ok {
					return
				}
				if s.record(seq) {
					lat.add(now.Sub(time.Unix(0, sent)))
					total.Add(1)
				}
			})
			if err != nil && ctx.Err() == nil {
				disconnects.Add(1)
			}
		}()
	}
	for range cfg.Subscribers {
		rep.Connected += <-ready
	}
	rep.ConnectFailed = int(failed.Load())
	rep.Connections = int64(rep.Connected)
	if pool != nil {
		rep.Connections = pool.dials.Load()
	}
	if p := firstErr.Load(); p != nil {
		rep.FirstError = *p
	}
	sleep(ctx, cfg.Settle)
	rep.RSSAfterKB = proc.rssKB()
	if rep.RSSBeforeKB > 0 && rep.Connected > 0 {
		rep.KBPerConn = float64(rep.RSSAfterKB-rep.RSSBeforeKB) / float64(rep.Connected)
	}
	cpu1 := proc.cpuSeconds()
	rep.CPUConnectSec = cpu1 - cpu0

	// Publish.
	var pubLat histogram
	start := time.Now()
	okSeqs := make([]uint64, (cfg.Messages+63)/64)
	var published, pubFailed int
	// hangUp ends the subscribers.
	hangUp := func() {
		cancel()
		connsMu.Lock()
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
		connsMu.Unlock()
		wg.Wait()
	}
	if cfg.PubProcess {
		var err error
		if published, pubFailed, rep.PubPriority, err = publishFromProcess(ctx, cfg, &pubLat, okSeqs); err != nil {
			hangUp()
			return nil, err
		}
	} else {
		published, pubFailed = publishAll(ctx, cfg, &pubLat, okSeqs)
	}
	rep.PublishSeconds = time.Since(start).Seconds()
	rep.Published, rep.PublishFailed = published, pubFailed
	if rep.PublishSeconds > 0 {
		rep.PublishRate = float64(published) / rep.PublishSeconds
	}
	rep.Expected = int64(published) * int64(rep.Connected)

	// Wait until everything arrived, nothing has arrived for Drain, or
	// the run times out.
	lastCount, lastChange := total.Load(), time.Now()
	for total.Load() < rep.Expected && ctx.Err() == nil {
		sleep(ctx, 5*time.Millisecond)
		if n := total.Load(); n != lastCount {
			lastCount, lastChange = n, time.Now()
		} else if time.Since(lastChange) > cfg.Drain {
			break
		}
	}
	rep.DeliverSeconds = time.Since(start).Seconds()
	cpu2 := proc.cpuSeconds()
	rep.TimedOut = ctx.Err() != nil
	hangUp()

	for _, s := range subs {
		rep.Delivered += s.delivered
		rep.Duplicates += s.dupes
		rep.OutOfOrder += s.outOfOrder
	}
	// Lost: published and confirmed, but not seen. A publish that timed
	// out may still have gone through; its deliveries are counted apart.
	for _, s := range subs {
		for w, bits := range s.seen {
			ok := okSeqs[w]
			rep.Lost += int64(bits64(ok &^ bits))
			rep.Unconfirmed += int64(bits64(bits &^ ok))
		}
	}
	rep.Delivered -= rep.Unconfirmed
	rep.Disconnects = disconnects.Load()
	if rep.DeliverSeconds > 0 {
		rep.MsgsPerSecond = float64(rep.Delivered) / rep.DeliverSeconds
	}
	rep.LatencyMs = lat.pcts()
	rep.PublishMs = pubLat.pcts()
	if cfg.PID > 0 {
		rep.CPUPublishSec = cpu2 - cpu1
		if rep.Delivered > 0 {
			rep.CPUPerDelivered = rep.CPUPublishSec / float64(rep.Delivered) * 1e6
		}
	}
	return rep, nil
}

func (cfg *Config) check() error {
	switch {
	case cfg.Transport != "sse" && cfg.Transport != "ws":
		return fmt.Errorf("transport %q: must be sse or ws", cfg.Transport)
	case cfg.SubURL == "" || cfg.PubURL == "":
		return errors.New("both -sub and -pub URLs are needed")
	case cfg.Subscribers < 0 || cfg.Messages < 0 || cfg.Rate < 0:
		return errors.New("counts and rate must not be negative")
	case cfg.Timeout <= 0:
		return errors.New("timeout must be positive")
	}
	cfg.StreamsPerConn = max(cfg.StreamsPerConn, 1)
	if err := cfg.checkTLS(); err != nil {
		return err
	}
	cfg.ConnectConc = max(cfg.ConnectConc, 1)
	cfg.PubConc = max(cfg.PubConc, 1)
	cfg.Size = max(cfg.Size, stampLen)
	if cfg.PubMethod == "" {
		cfg.PubMethod = http.MethodPost
	}
	if cfg.PubBody == "" {
		cfg.PubBody = "{{payload}}"
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// The payload starts with a stamp: "s=<seq> t=<unix ns> " padded to the
// size asked for with 'x'.
const stampLen = len("s=1000000000 t=1700000000000000000 ")

// makePayload stamps message seq with the time it was due to be sent, so
// that a publisher held up by a slow answer does not hide the delay.
func makePayload(seq int, due time.Time, size int) string {
	b := make([]byte, 0, size)
	b = append(b, "s="...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, " t="...)
	b = strconv.AppendInt(b, due.UnixNano(), 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, 'x')
	}
	return string(b)
}

// parseStamp finds the stamp anywhere in a payload (a JSON frame wraps it).
func parseStamp(b []byte) (seq, sent int64, ok bool) {
	i := bytes.Index(b, []byte("s="))
	if i < 0 {
		return 0, 0, false
	}
	b = b[i+2:]
	seq, b, ok = parseInt(b)
	if !ok || !bytes.HasPrefix(b, []byte(" t=")) {
		return 0, 0, false
	}
	sent, _, ok = parseInt(b[3:])
	return seq, sent, ok
}

func parseInt(b []byte) (int64, []byte, bool) {
	var n int64
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 19 {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	return n, b[i:], i > 0
}

// expandBody fills the body template: {{payload}} raw, {{payload_url}}
// query-escaped, {{payload_json}} as a JSON string without quotes.
func expandBody(tpl, payload string) string {
	if !strings.Contains(tpl, "{{") {
		return tpl
	}
	js, _ := json.Marshal(payload)
	return strings.NewReplacer(
		"{{payload}}", payload,
		"{{payload_url}}", url.QueryEscape(payload),
		"{{payload_json}}", string(js[1:len(js)-1]),
	).Replace(tpl)
}

// publishAll publishes cfg.Messages messages, at cfg.Rate or flat out.
// The sequence numbers of the publishes that were confirmed are set in
// okSeqs.
func publishAll(ctx context.Context, cfg Config, lat *histogram, okSeqs []uint64) (ok, failed int) {
	var okMu sync.Mutex
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: cfg.PubConc,
			DisableCompression:  true,
			TLSClientConfig:     cfg.h1TLS(),
		},
	}
	defer client.CloseIdleConnections()
	type job struct {
		seq int
		due time.Time
	}
	next := make(chan job)
	go func() {
		defer close(next)
		var tick *time.Ticker
		start := time.Now()
		if cfg.Rate > 0 {
			tick = time.NewTicker(time.Millisecond)
			defer tick.Stop()
		}
		for i := range cfg.Messages {
			due := time.Now()
			if tick != nil {
				// Keep to the schedule without drift; a message sent late
				// still counts from when it was due.
				due = start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
				for time.Now().Before(due) {
					select {
					case <-tick.C:
					case <-ctx.Done():
						return
					}
				}
			}
			select {
			case next <- job{i, due}:
			case <-ctx.Done():
				return
			}
		}
	}()
	// With one publisher, messages reach the server in sequence order, so
	// subscribers can check the order; several publishers race. With a
	// rate, give more publishers to keep to it.
	conc := cfg.PubConc
	var okN, failN atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				body := expandBody(cfg.PubBody, makePayload(j.seq, j.due, cfg.Size))
				req, err := http.NewRequestWithContext(ctx, cfg.PubMethod, cfg.PubURL, strings.NewReader(body))
				if err != nil {
					failN.Add(1)
					continue
				}
				for k, v := range cfg.PubHeaders {
					req.Header[k] = v
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failN.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat.add(time.Since(t0))
				if resp.StatusCode/100 != 2 {
					failN.Add(1)
					continue
				}
				okN.Add(1)
				okMu.Lock()
				okSeqs[j.seq/64] |= 1 << (j.seq % 64)
				okMu.Unlock()
			}
		}()
	}
	wg.Wait()
	return int(okN.Load()), int(failN.Load())
}

// dial opens one subscriber connection and returns a function that reads
// payloads until the connection ends.
func dial(ctx context.Context, cfg Config) (io.Closer, func(func([]byte, time.Time)) error, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if cfg.Transport == "ws" {
		d := websocket.Dialer{ReadBufferSize: 4096, WriteBufferSize: 512, TLSClientConfig: cfg.h1TLS()}
		c, resp, err := d.DialContext(dctx, cfg.SubURL, cfg.SubHeaders)
		if err != nil {
			if resp != nil {
				err = fmt.Errorf("%v (status %d)", err, resp.StatusCode)
			}
			return nil, nil, err
		}
		return c, func(f func([]byte, time.Time)) error {
			for {
				_, b, err := c.ReadMessage()
				if err != nil {
					return err
				}
				f(b, time.Now())
			}
		}, nil
	}
	u, err := url.Parse(cfg.SubURL)
	if err != nil {
		return nil, nil, err
	}
	var c net.Conn
	switch u.Scheme {
	case "http":
		var d net.Dialer
		c, err = d.DialContext(dctx, "tcp", hostPort(u))
	case "https":
		// HTTP/1.1 over TLS: the server must not pick HTTP/2.
		d := tls.Dialer{Config: cfg.h1TLS()}
		c, err = d.DialContext(dctx, "tcp", hostPort(u))
	default:
		err = fmt.Errorf("-sub %q: http:// or https:// for SSE", cfg.SubURL)
	}
	if err != nil {
		return nil, nil, err
	}
	req := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{"Accept": {"text/event-stream"}}, Host: u.Host}
	for k, v := range cfg.SubHeaders {
		req.Header[k] = v
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := req.Write(c); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 16<<10)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	_ = c.SetDeadline(time.Time{})
	body := resp.Body
	return c, func(f func([]byte, time.Time)) error {
		defer body.Close()
		return readSSE(bufio.NewReaderSize(body, 16<<10), f)
	}, nil
}

// hostPort is u's host with the scheme's port when it has none.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// readSSE calls f with the data of every event.
func readSSE(r *bufio.Reader, f func([]byte, time.Time)) error {
	var data []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if data != nil {
				f(data, time.Now())
				data = data[:0]
			}
		case bytes.HasPrefix(line, []byte("data:")):
			v := bytes.TrimPrefix(line[5:], []byte(" "))
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, v...)
			if data == nil {
				data = []byte{}
			}
		}
	}
}

func bits64(x uint64) int { return bits.OnesCount64(x) }

// procStats reads a process's RSS and CPU time from /proc.
type procStats struct{ pid int }

func (p procStats) rssKB() int64 {
	if p.pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

// cpuSeconds is user plus system time, children included.
func (p procStats) cpuSeconds() float64 {
	if p.pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		n, _ := strconv.ParseInt(f[k], 10, 64)
		ticks += n
	}
	return float64(ticks) / clockTicks
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100
