//go:build unix

package wshub

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/internal/testnet"
)

// serveDirect serves a subscription to topic t as push_ws does, with
// writes from the delivery, and dials it with d. It returns the client
// and the session once the session serves.
func serveDirect(t *testing.T, h *hub.Hub, d *websocket.Dialer) (*websocket.Conn, *Session) {
	t.Helper()
	opts := Options{MaxMessageSize: 1 << 16, MaxTopics: 8, Format: Raw}
	sessions := make(chan *Session, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := new(Session)
		sub, start, err := h.Subscribe([]string{"t"}, hub.SubscribeOptions{OnReadyDirect: s})
		if err != nil {
			t.Error(err)
			return
		}
		c, err := Upgrade(w, r, 30*time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		if tc, ok := c.conn.Conn.(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(64 << 10)
		}
		s.Init(c, sub, opts)
		sessions <- s
		s.Serve(start, "", func(error) { sub.Close() })
	}))
	t.Cleanup(srv.Close)
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws, <-sessions
}

func waitIdle(t *testing.T, s *Session) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.pump.Idle() {
		if time.Now().After(deadline) {
			t.Fatal("writer never went idle")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWakeWritesFromDelivery checks that a message to an idle session is
// on the socket when Publish returns: the delivery wrote it.
func TestWakeWritesFromDelivery(t *testing.T) {
	h := newHub(t)
	ws, s := serveDirect(t, h, websocket.DefaultDialer)
	rc, err := ws.NetConn().(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		waitIdle(t, s)
		publish(t, h, "t", []byte("hello"))
		buf := make([]byte, 64)
		var n int
		_ = rc.Read(func(fd uintptr) bool {
			n, _ = syscall.Read(int(fd), buf)
			return true
		})
		if want := "\x81\x05hello"; n < 0 || string(buf[:max(n, 0)]) != want {
			t.Fatalf("message %d: %q on the socket when Publish returned, want %q", i, buf[:max(n, 0)], want)
		}
	}
}

// TestWakeStalledReader checks order and completeness when writes from
// the delivery would block or are partial: the client stops reading
// while concurrent publishers send far more than the socket buffers
// hold, starting with a message larger than them.
func TestWakeStalledReader(t *testing.T) {
	h, err := hub.New(new(hub.MemoryBroker), hub.Config{Buffer: 1 << 16, History: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	d := &websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := new(net.Dialer).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)
		}
		return c, err
	}}
	ws, s := serveDirect(t, h, d)
	ws.SetReadLimit(4 << 20)
	waitIdle(t, s)

	big := bytes.Repeat([]byte("b"), 1<<20)
	publish(t, h, "t", big)
	const pubs, each = 4, 300
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Each payload is its publisher and its rank.
				publish(t, h, "t", []byte(strconv.Itoa(p*each+i)))
			}
		}()
	}
	wg.Wait()

	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, got, err := ws.ReadMessage(); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("first message: %d bytes, %v", len(got), err)
	}
	next := make([]int, pubs) // next rank expected from each publisher
	for range pubs * each {
		_, got, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.Atoi(string(got))
		if err != nil {
			t.Fatalf("message %q", got)
		}
		if p, i := v/each, v%each; next[p] != i {
			t.Fatalf("publisher %d: message %d, want %d", p, i, next[p])
		}
		next[v/each]++
	}
	_ = ws.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, got, err := ws.ReadMessage(); err == nil {
		t.Fatalf("extra message %q", got)
	}
}

// maskedFrame is one client frame (masked, as a client must send it).
func maskedFrame(op byte, payload []byte) []byte {
	key := [4]byte{1, 2, 3, 4}
	b := []byte{0x80 | op, 0x80 | byte(len(payload))}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// TestFramesInOneSegment checks that frames arriving together are all
// served: the idle read loop waits for the socket only when gorilla's
// reader holds nothing.
func TestFramesInOneSegment(t *testing.T) {
	h := newHub(t)
	ws := serve(t, h, Options{})
	var both []byte
	for i := range 3 {
		both = append(both, maskedFrame(opText, fmt.Appendf(nil, `{"type":"unsubscribe","topics":["x"],"ref":%d}`, i))...)
	}
	if _, err := ws.NetConn().Write(both); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, got, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if want := fmt.Sprintf(`"ref":%d`, i); !strings.Contains(string(got), want) {
			t.Fatalf("answer %d: %s", i, got)
		}
	}
}

// TestDirectWriteCoalesces checks that several frames written from the
// delivery go out in one write, not one write each.
func TestDirectWriteCoalesces(t *testing.T) {
	server, client := testnet.TCPPair(t)
	c := newConn(server, 0)
	var frames [][]byte
	var want []byte
	for i := range 5 {
		f := appendFrame(nil, opText, fmt.Appendf(nil, `{"n":%d}`, i))
		frames = append(frames, f)
		want = append(want, f...)
	}
	c.mu.Lock()
	c.nonblock = true
	err := c.writeFramesLocked(frames)
	c.mu.Unlock()
	if err != nil || len(c.pending) != 0 {
		t.Fatalf("write: %v, %d bytes pending", err, len(c.pending))
	}
	if writes := c.sock.Writes(); writes != 1 {
		t.Fatalf("%d frames took %d writes, want 1", len(frames), writes)
	}
	got := make([]byte, len(want))
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}
