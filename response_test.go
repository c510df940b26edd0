package push

import (
	"bufio"
	"compress/gzip"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/quic-go/quic-go/http3"

	"github.com/caddy-push/push/internal/poll"
	"github.com/caddy-push/push/internal/testcert"
	"github.com/caddy-push/push/internal/testnet"
	"github.com/caddy-push/push/internal/testwait"
)

// responseSite serves the same topic on every transport, each route with
// deferred and default header operations, and an access log.
const responseSite = `log {
		output file {dir}/access.log
		format json
	}
	handle /e/* {
		header -Server
		header ?X-Default d
		header >X-Deferred yes
		push_sse news
	}
	handle /z/* {
		encode gzip
		header -Server
		header ?X-Default d
		header >X-Deferred yes
		push_sse news
	}
	handle /w/* {
		header -Server
		header ?X-Default d
		header >X-Deferred yes
		push_ws news
	}
	handle /zw/* {
		encode gzip
		header -Server
		header ?X-Default d
		header >X-Deferred yes
		push_ws news
	}`

// responseLog logs the end of every stream.
const responseLog = `log streams {
		output file {dir}/streams.log
		format json
		level DEBUG
		include http.handlers.push_sse http.handlers.push_ws
	}`

// checkHeaders checks that the route's header operations ran.
func checkHeaders(t *testing.T, name string, h http.Header) {
	t.Helper()
	if v, ok := h["Server"]; ok {
		t.Errorf("%s: Server %q: the deferred delete did not run", name, v)
	}
	if got := h.Get("X-Default"); got != "d" {
		t.Errorf("%s: X-Default %q, want d", name, got)
	}
	if got := h.Get("X-Deferred"); got != "yes" {
		t.Errorf("%s: X-Deferred %q, want yes", name, got)
	}
	if h.Get("Date") == "" {
		t.Errorf("%s: no Date", name)
	}
}

// readLogLines waits until path holds at least n JSON lines for which
// keep is true, and returns them.
func readLogLines(t *testing.T, path string, n int, keep func(map[string]any) bool) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out []map[string]any
		b, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(b), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && keep(m) {
				out = append(out, m)
			}
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d matching lines, want %d:\n%s", filepath.Base(path), len(out), n, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStreamsAreCaddyResponses opens a stream on every transport behind
// header operations and an access log, publishes while they stream (the
// race detector watches Caddy's access log reading the response as
// streams write), and checks the heads, the access log and the end of
// each stream logged by the handler.
func TestStreamsAreCaddyResponses(t *testing.T) {
	testwait.For(t, "earlier connections to leave the poller", func() bool { return poll.Registered() == 0 })
	polled := poll.Registered()
	tc := startCaddyGlobal(t, responseLog, "", responseSite)

	// HTTP/1.1, the connection taken over.
	h1 := mustSubscribe(t, tc.url("/e/"), nil)
	checkHeaders(t, "HTTP/1.1", h1.resp.Header)
	if !h1.resp.Close || h1.resp.ContentLength != -1 || len(h1.resp.TransferEncoding) != 0 {
		t.Errorf("HTTP/1.1: close %v, length %d, encoding %v: want a close-delimited body",
			h1.resp.Close, h1.resp.ContentLength, h1.resp.TransferEncoding)
	}

	// HTTP/2 (cleartext).
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	h2client := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
	resp, err := h2client.Get(tc.url("/e/"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	checkHeaders(t, "HTTP/2", resp.Header)
	h2 := &sseConn{resp: resp, r: bufio.NewReader(resp.Body), cancel: func() {}, events: make(chan event, 16)}
	go h2.read()

	// HTTP/1.1 behind encode.
	req, _ := http.NewRequest(http.MethodGet, tc.url("/z/"), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err = sseClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	checkHeaders(t, "encode", resp.Header)
	var body io.Reader = resp.Body
	gz := resp.Header.Get("Content-Encoding") == "gzip"

	// WebSocket.
	ws, wsResp, err := dialWS(t, wsURL(tc, "/w/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkHeaders(t, "WebSocket", wsResp.Header)
	// WebSocket behind encode: the 101 goes through it.
	zws, zwsResp, err := dialWS(t, wsURL(tc, "/zw/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkHeaders(t, "WebSocket behind encode", zwsResp.Header)
	waitSubscribers(t, tc, 5)
	// The poller waits only on plain sockets taken over: the HTTP/1.1
	// stream and both WebSockets (whose bytes bypass encode once
	// upgraded), not HTTP/2 nor the stream behind encode.
	if runtime.GOOS == "linux" {
		testwait.For(t, "three connections in the poller", func() bool { return poll.Registered() == polled+3 })
	}

	// Every stream is read up to the last message before it is closed:
	// the end of each is logged with all 20.
	var ec *sseConn
	for i := range 20 {
		id := tc.publish("news", "", strings.Repeat("x", i))
		if ev := h1.next(t); ev.ID != id {
			t.Fatalf("HTTP/1.1: got %+v, want %s", ev, id)
		}
		if ev := h2.next(t); ev.ID != id {
			t.Fatalf("HTTP/2: got %+v, want %s", ev, id)
		}
		if i == 0 && gz {
			zr, err := gzip.NewReader(resp.Body) // needs the first bytes
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		}
		if i == 0 {
			ec = &sseConn{resp: resp, r: bufio.NewReader(body), cancel: func() {}, events: make(chan event, 32)}
			go ec.read()
			defer func() {
				resp.Body.Close()
			}()
		}
		if ev := ec.next(t); ev.ID != id {
			t.Fatalf("encode: got %+v, want %s", ev, id)
		}
		if f := ws.message(); f.ID != id {
			t.Fatalf("WebSocket: got %+v, want %s", f, id)
		}
		if f := zws.message(); f.ID != id {
			t.Fatalf("WebSocket behind encode: got %+v, want %s", f, id)
		}
	}
	h1.close()
	h2.resp.Body.Close()
	resp.Body.Close()
	ws.Close()
	zws.Close()
	waitSubscribers(t, tc, 0)

	// Caddy's access log: 200 for event streams, 101 for the WebSocket.
	checkAccessLog(t, tc, map[string]float64{"/e/ HTTP/1.1": 200, "/e/ HTTP/2.0": 200, "/z/ HTTP/1.1": 200, "/w/ HTTP/1.1": 101, "/zw/ HTTP/1.1": 101})

	// The end of every stream, logged by the handler.
	ends := readLogLines(t, filepath.Join(tc.dir, "streams.log"), 5, func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasSuffix(msg, " ended")
	})
	for _, e := range ends {
		if e["level"] != "debug" || e["reason"] == nil || e["duration"] == nil {
			t.Errorf("stream end logged as %v", e)
		}
		if b, _ := e["bytes"].(float64); b <= 0 {
			t.Errorf("stream end logged with bytes %v: %v", e["bytes"], e)
		}
		if n, _ := e["messages"].(float64); n != 20 {
			t.Errorf("stream end logged with %v messages, want 20: %v", e["messages"], e)
		}
	}
}

// TestStreamsOverTLS is TestStreamsAreCaddyResponses over TLS: HTTP/1.1
// (SSE taken over, and WebSocket), HTTP/2 and HTTP/3.
func TestStreamsOverTLS(t *testing.T) {
	testwait.For(t, "earlier connections to leave the poller", func() bool { return poll.Registered() == 0 })
	polled := poll.Registered()
	dir := t.TempDir()
	_, _, pool := testcert.Write(t, dir)
	port := testnet.FreePort(t)
	// The harness's site is plain HTTP: this one follows it.
	site := strings.ReplaceAll(`respond 404
}

https://127.0.0.1:`+fmt.Sprint(port)+` {
	tls {certdir}/cert.pem {certdir}/key.pem
	`+responseSite, "{certdir}", dir)
	tc := startCaddyGlobal(t, responseLog, "", site)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	// Each client its own: transports set NextProtos on theirs.
	tlsConf := func() *tls.Config { return &tls.Config{RootCAs: pool} }

	var h1proto http.Protocols
	h1proto.SetHTTP1(true)
	h1client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf(), Protocols: &h1proto}}
	var h2proto http.Protocols
	h2proto.SetHTTP2(true)
	h2client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf(), Protocols: &h2proto}}
	h3 := &http3.Transport{TLSClientConfig: tlsConf()}
	defer h3.Close()
	h3client := &http.Client{Transport: h3}

	open := func(name string, c *http.Client, major int) *sseConn {
		t.Helper()
		resp, err := c.Get(base + "/e/")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if resp.ProtoMajor != major || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s %s", name, resp.Proto, resp.Status)
		}
		checkHeaders(t, name, resp.Header)
		sc := &sseConn{resp: resp, r: bufio.NewReader(resp.Body), cancel: func() {}, events: make(chan event, 32)}
		go sc.read()
		return sc
	}
	streams := map[string]*sseConn{
		"HTTP/1.1": open("HTTP/1.1", h1client, 1),
		"HTTP/2":   open("HTTP/2", h2client, 2),
		"HTTP/3":   open("HTTP/3", h3client, 3),
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: tlsConf()}
	ws, wsResp, err := d.Dial("wss://127.0.0.1:"+fmt.Sprint(port)+"/w/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	checkHeaders(t, "WebSocket", wsResp.Header)
	zws, zwsResp, err := d.Dial("wss://127.0.0.1:"+fmt.Sprint(port)+"/zw/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zws.Close()
	checkHeaders(t, "WebSocket behind encode", zwsResp.Header)
	waitSubscribers(t, tc, 5)
	// Over TLS (and QUIC) the bytes go through a layer: no connection
	// waits in the poller, each keeps its goroutine in a read.
	if n := poll.Registered(); n != polled {
		t.Fatalf("%d connections over TLS or QUIC in the poller", n-polled)
	}

	for i := range 10 {
		id := tc.publish("news", "", strings.Repeat("y", i))
		for name, sc := range streams {
			if ev := sc.next(t); ev.ID != id {
				t.Fatalf("%s: got %+v, want %s", name, ev, id)
			}
		}
		for name, c := range map[string]*websocket.Conn{"WebSocket": ws, "WebSocket behind encode": zws} {
			w := &wsConn{Conn: c, t: t}
			if f := w.message(); f.ID != id {
				t.Fatalf("%s: got %+v, want %s", name, f, id)
			}
		}
	}
	for _, sc := range streams {
		sc.resp.Body.Close()
	}
	ws.Close()
	zws.Close()
	waitSubscribers(t, tc, 0)

	checkAccessLog(t, tc, map[string]float64{"/e/ HTTP/1.1": 200, "/e/ HTTP/2.0": 200, "/e/ HTTP/3.0": 200, "/w/ HTTP/1.1": 101, "/zw/ HTTP/1.1": 101})
	readLogLines(t, filepath.Join(tc.dir, "streams.log"), 5, func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		n, _ := m["messages"].(float64)
		return strings.HasSuffix(msg, " ended") && n == 10
	})
}

// checkAccessLog reads the site's access log and checks that it has one
// entry for each "uri proto" of want, with its status, and no other.
func checkAccessLog(t *testing.T, tc *testCaddy, want map[string]float64) {
	t.Helper()
	entries := readLogLines(t, filepath.Join(tc.dir, "access.log"), len(want), func(m map[string]any) bool {
		return m["msg"] == "handled request"
	})
	for _, e := range entries {
		r, _ := e["request"].(map[string]any)
		key := r["uri"].(string) + " " + r["proto"].(string)
		if st, ok := want[key]; !ok || e["status"] != st {
			t.Errorf("access log %s: status %v, want %v", key, e["status"], st)
		}
		delete(want, key)
	}
	if len(want) > 0 {
		t.Errorf("no access log entry for %v", want)
	}
}
