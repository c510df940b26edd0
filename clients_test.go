package push

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-push/push/internal/testnet"
)

// nodeProc is a test client written in JavaScript, run by Node from
// testdata/node: it takes lines on stdin and prints one JSON object per
// line on stdout.
type nodeProc struct {
	t     *testing.T
	stdin io.WriteCloser
	lines chan map[string]any
}

func startNode(t *testing.T, env []string, script string, args ...string) *nodeProc {
	t.Helper()
	requireNode(t)
	cmd := exec.Command("node", append([]string{script}, args...)...)
	cmd.Dir = "testdata/node"
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &nodeProc{t: t, stdin: stdin, lines: make(chan map[string]any, 1000)}
	t.Cleanup(func() {
		_, _ = io.WriteString(stdin, "quit\n")
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l map[string]any
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("%s printed %q", script, sc.Text())
				continue
			}
			p.lines <- l
		}
	}()
	return p
}

func (p *nodeProc) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next line whose type is not "error", failing the test
// on an error line if failOnError is set.
func (p *nodeProc) next(failOnError bool) map[string]any {
	p.t.Helper()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatal("node client exited")
			}
			if l["type"] != "error" {
				return l
			}
			if failOnError {
				p.t.Fatalf("node client: %v", l["message"])
			}
			p.t.Logf("node client: %v", l["message"])
		case <-time.After(30 * time.Second):
			p.t.Fatal("node client said nothing for 30s")
		}
	}
}

// expect reads the next line and checks its type.
func (p *nodeProc) expect(typ string) map[string]any {
	p.t.Helper()
	l := p.next(false)
	if l["type"] != typ {
		p.t.Fatalf("node client: got %v, want %s", l, typ)
	}
	return l
}

// frame reads the next frame line of ws_client.mjs as a json frame.
func (p *nodeProc) frame() wsFrame {
	p.t.Helper()
	l := p.expect("frame")
	var f wsFrame
	if err := json.Unmarshal([]byte(l["data"].(string)), &f); err != nil {
		p.t.Fatalf("frame %v: %v", l, err)
	}
	return f
}

func TestNodeWebSocketClient(t *testing.T) {
	site := `push_ws /ws/* news {
		subscribe chat/*
		publish chat/*
	}
	push_ws /raw/* {
		topic bin
		format raw
	}`
	tc := startCaddy(t, "", site)
	c := startNode(t, []string{"WS_RECONNECT=manual", "WS_TIMEOUT_MS=90000"}, "ws_client.mjs", wsURL(tc, "/ws/"))
	c.expect("open")

	// Subscribe and publish with frames; the client's own message comes
	// back to it with the ID of the ack.
	c.send(`{"type":"subscribe","topics":["chat/lobby"],"ref":1}`)
	if f := c.frame(); f.Type != "ack" || string(f.Ref) != "1" {
		t.Fatalf("subscribe: %+v", f)
	}
	c.send(`{"type":"publish","topic":"chat/lobby","event":"say","data":"hello from node","ref":"p1"}`)
	var ackID, msgID string
	for range 2 { // the ack and the message, in either order
		switch f := c.frame(); f.Type {
		case "ack":
			ackID = f.ID
		case "message":
			if data(f) != "hello from node" || f.Event != "say" || f.Topic != "chat/lobby" {
				t.Fatalf("message %+v", f)
			}
			msgID = f.ID
		default:
			t.Fatalf("got %+v", f)
		}
	}
	if ackID == "" || ackID != msgID {
		t.Fatalf("ack ID %q, message ID %q", ackID, msgID)
	}
	if info, ok := topicInfo(t, tc, "chat/lobby"); !ok || info["last_id"] != ackID {
		t.Fatalf("topic chat/lobby: %v", info)
	}
	c.send(`{"type":"publish","topic":"elsewhere","data":"x","ref":2}`)
	if f := c.frame(); f.Type != "error" || string(f.Ref) != "2" {
		t.Fatalf("forbidden publish: %+v", f)
	}
	id := tc.publish("news", "", "admin one")
	if f := c.frame(); f.ID != id || data(f) != "admin one" {
		t.Fatalf("got %+v, want %s", f, id)
	}

	// A reload closes with 1001; the client resumes from its last ID.
	if err := tc.load("", site); err != nil {
		t.Fatal(err)
	}
	if l := c.expect("close"); l["code"] != float64(1001) {
		t.Fatalf("close %v, want 1001", l)
	}
	missed := []string{tc.publish("news", "", "missed one"), tc.publish("news", "", "missed two")}
	c.send("reconnect")
	if l := c.expect("open"); !strings.Contains(l["url"].(string), "last_event_id="+id) {
		t.Fatalf("reconnected to %v, want last_event_id=%s", l["url"], id)
	}
	for _, want := range missed {
		if f := c.frame(); f.ID != want {
			t.Fatalf("resume: got %+v, want %s", f, want)
		}
	}
	live := tc.publish("news", "", "live")
	if f := c.frame(); f.ID != live {
		t.Fatalf("live: got %+v, want %s", f, live)
	}

	// Format raw: the payload only, binary as binary.
	raw := startNode(t, nil, "ws_client.mjs", wsURL(tc, "/raw/"))
	raw.expect("open")
	waitSubscribers(t, tc, 2)
	status, body := tc.adminDo(http.MethodPost, "/push/publish", `{"topic":"bin","data_base64":"AP8Q"}`)
	if status != http.StatusOK {
		t.Fatalf("publish: %d %s", status, body)
	}
	if l := raw.expect("frame"); l["binary"] != true || l["data"] != "AP8Q" {
		t.Fatalf("raw frame %v, want binary AP8Q", l)
	}
}

// topicInfo reads GET /push/topics/<topic>.
func topicInfo(t *testing.T, tc *testCaddy, topic string) (map[string]any, bool) {
	t.Helper()
	status, body := tc.adminDo(http.MethodGet, "/push/topics/"+topic, "")
	if status == http.StatusNotFound {
		return nil, false
	}
	var info map[string]any
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatalf("topic %s: %d %s", topic, status, body)
	}
	return info, true
}

// requireBrowser skips a test if Chromium is missing, or fails it when
// PUSH_REQUIRE_NODE says the browser tests must run.
func requireBrowser(t *testing.T) string {
	t.Helper()
	requireNode(t)
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("PUSH_REQUIRE_NODE") != "" {
			t.Fatalf("PUSH_REQUIRE_NODE is set but there is no browser at %s: apt-get install chromium", path)
		}
		skipClient(t, fmt.Sprintf("no browser at %s: apt-get install chromium", path))
	}
	return path
}

// startExample runs examples/Caddyfile as it is, its ports and addresses
// set through the environment as the file says, its listeners moved to
// loopback.
func startExample(t *testing.T) *testCaddy {
	t.Helper()
	caddyMu.Lock()
	tc := &testCaddy{
		t:     t,
		http:  fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t)),
		admin: fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t)),
		dir:   t.TempDir(),
	}
	t.Cleanup(func() {
		_ = caddy.Stop()
		caddyMu.Unlock()
	})
	_, port, _ := net.SplitHostPort(tc.http)
	t.Setenv("HTTP_PORT", port)
	t.Setenv("ADMIN_ADDR", tc.admin)
	t.Setenv("PUSH_EXAMPLES", "examples")
	t.Setenv("XDG_CONFIG_HOME", tc.dir)
	t.Setenv("XDG_DATA_HOME", tc.dir)
	file, err := os.ReadFile("examples/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(file, map[string]any{"filename": "examples/Caddyfile"})
	if err != nil {
		t.Fatalf("adapting examples/Caddyfile: %v", err)
	}
	if !bytes.Contains(cfg, []byte(`":`+port+`"`)) {
		t.Fatalf("examples/Caddyfile does not listen on HTTP_PORT %s: %s", port, cfg)
	}
	cfg = bytes.ReplaceAll(cfg, []byte(`":`+port+`"`), []byte(`"`+tc.http+`"`))
	if err := tc.loadJSON(cfg); err != nil {
		t.Fatalf("loading examples/Caddyfile: %v", err)
	}
	return tc
}

// TestBrowserExamplePage runs examples/Caddyfile and loads its page in
// headless Chromium: it opens an EventSource and a WebSocket, which first
// get what was retained before the page opened, then a published message
// with the same ID on both; a chat line typed into the page goes out as a
// publish frame and comes back; an app on this machine publishes through
// the push_publish route.
func TestBrowserExamplePage(t *testing.T) {
	chromium := requireBrowser(t)
	tc := startExample(t)
	early := tc.publish("ticker", "quote", `{"symbol":"ACME","price":99}`)
	b := startNode(t, []string{"CHROMIUM=" + chromium}, "browser_check.mjs", tc.url("/"))
	b.next(true) // ready
	waitSubscribers(t, tc, 2)
	// Retained before the page opened: shown when it opens.
	b.send("expect " + early)
	if l := b.next(true); l["type"] != "received" {
		t.Fatalf("browser got %v", l)
	}

	id := tc.publish("ticker", "quote", `{"symbol":"ACME","price":101.5}`)
	b.send("expect " + id)
	l := b.next(true)
	sse, _ := l["sse"].(map[string]any)
	ws, _ := l["ws"].(map[string]any)
	if l["type"] != "received" || sse["data"] != `{"symbol":"ACME","price":101.5}` || ws["data"] != sse["data"] {
		t.Fatalf("browser got %v", l)
	}

	b.send("chat hello from Chromium")
	l = b.next(true)
	if l["type"] != "chat" || l["data"] != "hello from Chromium" {
		t.Fatalf("browser chat: %v", l)
	}
	if info, ok := topicInfo(t, tc, "chat/lobby"); !ok || info["last_id"] != l["id"] {
		t.Fatalf("topic chat/lobby: %v, want last_id %v", info, l["id"])
	}
	// Binary over both: base64 on each.
	status, body := tc.adminDo(http.MethodPost, "/push/publish",
		`{"topic":"ticker","data_base64":"`+base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe})+`"}`)
	if status != http.StatusOK {
		t.Fatalf("publish: %d %s", status, body)
	}
	var ans struct{ ID string }
	_ = json.Unmarshal(body, &ans)
	b.send("expect " + ans.ID)
	if l := b.next(true); l["type"] != "received" {
		t.Fatalf("browser got %v", l)
	}

	// An app on this machine publishes through the push_publish route.
	status, pubBody := appPublish(t, tc.url("/pub?topic=ticker&event=quote"), "", `{"symbol":"ACME","price":102}`)
	if status != http.StatusOK {
		t.Fatalf("push_publish: %d %s", status, pubBody)
	}
	_ = json.Unmarshal([]byte(pubBody), &ans)
	b.send("expect " + ans.ID)
	if l := b.next(true); l["type"] != "received" {
		t.Fatalf("browser got %v", l)
	}
	// And the page with push.js shows what is retained.
	resp, err := http.Get(tc.url("/client.html"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client.html: %d", resp.StatusCode)
	}
}
