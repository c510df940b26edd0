// Command pushload measures a push server: it opens many SSE or WebSocket
// subscribers, publishes messages through an HTTP publisher, and reports
// what arrived, how fast, and what it cost the server.
//
// Against caddy-push (go run ./cmd/caddy run --config examples/Caddyfile):
//
//	go run ./cmd/pushload -transport sse -sub http://localhost:8080/events/ \
//		-pub 'http://localhost:2019/push/topics/ticker' -n 100 -m 1000
//
// Over TLS (https:// for SSE, wss:// for WebSocket) it speaks HTTP/1.1,
// or HTTP/2 for SSE with -http2, one stream per connection or
// -streams-per-conn of them; -insecure accepts a self-signed certificate.
//
// Each payload starts with "s=<sequence> t=<send time in ns>", which is
// how subscribers count and time it; the server may wrap it (a JSON
// frame) but must not change it. The body template fills {{payload}},
// {{payload_url}} (query-escaped) or {{payload_json}} (JSON-escaped), so
// that other servers can be driven too: a form POST for Mercure, a raw
// POST for Nchan.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"
)

type headerFlag http.Header

func (h headerFlag) String() string { return "" }

func (h headerFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	if !ok {
		return fmt.Errorf("header %q: want Name: value", v)
	}
	http.Header(h).Add(strings.TrimSpace(k), strings.TrimSpace(val))
	return nil
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == publisherFlag {
		os.Exit(publisherMain())
	}
	cfg := Config{SubHeaders: http.Header{}, PubHeaders: http.Header{}}
	flag.StringVar(&cfg.Transport, "transport", "sse", "sse or ws")
	flag.StringVar(&cfg.SubURL, "sub", "", "subscriber URL (http:// or https:// for SSE, ws:// or wss:// for WebSocket)")
	flag.Var(headerFlag(cfg.SubHeaders), "sub-header", "header for subscribers, `Name: value` (repeatable)")
	flag.IntVar(&cfg.Subscribers, "n", 100, "subscribers")
	flag.IntVar(&cfg.ConnectConc, "connect-concurrency", 50, "connections opened at once")
	flag.StringVar(&cfg.PubURL, "pub", "", "publish URL")
	flag.StringVar(&cfg.PubMethod, "pub-method", http.MethodPost, "publish method")
	flag.Var(headerFlag(cfg.PubHeaders), "pub-header", "header for publishes, `Name: value` (repeatable)")
	flag.StringVar(&cfg.PubBody, "pub-body", "{{payload}}", "publish body template: {{payload}}, {{payload_url}}, {{payload_json}}")
	flag.IntVar(&cfg.Messages, "m", 100, "messages to publish")
	flag.Float64Var(&cfg.Rate, "rate", 0, "messages a second; 0 publishes flat out")
	flag.IntVar(&cfg.PubConc, "pub-concurrency", 1, "publishers at once; with more than one, out-of-order counts mean nothing")
	flag.IntVar(&cfg.Size, "size", 64, "payload bytes")
	pid := flag.String("pid", "", "server to read RSS and CPU time of, from /proc: a process ID, or a port it listens on as `:8080`")
	flag.DurationVar(&cfg.Timeout, "timeout", 2*time.Minute, "the whole run ends by then")
	flag.DurationVar(&cfg.Settle, "settle", 2*time.Second, "wait after connecting, before RSS is read and publishing starts")
	flag.DurationVar(&cfg.Drain, "drain", 5*time.Second, "give up on missing messages after nothing arrived for this long")
	flag.BoolVar(&cfg.Insecure, "insecure", false, "accept any server certificate, e.g. a self-signed one (https://, wss://)")
	flag.BoolVar(&cfg.HTTP2, "http2", false, "SSE over HTTP/2 (https:// only); without it, https:// SSE and wss:// use HTTP/1.1")
	flag.IntVar(&cfg.StreamsPerConn, "streams-per-conn", 1, "with -http2, subscribers that share one connection")
	flag.BoolVar(&cfg.PubProcess, "pub-process", false, "publish from a child process, so that round trips do not wait on this process reading its subscribers")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	flag.Parse()
	var err error
	if cfg.PID, err = resolvePID(*pid); err != nil {
		fmt.Fprintln(os.Stderr, "pushload:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushload:", err)
		os.Exit(2)
	}
	if *asJSON {
		b, _ := json.Marshal(rep)
		fmt.Println(string(b))
	} else {
		printReport(rep)
	}
	if rep.ConnectFailed > 0 || rep.Lost != 0 || rep.PublishFailed > 0 || rep.Duplicates > 0 {
		os.Exit(1)
	}
}

func printReport(r *Report) {
	fmt.Printf("transport        %s\n", r.Transport)
	fmt.Printf("connected        %d of %d (failed %d) over %d connections\n", r.Connected, r.Subscribers, r.ConnectFailed, r.Connections)
	if r.FirstError != "" {
		fmt.Printf("first error      %s\n", r.FirstError)
	}
	fmt.Printf("published        %d (failed %d) in %.3fs, %.0f/s\n", r.Published, r.PublishFailed, r.PublishSeconds, r.PublishRate)
	fmt.Printf("delivered        %d of %d expected: lost %d, duplicates %d, out of order %d\n",
		r.Delivered, r.Expected, r.Lost, r.Duplicates, r.OutOfOrder)
	if r.Unconfirmed > 0 {
		fmt.Printf("unconfirmed      %d deliveries of messages whose publish failed\n", r.Unconfirmed)
	}
	fmt.Printf("throughput       %.0f deliveries/s over %.3fs\n", r.MsgsPerSecond, r.DeliverSeconds)
	fmt.Printf("latency ms       p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.LatencyMs.P50, r.LatencyMs.P90, r.LatencyMs.P99, r.LatencyMs.Max)
	fmt.Printf("publish rtt ms   p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.PublishMs.P50, r.PublishMs.P90, r.PublishMs.P99, r.PublishMs.Max)
	if r.RSSBeforeKB > 0 {
		fmt.Printf("server RSS       %d KB -> %d KB (%.1f KB per connection)\n", r.RSSBeforeKB, r.RSSAfterKB, r.KBPerConn)
		fmt.Printf("server CPU       connect %.2fs, publish %.2fs (%.2f µs per delivery)\n", r.CPUConnectSec, r.CPUPublishSec, r.CPUPerDelivered)
	}
	if r.Disconnects > 0 {
		fmt.Printf("disconnects      %d\n", r.Disconnects)
	}
	if r.TimedOut {
		fmt.Printf("timed out\n")
	}
}
