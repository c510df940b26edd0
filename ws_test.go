package push

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsConn is a WebSocket test client.
type wsConn struct {
	*websocket.Conn
	t testing.TB
}

// wsFrame is a server frame of format json.
type wsFrame struct {
	Type        string          `json:"type"`
	ID          string          `json:"id"`
	Topic       string          `json:"topic"`
	Event       string          `json:"event"`
	Data        *string         `json:"data"`
	DataBase64  string          `json:"data_base64"`
	LastEventID string          `json:"last_event_id"`
	Ref         json.RawMessage `json:"ref"`
	Error       string          `json:"error"`
}

func wsURL(tc *testCaddy, path string) string { return "ws://" + tc.http + path }

func dialWS(t testing.TB, url string, header http.Header) (*wsConn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.Dial(url, header)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { c.Close() })
	return &wsConn{Conn: c, t: t}, resp, nil
}

func mustDialWS(t testing.TB, url string) *wsConn {
	t.Helper()
	c, resp, err := dialWS(t, url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	return c
}

// next reads one frame, failing the test after 10 s.
func (c *wsConn) next() (int, []byte) {
	c.t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, data, err := c.ReadMessage()
	if err != nil {
		c.t.Fatalf("reading frame: %v", err)
	}
	return typ, data
}

// frame reads one json frame.
func (c *wsConn) frame() wsFrame {
	c.t.Helper()
	typ, data := c.next()
	var f wsFrame
	if typ != websocket.TextMessage {
		c.t.Fatalf("frame type %d, want text: %q", typ, data)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		c.t.Fatalf("frame %q: %v", data, err)
	}
	return f
}

// message reads one frame and checks that it is a message.
func (c *wsConn) message() wsFrame {
	c.t.Helper()
	f := c.frame()
	if f.Type != "message" || f.Data == nil && f.DataBase64 == "" {
		c.t.Fatalf("got %+v, want a message", f)
	}
	return f
}

// ackAndMessage reads the answer to the client's own publish and the
// message it published, which may come in either order.
func (c *wsConn) ackAndMessage() (ack, msg wsFrame) {
	c.t.Helper()
	for range 2 {
		if f := c.frame(); f.Type == "ack" {
			ack = f
		} else {
			msg = f
		}
	}
	return ack, msg
}

func (c *wsConn) send(frame string) {
	c.t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		c.t.Fatalf("sending %s: %v", frame, err)
	}
}

// closeCode reads until the server closes and returns its close code.
func (c *wsConn) closeCode() int {
	c.t.Helper()
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		c.t.Fatalf("connection ended without a close frame: %v", err)
	}
}

func data(f wsFrame) string {
	if f.Data == nil {
		return ""
	}
	return *f.Data
}

func TestWSDeliversAdminPublish(t *testing.T) {
	tc := startCaddy(t, "", `push_ws /ws/* news`)
	c := mustDialWS(t, wsURL(tc, "/ws/"))
	waitSubscribers(t, tc, 1)

	id := tc.publish("news", "update", "line one\nline two")
	if f := c.message(); f.ID != id || f.Topic != "news" || f.Event != "update" || data(f) != "line one\nline two" {
		t.Fatalf("got %+v, want id %s", f, id)
	}
	status, body := tc.adminDo(http.MethodPost, "/push/publish",
		`[{"topic":"news","data":"a"},{"topic":"other","data":"x"},{"topic":"news","data":"<b>&"}]`)
	if status != http.StatusOK {
		t.Fatalf("batch: %d %s", status, body)
	}
	var ids []struct{ ID string }
	_ = json.Unmarshal(body, &ids)
	for _, want := range []struct{ id, data string }{{ids[0].ID, "a"}, {ids[2].ID, "<b>&"}} {
		if f := c.message(); f.ID != want.id || data(f) != want.data || f.Event != "" {
			t.Fatalf("got %+v, want %v", f, want)
		}
	}
	// Nothing but the message keys: event omitted when empty.
	tc.publish("news", "", "plain")
	_, raw := c.next()
	if want := `"topic":"news","data":"plain"}`; !bytes.HasSuffix(raw, []byte(want)) {
		t.Fatalf("frame %s, want it to end %s", raw, want)
	}
}

// waitSubscribers waits until the hub counts n subscribers.
func waitSubscribers(t testing.TB, tc *testCaddy, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tc.stats()["subscribers"] != float64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("subscribers = %v, want %d", tc.stats()["subscribers"], n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWSHandshakeErrors(t *testing.T) {
	tc := startCaddy(t, "", `
	push_ws /ws/* {
		subscribe chat/*
	}
	push_ws /open/* {
		topic news
		origins *
	}
	push_ws /listed/* {
		topic news
		origins https://app.example.com http://127.0.0.1:1
	}`)
	get := func(method, path string, header http.Header) int {
		req, _ := http.NewRequest(method, tc.url(path), nil)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := get(http.MethodGet, "/ws/", nil); s != http.StatusBadRequest {
		t.Errorf("GET without upgrade: %d, want 400", s)
	}
	if s := get(http.MethodPost, "/ws/", nil); s != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", s)
	}
	dial := func(path string, origin string) int {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, resp, err := dialWS(t, wsURL(tc, path), h)
		if err == nil {
			c.Close()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		return resp.StatusCode
	}
	for _, tt := range []struct {
		path, origin string
		want         int
	}{
		{"/ws/?topic=chat/a", "http://evil.example", http.StatusForbidden},
		{"/ws/?topic=chat/a", "http://" + tc.http, http.StatusSwitchingProtocols},
		{"/ws/?topic=chat/a", "", http.StatusSwitchingProtocols},
		{"/ws/", "", http.StatusSwitchingProtocols}, // topics may come in frames
		{"/ws/?topic=news", "", http.StatusForbidden},
		{"/ws/?topic=bad%20topic", "", http.StatusBadRequest},
		{"/open/", "http://evil.example", http.StatusSwitchingProtocols},
		{"/listed/", "https://app.example.com", http.StatusSwitchingProtocols},
		{"/listed/", "http://" + tc.http, http.StatusForbidden},
	} {
		if got := dial(tt.path, tt.origin); got != tt.want {
			t.Errorf("%s with Origin %q: %d, want %d", tt.path, tt.origin, got, tt.want)
		}
	}
}

func TestWSClientFrames(t *testing.T) {
	tc := startCaddy(t, "", `
	push_ws /ws/* {
		topic news
		subscribe chat/*
		publish chat/*
	}
	push_sse /events/* {
		subscribe chat/*
	}`)
	sse := mustSubscribe(t, tc.url("/events/?topic=chat/lobby"), nil)
	c := mustDialWS(t, wsURL(tc, "/ws/"))

	// Publish to an allowed topic: acked with the ID the SSE subscriber sees.
	c.send(`{"type":"publish","topic":"chat/lobby","event":"say","data":"hi\nthere","ref":3}`)
	ack := c.frame()
	if ack.Type != "ack" || string(ack.Ref) != "3" || ack.ID == "" {
		t.Fatalf("publish answer %+v", ack)
	}
	if ev := sse.next(t); ev.ID != ack.ID || ev.Event != "say" || ev.Data != "hi\nthere" {
		t.Fatalf("SSE got %+v, want id %s", ev, ack.ID)
	}

	// Refused and malformed frames get an error frame; the connection stays.
	for _, tt := range []struct{ frame, ref, err string }{
		{`{"type":"publish","topic":"news","data":"x","ref":"a"}`, `"a"`, "may not be published"},
		{`{"type":"subscribe","topics":["secret"],"ref":5}`, `5`, "may not be subscribed"},
		{`{"type":"publish","topic":"chat/x","ref":6}`, `6`, "one of data and data_base64"},
		{`{"type":"publish","topic":"chat/x","event":"push.reset","data":"x","ref":7}`, `7`, "reserved"},
		{`{"type":"subscribe","topic":"chat/x","ref":8}`, `8`, "takes topics"},
		{`{"type":"dance","ref":9}`, `9`, "unknown frame type"},
		{`{"type":"subscribe","topics":["chat/a"],"extra":1,"ref":10}`, `10`, "unknown field"},
		{`{"ref":{"x":1},"type":"publish"}`, ``, "ref must be"},
		{`not json`, ``, "malformed"},
	} {
		c.send(tt.frame)
		f := c.frame()
		if f.Type != "error" || string(f.Ref) != tt.ref || !strings.Contains(f.Error, tt.err) {
			t.Errorf("%s: got %+v, want error %q with ref %s", tt.frame, f, tt.err, tt.ref)
		}
	}
	if err := c.WriteMessage(websocket.BinaryMessage, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if f := c.frame(); f.Type != "error" || !strings.Contains(f.Error, "binary") {
		t.Fatalf("binary frame: got %+v", f)
	}

	// Subscribe to a topic with history: replay, then the ack, then live.
	first := tc.publish("chat/room", "", "r1")
	tc.publish("chat/room", "", "r2")
	c.send(fmt.Sprintf(`{"type":"subscribe","topics":["chat/room"],"last_event_id":%q,"ref":11}`, first))
	if f := c.message(); data(f) != "r2" || f.Topic != "chat/room" {
		t.Fatalf("replay: got %+v", f)
	}
	if f := c.frame(); f.Type != "ack" || string(f.Ref) != "11" {
		t.Fatalf("subscribe answer %+v", f)
	}
	id := tc.publish("chat/room", "", "r3")
	if f := c.message(); f.ID != id {
		t.Fatalf("live: got %+v, want %s", f, id)
	}

	// A lost cursor gets a reset first.
	c.send(`{"type":"subscribe","topics":["chat/other"],"last_event_id":"nope-1","ref":12}`)
	if f := c.frame(); f.Type != "reset" || f.LastEventID != "nope-1" || f.ID == "" {
		t.Fatalf("reset: got %+v", f)
	}
	if f := c.frame(); f.Type != "ack" || string(f.Ref) != "12" {
		t.Fatalf("subscribe answer %+v", f)
	}

	// Unsubscribe: nothing more from that topic.
	c.send(`{"type":"unsubscribe","topics":["chat/room"],"ref":13}`)
	if f := c.frame(); f.Type != "ack" || string(f.Ref) != "13" {
		t.Fatalf("unsubscribe answer %+v", f)
	}
	tc.publish("chat/room", "", "gone")
	id = tc.publish("news", "", "still here")
	if f := c.message(); f.ID != id {
		t.Fatalf("after unsubscribe got %+v, want %s", f, id)
	}

	// A topic the route gave the connection may be left and taken again.
	c.send(`{"type":"unsubscribe","topics":["news"],"ref":15}`)
	if f := c.frame(); f.Type != "ack" {
		t.Fatalf("unsubscribe news: %+v", f)
	}
	gone := tc.publish("news", "", "while away")
	c.send(fmt.Sprintf(`{"type":"subscribe","topics":["news"],"last_event_id":%q,"ref":16}`, id))
	if f := c.message(); f.ID != gone {
		t.Fatalf("resubscribe replay: got %+v, want %s", f, gone)
	}
	if f := c.frame(); f.Type != "ack" || string(f.Ref) != "16" {
		t.Fatalf("resubscribe news: %+v", f)
	}

	// At most MaxTopicsPerConnection topics.
	var many []string
	for i := range MaxTopicsPerConnection {
		many = append(many, fmt.Sprintf("%q", fmt.Sprint("chat/t", i)))
	}
	c.send(`{"type":"subscribe","topics":[` + strings.Join(many, ",") + `],"ref":14}`)
	if f := c.frame(); f.Type != "error" || !strings.Contains(f.Error, "topics on one connection") {
		t.Fatalf("too many topics: got %+v", f)
	}
}

func TestWSFrameRateLimit(t *testing.T) {
	tc := startCaddy(t, "", `push_ws /ws/* {
		subscribe chat/*
	}`)
	c := mustDialWS(t, wsURL(tc, "/ws/"))
	// 1000 frames at the default 100 a second, bursts of 200: some are
	// refused unless sending them takes 8 s. wshub's TestFrameRateLimit
	// checks the limit itself with a rate that no machine can miss.
	const n = 1000
	go func() {
		for i := range n {
			_ = c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"type":"unsubscribe","topics":["chat/a"],"ref":%d}`, i)))
		}
	}()
	acks, limited := 0, 0
	for range n {
		switch f := c.frame(); {
		case f.Type == "ack":
			acks++
		case f.Type == "error" && strings.Contains(f.Error, "frames a second"):
			limited++
		default:
			t.Fatalf("unexpected %+v", f)
		}
	}
	t.Logf("%d frames: %d carried out, %d refused", n, acks, limited)
	if limited == 0 || acks < 200 {
		t.Fatalf("%d acks, %d refused: want the burst served and the rest refused", acks, limited)
	}
}

func TestWSBinaryPayload(t *testing.T) {
	tc := startCaddy(t, "", `
	push_ws /json/* bin
	push_ws /raw/* {
		topic bin
		format raw
	}
	push_sse /events/* bin`)
	js := mustDialWS(t, wsURL(tc, "/json/"))
	raw := mustDialWS(t, wsURL(tc, "/raw/"))
	sse := mustSubscribe(t, tc.url("/events/"), nil)
	waitSubscribers(t, tc, 3)

	payload := []byte{0xff, 0x00, 0xfe, 'a', 0x80}
	b64 := base64.StdEncoding.EncodeToString(payload)
	status, body := tc.adminDo(http.MethodPost, "/push/publish", `{"topic":"bin","data_base64":"`+b64+`"}`)
	if status != http.StatusOK {
		t.Fatalf("publish: %d %s", status, body)
	}
	if typ, got := raw.next(); typ != websocket.BinaryMessage || !bytes.Equal(got, payload) {
		t.Fatalf("raw client: type %d %x, want binary %x", typ, got, payload)
	}
	if f := js.message(); f.DataBase64 != b64 || f.Data != nil {
		t.Fatalf("json client: %+v, want data_base64 %s", f, b64)
	}
	if ev := sse.next(t); ev.Data != b64 {
		t.Fatalf("SSE client: %q, want %s", ev.Data, b64)
	}
	tc.publish("bin", "", "text ü")
	if typ, got := raw.next(); typ != websocket.TextMessage || string(got) != "text ü" {
		t.Fatalf("raw client: type %d %q, want text", typ, got)
	}
	// A raw client's frames are ignored.
	raw.send(`{"type":"publish","topic":"bin","data":"x"}`)
	id := tc.publish("bin", "", "next")
	if _, got := raw.next(); string(got) != "next" {
		t.Fatalf("raw client got %q after its own frame, want next", got)
	}
	if f := js.message(); f.ID == id {
		t.Fatal("json client skipped a message")
	}
}

func TestCrossTransportResume(t *testing.T) {
	tc := startCaddy(t, "", `
	push_ws /ws/* news
	push_sse /events/* news`)

	// WebSocket up to X, then SSE from X.
	ws := mustDialWS(t, wsURL(tc, "/ws/"))
	waitSubscribers(t, tc, 1)
	var x string
	for i := range 3 {
		id := tc.publish("news", "", fmt.Sprint("before ", i))
		if f := ws.message(); f.ID != id {
			t.Fatalf("ws got %s, want %s", f.ID, id)
		}
		x = id
	}
	ws.Close()
	waitSubscribers(t, tc, 0)
	var missed []string
	for i := range 5 {
		missed = append(missed, tc.publish("news", "", fmt.Sprint("missed ", i)))
	}
	sse := mustSubscribe(t, tc.url("/events/"), lastID(x))
	for _, want := range missed {
		if ev := sse.next(t); ev.ID != want {
			t.Fatalf("SSE resume got %s, want %s", ev.ID, want)
		}
	}
	live := tc.publish("news", "", "live")
	if ev := sse.next(t); ev.ID != live {
		t.Fatalf("SSE live got %s, want %s (a repeat or a gap)", ev.ID, live)
	}
	sse.close()
	waitSubscribers(t, tc, 0)

	// SSE up to Y, then WebSocket from Y.
	y := live
	missed = missed[:0]
	for i := range 4 {
		missed = append(missed, tc.publish("news", "", fmt.Sprint("missed again ", i)))
	}
	ws = mustDialWS(t, wsURL(tc, "/ws/?last_event_id="+y))
	for _, want := range missed {
		if f := ws.message(); f.ID != want {
			t.Fatalf("ws resume got %s, want %s", f.ID, want)
		}
	}
	live = tc.publish("news", "", "live again")
	if f := ws.message(); f.ID != live {
		t.Fatalf("ws live got %s, want %s", f.ID, live)
	}
	// An evicted or foreign cursor: reset first.
	ws2 := mustDialWS(t, wsURL(tc, "/ws/?last_event_id=foreign-7"))
	if f := ws2.frame(); f.Type != "reset" || f.LastEventID != "foreign-7" {
		t.Fatalf("got %+v, want reset", f)
	}
}

func TestWSCloseOnReloadAndShutdown(t *testing.T) {
	tc := startCaddy(t, "", `push_ws /ws/* news`)
	c := mustDialWS(t, wsURL(tc, "/ws/"))
	waitSubscribers(t, tc, 1)
	if err := tc.load("", `push_ws /ws/* news`); err != nil {
		t.Fatal(err)
	}
	if code := c.closeCode(); code != websocket.CloseGoingAway {
		t.Fatalf("reload: close code %d, want 1001", code)
	}
	c = mustDialWS(t, wsURL(tc, "/ws/"))
	waitSubscribers(t, tc, 1)
	stopCaddy(t)
	if code := c.closeCode(); code != websocket.CloseGoingAway {
		t.Fatalf("stop: close code %d, want 1001", code)
	}
}

func TestWSCloseTooBig(t *testing.T) {
	tc := startCaddy(t, "", `push_ws /ws/* {
		publish chat/*
		max_message_size 1KiB
	}`)
	c := mustDialWS(t, wsURL(tc, "/ws/"))
	c.send(`{"type":"publish","topic":"chat/a","data":"` + strings.Repeat("x", 900) + `","ref":1}`)
	if f := c.frame(); f.Type != "ack" {
		t.Fatalf("frame under the limit: %+v", f)
	}
	c.send(`{"type":"publish","topic":"chat/a","data":"` + strings.Repeat("x", 2000) + `"}`)
	if code := c.closeCode(); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
}

// TestWSCloseInvalidUTF8 sends text frames that are not UTF-8: the
// connection closes with 1007 (RFC 6455, section 8.1) and nothing is
// published, in either format.
func TestWSCloseInvalidUTF8(t *testing.T) {
	tc := startCaddy(t, "", `push_ws /ws/* {
		publish chat/*
	}
	push_ws /raw/* {
		topic chat/a
		format raw
	}`)
	for _, path := range []string{"/ws/", "/raw/"} {
		c := mustDialWS(t, wsURL(tc, path))
		if err := c.WriteMessage(websocket.TextMessage, []byte("{\"type\":\"publish\",\"topic\":\"chat/a\",\"data\":\"\xff\"}")); err != nil {
			t.Fatal(err)
		}
		if code := c.closeCode(); code != websocket.CloseInvalidFramePayloadData {
			t.Fatalf("%s: close code %d, want 1007", path, code)
		}
	}
	if n := tc.stats()["published"]; n != 0.0 {
		t.Fatalf("published %v, want 0", n)
	}
}

func TestWSCloseTooSlow(t *testing.T) {
	tc := startCaddy(t, "buffer 4\n\t\thistory 10", `push_ws /ws/* news`)
	stuck := mustDialWS(t, wsURL(tc, "/ws/"))
	reader := mustDialWS(t, wsURL(tc, "/ws/"))
	waitSubscribers(t, tc, 2)
	payload := strings.Repeat("x", 256<<10)
	for i := 0; tc.stats()["dropped_slow"] == float64(0); i++ {
		if i == 400 {
			t.Fatal("stuck subscriber was never cut")
		}
		id := tc.publish("news", "", payload)
		if f := reader.message(); f.ID != id {
			t.Fatalf("reading subscriber got %s, want %s", f.ID, id)
		}
	}
	if code := stuck.closeCode(); code != websocket.ClosePolicyViolation {
		t.Fatalf("close code %d, want 1008", code)
	}
	if got := tc.stats()["subscribers"]; got != float64(1) {
		t.Fatalf("subscribers = %v, want 1", got)
	}
}

func TestWSPingTimeout(t *testing.T) {
	tc := startCaddy(t, "", `push_ws /ws/* {
		topic news
		ping 250ms
	}`)
	// A client that reads answers pings (gorilla does it while reading)
	// and stays connected across many intervals.
	alive := mustDialWS(t, wsURL(tc, "/ws/"))
	// A client that never reads never answers.
	deaf := mustDialWS(t, wsURL(tc, "/ws/"))
	waitSubscribers(t, tc, 2)
	start := time.Now()
	pings := 0
	alive.SetPingHandler(func(data string) error {
		pings++
		if pings == 3 {
			_ = alive.SetReadDeadline(time.Now()) // enough: stop reading
		}
		return alive.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	// Wait for pings as they come, however slow the machine; the reading
	// client must stay connected meanwhile.
	_ = alive.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, _, err := alive.ReadMessage(); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("reading client: %v", err)
	}
	if pings < 3 {
		t.Fatalf("%d pings before the read deadline", pings)
	}
	waitSubscribers(t, tc, 1)
	t.Logf("deaf client dropped within %v", time.Since(start))
	// The deaf client's connection is gone.
	_ = deaf.UnderlyingConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := deaf.UnderlyingConn().Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("deaf client's connection still open")
			}
			break
		}
	}
}

func TestWSShutdownWithManyClients(t *testing.T) {
	const n = 1000
	tc := startCaddy(t, "", `push_ws /ws/* news`)
	conns := make([]*wsConn, n)
	for i := range conns {
		conns[i] = mustDialWS(t, wsURL(tc, "/ws/"))
	}
	waitSubscribers(t, tc, n)
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(2 * stopBound))
			for {
				_, _, err := c.ReadMessage()
				if err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						codes <- ce.Code
					} else {
						codes <- -1
					}
					return
				}
			}
		}()
	}
	elapsed := stopCaddy(t)
	t.Logf("caddy stop with %d WebSocket clients: %v", n, elapsed)
	if elapsed > stopBound {
		t.Fatalf("stop took %v, want under %v", elapsed, stopBound)
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != websocket.CloseGoingAway {
			t.Fatalf("close code %d, want 1001", code)
		}
	}
}

// TestWSThroughReverseProxy runs a WebSocket through a reverse_proxy
// (Caddy in front of itself), both ways.
func TestWSThroughReverseProxy(t *testing.T) {
	tc := startCaddy(t, "", `push_ws /ws/* {
		subscribe chat/*
		publish chat/*
	}
	handle_path /proxied/* {
		rewrite * /ws{path}
		reverse_proxy {http.request.hostport}
	}`)
	c := mustDialWS(t, wsURL(tc, "/proxied/?topic=chat/a"))
	c.send(`{"type":"publish","topic":"chat/a","data":"via proxy","ref":1}`)
	ack, msg := c.ackAndMessage()
	if ack.ID == "" || msg.ID != ack.ID || data(msg) != "via proxy" {
		t.Fatalf("ack %+v, message %+v", ack, msg)
	}
	c.Close()
	missed := tc.publish("chat/a", "", "missed")
	c = mustDialWS(t, wsURL(tc, "/proxied/?topic=chat/a&last_event_id="+ack.ID))
	if f := c.message(); f.ID != missed {
		t.Fatalf("resume through proxy: got %+v, want %s", f, missed)
	}
}

// TestWSFramesTakeEffectInOrder sends a subscribe and a publish to the
// same topic back to back: the publish must see the subscription.
func TestWSFramesTakeEffectInOrder(t *testing.T) {
	tc := startCaddy(t, "", `push_ws /ws/* {
		subscribe chat/*
		publish chat/*
	}`)
	for i := range 20 {
		c := mustDialWS(t, wsURL(tc, "/ws/"))
		topic := fmt.Sprint("chat/", i)
		c.send(`{"type":"subscribe","topics":["` + topic + `"],"ref":1}`)
		c.send(`{"type":"publish","topic":"` + topic + `","data":"echo","ref":2}`)
		if f := c.frame(); f.Type != "ack" || string(f.Ref) != "1" {
			t.Fatalf("subscribe answer %+v", f)
		}
		ack, msg := c.ackAndMessage()
		if ack.ID == "" || msg.Type != "message" || msg.ID != ack.ID {
			t.Fatalf("round %d: ack %+v, message %+v", i, ack, msg)
		}
		// Subscribing again to what the connection has: an ack, no reset.
		c.send(`{"type":"subscribe","topics":["` + topic + `"],"last_event_id":"foreign-1","ref":3}`)
		if f := c.frame(); f.Type != "ack" || string(f.Ref) != "3" {
			t.Fatalf("resubscribe: got %+v, want only an ack", f)
		}
		c.Close()
	}
	// A foreign cursor on a connection without topics resets nothing
	// until a topic is added; then once.
	c := mustDialWS(t, wsURL(tc, "/ws/?last_event_id=foreign-9"))
	c.send(`{"type":"subscribe","topics":["chat/x"],"last_event_id":"foreign-9","ref":4}`)
	if f := c.frame(); f.Type != "reset" {
		t.Fatalf("got %+v, want one reset", f)
	}
	if f := c.frame(); f.Type != "ack" {
		t.Fatalf("got %+v, want the ack", f)
	}
}

// TestWSOriginMatching checks the handler's own Origin check: an
// origin is scheme://host[:port] and nothing else, scheme compared.
func TestWSOriginMatching(t *testing.T) {
	h := &WS{Subscriber: Subscriber{Topics: []string{"t"}}, Origins: []string{"https://App.Example.com:443", "http://localhost:8080", "https://[::1]:8443"}}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := h.provisionOrigins(); err != nil {
		t.Fatal(err)
	}
	req := func(origin, host string, tls bool) *http.Request {
		scheme := "http"
		if tls {
			scheme = "https"
		}
		r := httptest.NewRequest(http.MethodGet, scheme+"://"+host+"/ws/", nil)
		if origin != "-" {
			r.Header.Set("Origin", origin)
		}
		return r
	}
	for _, tt := range []struct {
		origin string
		want   bool
	}{
		{"https://app.example.com", true},
		{"https://app.example.com:443", true},
		{"HTTPS://APP.EXAMPLE.COM", true},
		{"http://app.example.com", false},
		{"wss://app.example.com", false},
		{"http://localhost:8080", true},
		{"http://localhost", false},
		{"https://[::1]:8443", true},
		{"https://evil.com@app.example.com", false},
		{"https://app.example.com#x", false},
		{"https://app.example.com/", false},
		{"https://app.example.com?x", false},
		{"//app.example.com", false},
		{"https://app.example.com:99999", false},
		{"null", false},
		{"", false},
		{"-", true}, // no Origin: not from a browser
	} {
		if got := h.originAllowed(req(tt.origin, "x", false)); got != tt.want {
			t.Errorf("origins list, Origin %q: %v, want %v", tt.origin, got, tt.want)
		}
	}
	same := &WS{}
	if err := same.provisionOrigins(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		origin, host string
		tls          bool
		want         bool
	}{
		{"https://example.com", "example.com:443", true, true},
		{"https://EXAMPLE.com", "example.com", true, true},
		{"http://example.com:8080", "example.com:8080", false, true},
		{"http://localhost:8080", "localhost:8080", false, true},
		{"http://[::1]:8080", "[::1]:8080", false, true},
		{"http://example.com:8080", "example.com", false, false},
		{"https://evil.com", "example.com", true, false},
		{"http://example.com", "example.com", true, false}, // scheme differs
		{"https://example.com", "example.com", false, false},
		{"http://evil.com@localhost:8080", "localhost:8080", false, false},
		{"//localhost:8080", "localhost:8080", false, false},
		{"http://localhost:8080/path", "localhost:8080", false, false},
		{"http://localhost:8080#x", "localhost:8080", false, false},
		{"null", "localhost:8080", false, false},
	} {
		if got := same.originAllowed(req(tt.origin, tt.host, tt.tls)); got != tt.want {
			t.Errorf("same host %q (TLS %v), Origin %q: %v, want %v", tt.host, tt.tls, tt.origin, got, tt.want)
		}
	}
	for _, bad := range []string{
		"https://*.example.com", "https://a.com#x", "https://a.com/path", "https://a.com/",
		"example.com", "https://evil.com@example.com", "//example.com", "https://", "https://a.com:",
	} {
		if err := checkOrigin(bad); err == nil {
			t.Errorf("origin %q accepted", bad)
		}
	}
}

// TestWSOriginChecked checks the Origin check on a real upgrade.
func TestWSOriginChecked(t *testing.T) {
	tc := startCaddy(t, "", `push_ws /ws/* news`)
	for origin, want := range map[string]int{
		"http://" + tc.http:           http.StatusSwitchingProtocols,
		"http://evil.com@" + tc.http:  http.StatusForbidden,
		"//" + tc.http:                http.StatusForbidden,
		"http://" + tc.http + "/path": http.StatusForbidden,
		"https://" + tc.http:          http.StatusForbidden,
	} {
		_, resp, err := dialWS(t, wsURL(tc, "/ws/"), http.Header{"Origin": {origin}})
		got := 0
		if resp != nil {
			got = resp.StatusCode
		}
		if got != want {
			t.Errorf("Origin %q: status %d (%v), want %d", origin, got, err, want)
		}
	}
}

func FuzzParseOrigin(f *testing.F) {
	for _, s := range []string{"https://example.com", "http://[::1]:8080", "http://a@b", "//x", "HTTP://X:080", "a+b://c_d:65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, ok := parseOrigin(s)
		if !ok {
			return
		}
		if again, ok := parseOrigin(o); !ok || again != o {
			t.Fatalf("%q -> %q -> %q, %v", s, o, again, ok)
		}
		_, rest, _ := strings.Cut(o, "://")
		if strings.ContainsAny(rest, "/?#@\\ ") || o != strings.ToLower(o) {
			t.Fatalf("%q -> %q", s, o)
		}
	})
}
