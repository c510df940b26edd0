package push

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/caddy-push/push/internal/testnet"
)

// caddyMu serializes tests that run the process's single Caddy instance.
var caddyMu sync.Mutex

// testCaddy is a real Caddy running in this process, listening on
// loopback ports chosen for the test.
type testCaddy struct {
	t     *testing.T
	http  string // host:port of the site
	admin string // host:port of the admin endpoint
	dir   string
	// global is added to the global options block, e.g. servers or log.
	global string
}

// startCaddy runs a Caddyfile whose site block body is site and whose
// push global option body is push. It stops Caddy when the test ends.
func startCaddy(t *testing.T, push, site string) *testCaddy {
	t.Helper()
	return startCaddyGlobal(t, "", push, site)
}

// startCaddyGlobal is startCaddy with more global options; {dir} in
// global, push and site is replaced by the test's directory.
func startCaddyGlobal(t *testing.T, global, push, site string) *testCaddy {
	t.Helper()
	caddyMu.Lock()
	tc := &testCaddy{
		t:     t,
		http:  fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t)),
		admin: fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t)),
		dir:   t.TempDir(),
	}
	tc.global = strings.ReplaceAll(global, "{dir}", tc.dir)
	push = strings.ReplaceAll(push, "{dir}", tc.dir)
	site = strings.ReplaceAll(site, "{dir}", tc.dir)
	t.Cleanup(func() {
		_ = caddy.Stop()
		caddyMu.Unlock()
	})
	if err := tc.load(push, site); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	return tc
}

// caddyfile renders the test's Caddyfile.
func (tc *testCaddy) caddyfile(push, site string) string {
	_, port, _ := net.SplitHostPort(tc.http)
	return fmt.Sprintf(`{
	admin %s
	storage file_system %s
	persist_config off
	auto_https off
	skip_install_trust
	default_bind 127.0.0.1
	log {
		level ERROR
	}
%s
	push {
%s
	}
}

:%s {
%s
}
`, tc.admin, tc.dir, tc.global, push, port, site)
}

// load adapts and runs a Caddyfile, replacing the running config.
func (tc *testCaddy) load(push, site string) error {
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfg, _, err := adapter.Adapt([]byte(tc.caddyfile(push, site)), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return err
	}
	return tc.loadJSON(cfg)
}

// loadJSON runs a JSON config, replacing the running one, and returns
// once the replaced config's listeners are closed.
func (tc *testCaddy) loadJSON(cfg []byte) error {
	tc.t.Helper()
	err := caddy.Load(cfg, true)
	tc.settle()
	return err
}

// settle waits until the site and the admin endpoint each have one
// listening socket, the running config's, and drops client connections
// kept alive to the replaced config's servers.
//
// On Linux, Caddy binds each config's listeners anew with SO_REUSEPORT,
// and caddy.Load returns before the replaced config's sockets are closed:
// the old HTTP servers' Shutdown and the old admin endpoint's run in
// goroutines, and a listener's socket is closed only once its Accept has
// returned. Meanwhile the kernel hands part of the new connections to the
// old socket; the old server answers them with the old config, or the
// socket closes with them still queued and they are reset (EOF or
// "connection reset" on the client's first request).
func (tc *testCaddy) settle() {
	tc.t.Helper()
	for _, addr := range []string{tc.http, tc.admin} {
		waitOneListener(tc.t, addr)
	}
	adminClient.CloseIdleConnections()
	sseClient.CloseIdleConnections()
}

// waitOneListener waits until at most one socket listens on addr. Caddy
// counts a listener out just before closing its socket, and closing it
// waits for its Accept to return, so the count comes first and the kernel
// (where listenSockets can ask it) has the last word.
func waitOneListener(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := caddy.ListenerUsage("tcp", addr)
		if n <= 1 {
			var err error
			if n, err = listenSockets(addr); err != nil {
				return
			}
			if n <= 1 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sockets still listen on %s 30s after a load", n, addr)
		}
		time.Sleep(time.Millisecond)
	}
}

var adminClient = &http.Client{Timeout: 30 * time.Second}

func (tc *testCaddy) url(path string) string { return "http://" + tc.http + path }

// adminDo sends a request to the admin endpoint and returns the status
// and body.
func (tc *testCaddy) adminDo(method, path, body string) (int, []byte) {
	tc.t.Helper()
	return adminRequest(tc.t, tc.admin, method, path, body)
}

// adminRequest sends a request to the admin endpoint at addr and returns
// the status and body.
func adminRequest(t testing.TB, addr, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// publish posts data to topic through the admin API and returns its ID.
func (tc *testCaddy) publish(topic, event, data string) string {
	tc.t.Helper()
	path := "/push/topics/" + topic
	if event != "" {
		path += "?event=" + event
	}
	status, body := tc.adminDo(http.MethodPost, path, data)
	if status != http.StatusOK {
		tc.t.Fatalf("publish to %s: %d %s", topic, status, body)
	}
	var resp struct{ ID string }
	if err := json.Unmarshal(body, &resp); err != nil || resp.ID == "" {
		tc.t.Fatalf("publish answer %s: %v", body, err)
	}
	return resp.ID
}

// stats reads /push/stats.
func (tc *testCaddy) stats() map[string]any {
	tc.t.Helper()
	status, body := tc.adminDo(http.MethodGet, "/push/stats", "")
	if status != http.StatusOK {
		tc.t.Fatalf("stats: %d %s", status, body)
	}
	var st map[string]any
	if err := json.Unmarshal(body, &st); err != nil {
		tc.t.Fatal(err)
	}
	return st
}

// event is one parsed SSE event.
type event struct {
	ID, Event, Data string
}

// sseConn is a test SSE client: an HTTP request whose body is parsed as an
// event stream.
type sseConn struct {
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
	events chan event
	err    error // set before events is closed
	comms  int   // comment lines seen; read only after events is closed
}

// subscribe opens an event stream; header may set Last-Event-ID etc.
func subscribe(t testing.TB, url string, header http.Header) (*sseConn, error) {
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := sseClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("subscribe %s: %d %s", url, resp.StatusCode, body)
	}
	c := &sseConn{resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel, events: make(chan event, 1024)}
	go c.read()
	return c, nil
}

// sseClient has no overall timeout (streams are long) and enough
// connections per host for the load tests.
var sseClient = &http.Client{Transport: &http.Transport{
	MaxIdleConnsPerHost: 64,
	DisableCompression:  true,
}}

func mustSubscribe(t testing.TB, url string, header http.Header) *sseConn {
	t.Helper()
	c, err := subscribe(t, url, header)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

func (c *sseConn) read() {
	defer close(c.events)
	var ev event
	var data []string
	hasData := false
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.err = err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if hasData {
				ev.Data = strings.Join(data, "\n")
				c.events <- ev
			}
			ev, data, hasData = event{}, nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
			c.comms++
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID = value
		case "event":
			ev.Event = value
		case "data":
			data = append(data, value)
			hasData = true
		}
	}
}

// next waits for the next event.
func (c *sseConn) next(t testing.TB) event {
	t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			t.Fatalf("stream ended: %v", c.err)
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	panic("unreachable")
}

// ended waits for the stream to end and reports the events still
// queued.
func (c *sseConn) ended(t testing.TB) []event {
	t.Helper()
	var rest []event
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				return rest
			}
			rest = append(rest, ev)
		case <-timeout:
			t.Fatal("stream did not end within 10s")
		}
	}
}

func (c *sseConn) close() {
	c.cancel()
	c.resp.Body.Close()
}

func lastID(id string) http.Header {
	return http.Header{"Last-Event-Id": {id}}
}

// requireNode reports whether node tests can run, failing the test when
// PUSH_REQUIRE_NODE is set and they cannot.
func requireNode(t *testing.T) {
	t.Helper()
	_, err := os.Stat("testdata/node/node_modules")
	if err == nil {
		return
	}
	if os.Getenv("PUSH_REQUIRE_NODE") != "" {
		t.Fatalf("PUSH_REQUIRE_NODE is set but testdata/node/node_modules cannot be used (%v): run npm ci --prefix testdata/node", err)
	}
	skipClient(t, "node client not installed: npm ci --prefix testdata/node")
}

// seq returns the sequence number of an ID; tests may look inside IDs,
// clients may not.
func seq(t testing.TB, id string) uint64 {
	t.Helper()
	i := strings.LastIndexByte(id, '-')
	var n uint64
	if _, err := fmt.Sscan(id[i+1:], &n); i < 0 || err != nil {
		t.Fatalf("bad ID %q", id)
	}
	return n
}

// rawConn is an SSE subscriber on a bare TCP connection: it reads the
// response head and then reads nothing unless asked.
type rawConn struct {
	net.Conn
}

func rawSubscribe(t testing.TB, addr, path string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, addr)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReaderSize(conn, 64)
	status, err := r.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("subscribe %s: %q %v", path, status, err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return &rawConn{conn}
}

// waitEOF reads until the server closes the connection.
func (c *rawConn) waitEOF() error {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	c.Close()
	return err
}

// stopBound bounds how long stopping Caddy with many open streams may
// take. Streams end within about a second; the bound is generous for a
// busy machine and still catches a stop that waits for streams to end by
// themselves, which is never.
const stopBound = 15 * time.Second

// stopCaddy stops the running Caddy and reports how long it took.
func stopCaddy(t testing.TB) time.Duration {
	t.Helper()
	start := time.Now()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}
