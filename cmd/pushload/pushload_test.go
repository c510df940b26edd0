package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-push/push"
	"github.com/caddy-push/push/internal/testcert"
)

// TestMain lets this test binary be its own publisher process, as
// pushload is with -pub-process.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == publisherFlag {
		if os.Getenv(failPublisherEnv) != "" {
			os.Exit(3) // a publisher that dies without a report
		}
		os.Exit(publisherMain())
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSmoke runs pushload against a real Caddy with a few subscribers on
// each transport, in the clear and over TLS (HTTP/1.1 and HTTP/2, one or
// several streams a connection), and checks that every message arrived
// once, in order, over as many connections as asked for.
func TestSmoke(t *testing.T) {
	site, tlsSite, admin := freeAddr(t), freeAddr(t), freeAddr(t)
	_, port, _ := net.SplitHostPort(site)
	cert, key, _ := testcert.Write(t, t.TempDir())
	caddyfile := fmt.Sprintf(`{
	admin %s
	persist_config off
	auto_https disable_redirects
	skip_install_trust
	default_bind 127.0.0.1
	storage file_system %s
	log {
		level ERROR
	}
}
http://127.0.0.1:%s {
	push_sse /events/* bench
	push_ws /ws/* bench
}
https://%s {
	tls %s %s
	push_sse /events/* bench
	push_ws /ws/* bench
}
`, admin, t.TempDir(), port, tlsSite, cert, key)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	for _, tt := range []struct {
		name, transport, url string
		http2, pubProcess    bool
		perConn              int
		conns                int64
	}{
		{"sse", "sse", "http://" + site + "/events/", false, false, 1, 8},
		{"ws", "ws", "ws://" + site + "/ws/", false, false, 1, 8},
		{"sse-pub-process", "sse", "http://" + site + "/events/", false, true, 1, 8},
		{"sse-https-h1", "sse", "https://" + tlsSite + "/events/", false, false, 1, 8},
		{"sse-https-h2", "sse", "https://" + tlsSite + "/events/", true, false, 1, 8},
		{"sse-https-h2-4-streams", "sse", "https://" + tlsSite + "/events/", true, false, 4, 2},
		{"wss", "ws", "wss://" + tlsSite + "/ws/", false, false, 1, 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := run(context.Background(), Config{
				Transport:      tt.transport,
				SubURL:         tt.url,
				Subscribers:    8,
				PubURL:         "http://" + admin + "/push/topics/bench",
				Messages:       50,
				Rate:           500,
				Timeout:        30 * time.Second,
				Drain:          5 * time.Second,
				Insecure:       !strings.HasPrefix(tt.url, "http:") && !strings.HasPrefix(tt.url, "ws:"),
				HTTP2:          tt.http2,
				StreamsPerConn: tt.perConn,
				PubProcess:     tt.pubProcess,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", *rep)
			if rep.Connected != 8 || rep.Connections != tt.conns || rep.Published != 50 || rep.Expected != 400 ||
				rep.Delivered != 400 || rep.Lost != 0 || rep.Duplicates != 0 || rep.OutOfOrder != 0 || rep.TimedOut {
				t.Fatalf("report %+v", *rep)
			}
			if rep.LatencyMs.P50 <= 0 || rep.LatencyMs.Max < rep.LatencyMs.P99 {
				t.Fatalf("latency %+v", rep.LatencyMs)
			}
			if rep.PublishMs.P50 <= 0 || rep.PublishMs.Max < rep.PublishMs.P99 {
				t.Fatalf("publish round trips %+v", rep.PublishMs)
			}
			if (rep.PubPriority != "") != tt.pubProcess {
				t.Fatalf("publisher priority %q", rep.PubPriority)
			}
		})
	}

	// Without -insecure a self-signed certificate is refused, on every
	// way in.
	for _, tt := range []struct {
		transport, url string
		http2          bool
	}{
		{"sse", "https://" + tlsSite + "/events/", false},
		{"sse", "https://" + tlsSite + "/events/", true},
		{"ws", "wss://" + tlsSite + "/ws/", false},
	} {
		rep, err := run(context.Background(), Config{
			Transport: tt.transport, SubURL: tt.url, Subscribers: 2, HTTP2: tt.http2,
			PubURL: "http://" + admin + "/push/topics/bench", Timeout: 30 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Connected != 0 || rep.ConnectFailed != 2 || !strings.Contains(rep.FirstError, "certificate") {
			t.Errorf("%s %s http2=%v without -insecure: %+v", tt.transport, tt.url, tt.http2, *rep)
		}
	}
}

// TestPublisherProcessFails: a publisher process that cannot publish
// fails the run with its reason.
func TestPublisherProcessFails(t *testing.T) {
	var out strings.Builder
	if code := runPublisher(context.Background(), strings.NewReader("{"), &out); code == 0 || !strings.Contains(out.String(), "reading the configuration") {
		t.Fatalf("exit %d, %s", code, out.String())
	}
	_, _, _, err := publishFromProcess(context.Background(), Config{Transport: "nope"}, &histogram{}, nil)
	if err == nil || !strings.Contains(err.Error(), "transport") {
		t.Fatalf("err %v", err)
	}
}

// failPublisherEnv, set, has the publisher process of this test binary
// die at once.
const failPublisherEnv = "PUSHLOAD_TEST_FAIL_PUBLISHER"

// sseStub serves SSE subscribers that receive nothing, and counts those
// connected; publish, if set, answers the publishes. Its handlers end
// when stop is closed, at the latest when the test ends.
func sseStub(t *testing.T, publish http.HandlerFunc) (srv *httptest.Server, open *atomic.Int64, stop chan struct{}) {
	open = new(atomic.Int64)
	stop = make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/events/", func(w http.ResponseWriter, r *http.Request) {
		open.Add(1)
		defer open.Add(-1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	if publish != nil {
		mux.HandleFunc("/publish", publish)
	}
	srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(stop)
		srv.Close()
	})
	return srv, open, stop
}

// TestPublisherProcessDies: when the publisher process dies, the run
// fails with its reason and lets its subscribers go.
func TestPublisherProcessDies(t *testing.T) {
	t.Setenv(failPublisherEnv, "1")
	srv, open, _ := sseStub(t, nil)
	_, err := run(context.Background(), Config{
		Transport: "sse", SubURL: srv.URL + "/events/", PubURL: srv.URL + "/publish",
		Subscribers: 4, Messages: 1, Timeout: 30 * time.Second, Drain: time.Second, PubProcess: true,
	})
	if err == nil || !strings.Contains(err.Error(), "publisher process") {
		t.Fatalf("err %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); open.Load() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers still connected after the run failed", open.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPublisherProcessTimesOut: when the run times out while the
// publisher process waits on the server, the process is interrupted and
// reports what it did: the run is a timed-out report, not an error.
func TestPublisherProcessTimesOut(t *testing.T) {
	arrived := make(chan struct{}, 1)
	var stop chan struct{}
	srv, _, stop := sseStub(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select { // no answer while the run lasts
		case <-r.Context().Done():
		case <-stop:
		}
	})
	rep, err := run(context.Background(), Config{
		Transport: "sse", SubURL: srv.URL + "/events/", PubURL: srv.URL + "/publish",
		Subscribers: 1, Messages: 1, Timeout: 2 * time.Second, Drain: time.Second, PubProcess: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.TimedOut || rep.PublishFailed != 1 || rep.Published != 0 || rep.PubPriority == "" {
		t.Fatalf("report %+v", rep)
	}
	select {
	case <-arrived:
	default:
		t.Fatal("the publish never reached the server")
	}
}

// TestCheckTLS: the TLS options are refused where they mean nothing.
func TestCheckTLS(t *testing.T) {
	for _, c := range []Config{
		{Transport: "ws", SubURL: "wss://h/ws", HTTP2: true},
		{Transport: "sse", SubURL: "http://h/e", HTTP2: true},
		{Transport: "sse", SubURL: "https://h/e", StreamsPerConn: 4},
		{Transport: "sse", SubURL: "http://h/e", Insecure: true},
	} {
		c.PubURL, c.Timeout = "http://h/p", time.Second
		if err := c.check(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	ok := Config{Transport: "sse", SubURL: "https://h/e", PubURL: "http://h/p", Timeout: time.Second,
		HTTP2: true, StreamsPerConn: 4, Insecure: true}
	if err := ok.check(); err != nil {
		t.Errorf("%+v: %v", ok, err)
	}
}

func TestParseStamp(t *testing.T) {
	p := makePayload(42, time.Now(), 80)
	if len(p) != 80 {
		t.Fatalf("payload of %d bytes, want 80", len(p))
	}
	seq, sent, ok := parseStamp([]byte(`{"type":"message","data":"` + p + `"}`))
	if !ok || seq != 42 || time.Since(time.Unix(0, sent)) > time.Minute {
		t.Fatalf("parsed %d %d %v from %q", seq, sent, ok, p)
	}
	for _, bad := range []string{"", "s=", "s=1", "s=1 t=", "x s=a t=1"} {
		if _, _, ok := parseStamp([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	if got := expandBody("topic=b&data={{payload_url}}", "a b&c"); got != "topic=b&data=a+b%26c" {
		t.Fatalf("expandBody: %q", got)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for range 98 {
		h.add(2 * time.Millisecond)
	}
	h.add(time.Second)
	h.add(90 * time.Second)
	p := h.pcts()
	if p.P50 < 1.9 || p.P50 > 2.1 || p.P99 < 990 || p.P99 > 1020 || p.Max != 90000 {
		t.Fatalf("percentiles %+v", p)
	}
}

// TestResolvePID: -pid takes a process ID or a port listened on, here by
// this very process.
func TestResolvePID(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	for _, arg := range []string{fmt.Sprintf(":%d", port), fmt.Sprintf("127.0.0.1:%d", port)} {
		pid, err := resolvePID(arg)
		if err != nil || pid != os.Getpid() {
			t.Errorf("-pid %s: %d %v, want %d", arg, pid, err, os.Getpid())
		}
	}
	if pid, err := resolvePID("1234"); pid != 1234 || err != nil {
		t.Errorf("-pid 1234: %d %v", pid, err)
	}
	free := freeAddr(t)
	_, p, _ := net.SplitHostPort(free)
	for _, bad := range []string{":" + p, "abc", "-3", ":0", ":99999"} {
		if pid, err := resolvePID(bad); err == nil {
			t.Errorf("-pid %s: %d, want an error", bad, pid)
		}
	}
}
