package wshub

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-push/push/hub"
)

func newHub(t *testing.T) *hub.Hub {
	t.Helper()
	h, err := hub.New(new(hub.MemoryBroker), hub.Config{Buffer: 4096}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func publish(t *testing.T, h *hub.Hub, topic string, data []byte) string {
	t.Helper()
	ids, err := h.Publish(context.Background(), &hub.Message{Topic: topic, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return ids[0]
}

// testOptions completes opts as the tests' handler does: every topic
// may be subscribed to and published to, through h.
func testOptions(h *hub.Hub, opts Options) Options {
	if opts.MaxMessageSize == 0 {
		opts.MaxMessageSize = 1 << 16
	}
	opts.MaxTopics = 8
	opts.CanSubscribe = func(string) bool { return true }
	opts.CanPublish = func(string) bool { return true }
	opts.Publish = func(ctx context.Context, m *hub.Message) (string, error) {
		ids, err := h.Publish(ctx, m)
		if err != nil {
			return "", err
		}
		return ids[0], nil
	}
	return opts
}

// serve runs Serve behind an httptest server and dials it.
func serve(t *testing.T, h *hub.Hub, opts Options) *websocket.Conn {
	t.Helper()
	opts = testOptions(h, opts)
	subscribed := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var sess atomic.Pointer[Session]
		sub, start, err := h.Subscribe([]string{"t"}, hub.SubscribeOptions{
			OnReady: func() {
				if s := sess.Load(); s != nil {
					s.Kick()
				}
			},
		})
		if err != nil {
			t.Error(err)
			return
		}
		c, err := Upgrade(w, r, 5*time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		s := NewSession(c, sub, opts)
		sess.Store(s)
		close(subscribed)
		s.Serve(start, "", func(error) { sub.Close() })
	}))
	t.Cleanup(srv.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	<-subscribed
	return ws
}

func TestFrameLengths(t *testing.T) {
	h := newHub(t)
	ws := serve(t, h, Options{Format: Raw})
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
		publish(t, h, "t", payload)
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, got, err := ws.ReadMessage()
		if err != nil || typ != websocket.TextMessage || !bytes.Equal(got, payload) {
			t.Fatalf("length %d: type %d, %d bytes, %v", n, typ, len(got), err)
		}
	}
}

func TestBacklogArrivesInOrder(t *testing.T) {
	h := newHub(t)
	ws := serve(t, h, Options{})
	const n = 2000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = publish(t, h, "t", []byte(fmt.Sprint(i)))
	}
	for i := range ids {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, got, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"type":"message","id":%q,"topic":"t","data":"%d"}`, ids[i], i); string(got) != want {
			t.Fatalf("frame %d: %s, want %s", i, got, want)
		}
	}
}

// countingConn counts the writes that reach the connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func TestQueuedMessagesShareOneWrite(t *testing.T) {
	h := newHub(t)
	sub, start, err := h.Subscribe([]string{"t"}, hub.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := range 100 {
		publish(t, h, "t", []byte(fmt.Sprint(i)))
	}
	server, client := net.Pipe()
	defer client.Close()
	cc := &countingConn{Conn: server}
	s := NewSession(&Conn{conn: newConn(cc, time.Second)}, sub, Options{})
	s.setSince("t", start.HeadSeq)
	received := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		received <- b
	}()
	if err := s.sendQueued(); err != nil {
		t.Fatal(err)
	}
	server.Close()
	got := <-received
	if w := cc.writes.Load(); w != 1 {
		t.Fatalf("100 queued messages took %d writes, want 1", w)
	}
	if n := bytes.Count(got, []byte(`"type":"message"`)); n != 100 {
		t.Fatalf("%d messages written, want 100", n)
	}
}

func BenchmarkEncodeFrame(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 64)
	for _, tt := range []struct {
		name string
		enc  func(*hub.Message) []byte
	}{{"json", EncodeJSON}, {"raw", EncodeRaw}} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				// A fresh message each time: encodings are cached on it.
				tt.enc(&hub.Message{Topic: "bench", Data: data})
			}
		})
	}
}

// BenchmarkWriteQueued measures writing 64 queued frames to a connection
// in one writev.
func BenchmarkWriteQueued(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	c := newConn(nc, 5*time.Second)
	frame := EncodeJSON(&hub.Message{Topic: "bench", Data: bytes.Repeat([]byte("x"), 64)})
	frames := make([][]byte, 64)
	b.ReportAllocs()
	b.SetBytes(int64(64 * len(frame)))
	for range b.N {
		for i := range frames {
			frames[i] = frame
		}
		if err := c.writeFrames(frames); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFrameRateLimit sends frames faster than a rate of 1 a second: the
// burst is carried out, then frames are refused, whatever the speed of
// the machine (the test would have to take 80 s to see none refused).
func TestFrameRateLimit(t *testing.T) {
	h := newHub(t)
	ws := serve(t, h, Options{FrameRate: 1, FrameBurst: 20})
	const n = 100
	start := time.Now()
	go func() {
		for i := range n {
			_ = ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"type":"unsubscribe","topics":["x"],"ref":%d}`, i))
		}
	}()
	acks, refused := 0, 0
	for range n {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case bytes.Contains(b, []byte(`"type":"ack"`)):
			acks++
		case bytes.Contains(b, []byte("frames a second")):
			refused++
		default:
			t.Fatalf("unexpected %s", b)
		}
	}
	most := 20 + int(time.Since(start).Seconds()) + 1
	if acks < 20 || acks > most || refused != n-acks {
		t.Fatalf("%d carried out, %d refused: want the burst of 20 (up to %d) carried out and the rest refused", acks, refused, most)
	}
}
