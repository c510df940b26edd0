//go:build linux

package wshub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/internal/poll"
	"github.com/caddy-push/push/internal/testwait"
)

// pollServer serves WebSocket sessions of topic t (and any topic a
// client subscribes to) and counts the sessions that ended.
type pollServer struct {
	h     *hub.Hub
	url   string
	ended chan error
	live  atomic.Int64
}

func newPollServer(t *testing.T, opts Options) *pollServer {
	t.Helper()
	ps := &pollServer{h: newHub(t), ended: make(chan error, 1024)}
	opts = testOptions(ps.h, opts)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var sess atomic.Pointer[Session]
		s := new(Session)
		sub, start, err := ps.h.Subscribe([]string{"t"}, hub.SubscribeOptions{
			OnReadyDirect: s,
			OnEnd: func(reason error) {
				if s := sess.Load(); s != nil {
					s.Ended(reason)
				}
			},
		})
		if err != nil {
			t.Error(err)
			return
		}
		c, err := Upgrade(w, r, 5*time.Second)
		if err != nil {
			sub.Close()
			t.Error(err)
			return
		}
		s.Init(c, sub, opts)
		sess.Store(s)
		ps.live.Add(1)
		s.Serve(start, "", func(err error) {
			sub.Close()
			ps.live.Add(-1)
			ps.ended <- err
		})
	}))
	t.Cleanup(srv.Close)
	ps.url = srv.Listener.Addr().String()
	return ps
}

// rawClient is a WebSocket client written here, so that a test decides
// when it reads, answers and leaves.
type rawClient struct {
	c  *net.TCPConn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	rc := &rawClient{c: c.(*net.TCPConn), br: bufio.NewReader(c)}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v, %v", resp, err)
	}
	return rc
}

// readNoPong reads the server's pings until its close frame, which must
// say that no pong came.
func (rc *rawClient) readNoPong(t *testing.T) {
	t.Helper()
	for {
		op, p := rc.read(t)
		if op == opClose {
			if code := binary.BigEndian.Uint16(p); code != CloseGoingAway || string(p[2:]) != "no pong" {
				t.Fatalf("close %d %q", code, p[2:])
			}
			return
		}
		if op != opPing {
			t.Fatalf("op %d", op)
		}
	}
}

// send writes one masked client frame.
func (rc *rawClient) send(t *testing.T, op byte, payload []byte) {
	t.Helper()
	if _, err := rc.c.Write(clientFrame(op, payload)); err != nil {
		t.Fatal(err)
	}
}

func clientFrame(op byte, payload []byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// read reads one server frame.
func (rc *rawClient) read(t *testing.T) (op byte, payload []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		_, _ = io.ReadFull(rc.br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		_, _ = io.ReadFull(rc.br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(rc.br, payload); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	return h[0] & 0xf, payload
}

// readData reads frames until a data frame, answering nothing.
func (rc *rawClient) readData(t *testing.T) []byte {
	t.Helper()
	for {
		op, p := rc.read(t)
		if op == opText || op == opBinary {
			return p
		}
		if op == opClose {
			t.Fatalf("closed: %q", p)
		}
	}
}

// quiet waits for the sessions of earlier tests to be gone from the
// poller and returns the number of registrations left (none).
func quiet(t *testing.T) int {
	t.Helper()
	testwait.For(t, "earlier sessions to end", func() bool { return poll.Registered() == 0 })
	return 0
}

// waitEnded waits for n sessions to end and returns why they did.
func (ps *pollServer) waitEnded(t *testing.T, n int) []error {
	t.Helper()
	var errs []error
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case err := <-ps.ended:
			errs = append(errs, err)
		case <-timeout:
			t.Fatalf("%d of %d sessions ended", len(errs), n)
		}
	}
	return errs
}

// TestIdleSessionHasNoGoroutine checks that an idle connection waits in
// the poller, not in a goroutine, and is still served: messages reach
// it, its frames are answered, a ping from the client gets its pong.
func TestIdleSessionHasNoGoroutine(t *testing.T) {
	ps := newPollServer(t, Options{})
	base := quiet(t)
	rc := dialRaw(t, ps.url)
	testwait.For(t, "the session to wait in the poller", func() bool {
		return ps.live.Load() == 1 && poll.Registered() == base+1 && testwait.Goroutines("wshub.(*Session).read") == 0
	})

	publish(t, ps.h, "t", []byte("one"))
	if got := rc.readData(t); !bytes.Contains(got, []byte(`"data":"one"`)) {
		t.Fatalf("message: %s", got)
	}
	rc.send(t, opPing, []byte("hello"))
	if op, p := rc.read(t); op != opPong || string(p) != "hello" {
		t.Fatalf("answer to a ping: op %d %q", op, p)
	}
	// Control frames are served whole, without a goroutine left
	// waiting for a data frame.
	testwait.For(t, "the reader to return", func() bool { return testwait.Goroutines("wshub.(*Session).read") == 0 })
	rc.send(t, opPong, nil)
	testwait.For(t, "the reader to return", func() bool { return testwait.Goroutines("wshub.(*Session).read") == 0 })
	rc.send(t, opText, []byte(`{"type":"subscribe","ref":7,"topics":["u"]}`))
	if got := rc.readData(t); !bytes.Contains(got, []byte(`"ref":7`)) {
		t.Fatalf("answer to subscribe: %s", got)
	}
	// A frame that arrives in pieces is served once whole.
	f := clientFrame(opText, []byte(`{"type":"publish","ref":8,"topic":"u","data":"two"}`))
	for _, part := range [][]byte{f[:1], f[1:7], f[7:20], f[20:]} {
		if _, err := rc.c.Write(part); err != nil {
			t.Fatal(err)
		}
		testwait.For(t, "the reader to return", func() bool { return testwait.Goroutines("wshub.(*Session).read") == 0 })
	}
	got := map[string]bool{}
	for range 2 {
		got[string(rc.readData(t))] = true
	}
	ack, msg := false, false
	for s := range got {
		ack = ack || strings.Contains(s, `"ref":8`)
		msg = msg || strings.Contains(s, `"data":"two"`)
	}
	if !ack || !msg {
		t.Fatalf("after a publish frame in pieces: %v", got)
	}
	testwait.For(t, "the reader to return", func() bool { return testwait.Goroutines("wshub.(*Session).read") == 0 })

	rc.send(t, opClose, []byte{0x03, 0xe8})
	if op, p := rc.read(t); op != opClose || binary.BigEndian.Uint16(p) != CloseNormal {
		t.Fatalf("answer to close: op %d %q", op, p)
	}
	ps.waitEnded(t, 1)
	testwait.For(t, "no registration", func() bool { return poll.Registered() == base })
}

// TestIdleSessionPings checks the ping rules without a goroutine in a
// read: a client that answers stays across many intervals, one that
// stops answering is closed with 1001 "no pong" after two, and both
// leave nothing behind.
func TestIdleSessionPings(t *testing.T) {
	const ping = 250 * time.Millisecond
	ps := newPollServer(t, Options{Ping: ping})
	base := quiet(t)
	rc := dialRaw(t, ps.url)
	// Answer six pings: three ping deadlines pass meanwhile.
	var start time.Time
	for i := 0; i < 6; i++ {
		op, p := rc.read(t)
		if op != opPing {
			t.Fatalf("frame %d: op %d %q, want a ping", i, op, p)
		}
		// The server hears the last pong after this.
		start = time.Now()
		rc.send(t, opPong, p)
	}
	if ps.live.Load() != 1 {
		t.Fatal("a client that answers pings was closed")
	}
	// Stop answering: two intervals later the session ends.
	rc.readNoPong(t)
	if d := time.Since(start); d < 2*ping {
		t.Fatalf("closed %v after the last pong, before two intervals", d)
	}
	if err := ps.waitEnded(t, 1)[0]; err != errNoPong {
		t.Fatalf("ended with %v", err)
	}
	testwait.For(t, "no registration", func() bool { return poll.Registered() == base })
	testwait.For(t, "no reader", func() bool { return testwait.Goroutines("wshub.(*Session).read") == 0 })
}

// TestPongDeadlineWhileReading checks that a session whose pong deadline
// passes while its reader runs, and which the reader then puts in the
// poller without another look, still ends.
func TestPongDeadlineWhileReading(t *testing.T) {
	const ping = 50 * time.Millisecond
	var once sync.Once
	testHookBeforeArm = func(s *Session) {
		once.Do(func() {
			// Hold the first reader until the ping timer has found the
			// deadline passed, and found the reader running.
			for deadline := time.Now().Add(10 * time.Second); !s.noPong.Load(); {
				if time.Now().After(deadline) {
					t.Error("the pong deadline never passed")
					return
				}
				runtime.Gosched()
				time.Sleep(time.Millisecond)
			}
		})
	}
	defer func() { testHookBeforeArm = nil }()
	ps := newPollServer(t, Options{Ping: ping})
	base := quiet(t)
	rc := dialRaw(t, ps.url)
	rc.readNoPong(t)
	if err := ps.waitEnded(t, 1)[0]; err != errNoPong {
		t.Fatalf("ended with %v", err)
	}
	testwait.For(t, "no registration", func() bool { return poll.Registered() == base })
}

// TestIdleSessionClientLeaves checks that a client that goes away, with
// a FIN or a reset, ends its idle session at once (the ping interval is
// long) and frees its registration and goroutines.
func TestIdleSessionClientLeaves(t *testing.T) {
	ps := newPollServer(t, Options{Ping: time.Hour})
	base := quiet(t)
	for _, how := range []string{"FIN", "RST"} {
		t.Run(how, func(t *testing.T) {
			rc := dialRaw(t, ps.url)
			testwait.For(t, "the session to wait in the poller", func() bool {
				return ps.live.Load() == 1 && poll.Registered() == base+1 && testwait.Goroutines("wshub.(*Session).read") == 0
			})
			// The session has no goroutine now: none may be left after.
			goroutines := runtime.NumGoroutine()
			if how == "FIN" {
				_ = rc.c.CloseWrite()
			} else {
				_ = rc.c.SetLinger(0)
				_ = rc.c.Close()
			}
			ps.waitEnded(t, 1)
			testwait.For(t, "no registration", func() bool { return poll.Registered() == base })
			testwait.For(t, "no reader", func() bool { return testwait.Goroutines("wshub.(*Session).read") == 0 })
			// The connection's goroutines are gone (timers included).
			testwait.For(t, "goroutines to go", func() bool { return runtime.NumGoroutine() <= goroutines })
		})
	}
}

// TestIdleSessionEndedByServer checks that a session the hub ends while
// its connection waits in the poller sends its close frame and, if the
// client never answers, closes after the grace and frees everything.
func TestIdleSessionEndedByServer(t *testing.T) {
	ps := newPollServer(t, Options{})
	base := quiet(t)
	rc := dialRaw(t, ps.url)
	testwait.For(t, "the session to wait in the poller", func() bool { return testwait.Goroutines("wshub.(*Session).read") == 0 && poll.Registered() == base+1 })
	ps.h.Close()
	if op, p := rc.read(t); op != opClose || binary.BigEndian.Uint16(p) != CloseGoingAway {
		t.Fatalf("op %d %q, want close 1001", op, p)
	}
	ps.waitEnded(t, 1)
	testwait.For(t, "no registration", func() bool { return poll.Registered() == base })
	if _, err := rc.br.ReadByte(); err != io.EOF {
		t.Fatalf("after the close frame: %v, want EOF", err)
	}
}

// TestPollFDReuse opens and closes connections quickly, by FIN and by
// reset, while messages flow, so that closed descriptors are reused at
// once: every client must get its own answers and messages and nobody
// else's, and every registration must go.
func TestPollFDReuse(t *testing.T) {
	ps := newPollServer(t, Options{})
	base := quiet(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = ps.h.Publish(context.Background(), &hub.Message{Topic: "t", Data: []byte("noise")})
			time.Sleep(200 * time.Microsecond)
		}
	}()
	const workers, rounds = 8, 40
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- fdReuseWorker(ps.url, w, rounds)
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	ps.waitEnded(t, workers*rounds)
	testwait.For(t, "no registration", func() bool { return poll.Registered() == base })
	testwait.For(t, "no reader", func() bool { return testwait.Goroutines("wshub.(*Session).read") == 0 })
}

// fdReuseWorker runs rounds connections one after the other: each
// subscribes to a topic of its own, publishes to it and must see its
// ack and its message, among the noise of topic t only.
func fdReuseWorker(addr string, w, rounds int) error {
	for i := range rounds {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		tc := c.(*net.TCPConn)
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		rc := &rawClient{c: tc, br: bufio.NewReader(c)}
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			c.Close()
			return fmt.Errorf("handshake: %v", err)
		}
		topic, ref := fmt.Sprintf("w%d-%d", w, i), w*1000+i
		_, _ = c.Write(clientFrame(opText, fmt.Appendf(nil, `{"type":"subscribe","ref":%d,"topics":[%q]}`, ref, topic)))
		_, _ = c.Write(clientFrame(opText, fmt.Appendf(nil, `{"type":"publish","ref":%d,"topic":%q,"data":%q}`, ref+1, topic, topic)))
		acks, mine := 0, false
		for acks < 2 || !mine {
			op, p, err := rc.readFrame()
			if err != nil {
				c.Close()
				return fmt.Errorf("%s: %v (acks %d, message %v)", topic, err, acks, mine)
			}
			if op != opText {
				continue
			}
			var f struct {
				Type  string          `json:"type"`
				Ref   json.RawMessage `json:"ref"`
				Topic string          `json:"topic"`
				Data  string          `json:"data"`
			}
			if err := json.Unmarshal(p, &f); err != nil {
				return fmt.Errorf("%s: %q: %v", topic, p, err)
			}
			switch {
			case f.Ref != nil:
				if string(f.Ref) != fmt.Sprint(ref) && string(f.Ref) != fmt.Sprint(ref+1) {
					return fmt.Errorf("%s: an answer for another connection: %s", topic, p)
				}
				if f.Type != "ack" {
					return fmt.Errorf("%s: %s", topic, p)
				}
				acks++
			case f.Topic == topic && f.Data == topic:
				mine = true
			case f.Topic != "t":
				return fmt.Errorf("%s: a message for another connection: %s", topic, p)
			}
		}
		if i%2 == 0 {
			_ = tc.CloseWrite()
			// Read to the server's close so that the descriptor is
			// closed before the next connection opens.
			_, _ = io.Copy(io.Discard, rc.br)
		} else {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
	return nil
}

// readFrame is read for a goroutine that cannot fail a test.
func (rc *rawClient) readFrame() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(rc.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		return 0, nil, fmt.Errorf("frame too large")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(rc.br, p); err != nil {
		return 0, nil, err
	}
	return h[0] & 0xf, p, nil
}

// TestAbusiveClientsStallNobody checks that clients abusing the read
// path hold only their own sessions: one floods pings and never reads
// the pongs (its reader ends up stuck in a write), one sends a frame a
// byte at a time, one sends a huge frame header; meanwhile another
// client's pings, frames and messages are served as usual, and once the
// abusers leave everything is freed.
func TestAbusiveClientsStallNobody(t *testing.T) {
	ps := newPollServer(t, Options{MaxMessageSize: 8 << 10})
	base := quiet(t)
	var wg sync.WaitGroup
	defer wg.Wait()

	flood := dialRaw(t, ps.url)
	_ = flood.c.SetReadBuffer(4 << 10)
	wg.Add(1)
	go func() {
		defer wg.Done()
		pings := bytes.Repeat(clientFrame(opPing, []byte("flood")), 1000)
		for {
			if _, err := flood.c.Write(pings); err != nil {
				return // closed below, or by the server
			}
		}
	}()
	slow := dialRaw(t, ps.url)
	wg.Add(1)
	go func() {
		defer wg.Done()
		f := clientFrame(opText, bytes.Repeat([]byte(" "), 4000))
		for i := range f[:len(f)-1] {
			if _, err := slow.c.Write(f[i : i+1]); err != nil {
				return
			}
		}
	}()
	huge := dialRaw(t, ps.url)
	// A text frame of 2^62 bytes: refused with 1009 from its header.
	hdr := []byte{0x81, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}
	if _, err := huge.c.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if op, p := huge.read(t); op != opClose || binary.BigEndian.Uint16(p) != 1009 {
		t.Fatalf("answer to a huge frame: op %d %q", op, p)
	}

	rc := dialRaw(t, ps.url)
	for i := range 20 {
		rc.send(t, opPing, []byte{byte(i)})
		if op, p := rc.read(t); op != opPong || len(p) != 1 || p[0] != byte(i) {
			t.Fatalf("round %d: answer to a ping: op %d %q", i, op, p)
		}
		rc.send(t, opText, fmt.Appendf(nil, `{"type":"publish","ref":%d,"topic":"t","data":"m%d"}`, i, i))
		got := map[string]bool{}
		for range 2 {
			got[string(rc.readData(t))] = true
		}
		if len(got) != 2 {
			t.Fatalf("round %d: %v", i, got)
		}
	}
	testwait.For(t, "the flooder's reader to be stuck in a write", func() bool {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range bytes.Split(buf, []byte("\n\n")) {
			if bytes.Contains(g, []byte("wshub.(*Session).pong")) && bytes.Contains(g, []byte("Write")) {
				return true
			}
		}
		return false
	})

	_ = flood.c.SetLinger(0)
	flood.c.Close()
	slow.c.Close()
	rc.send(t, opClose, []byte{0x03, 0xe8})
	ps.waitEnded(t, 4)
	testwait.For(t, "no registration", func() bool { return poll.Registered() == base })
	testwait.For(t, "no reader", func() bool { return testwait.Goroutines("wshub.(*Session).read") == 0 })
}
