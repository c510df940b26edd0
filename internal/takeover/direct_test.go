package takeover

import (
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-push/push/internal/testnet"
)

// TestRawConnThroughCaddy checks that the socket is found under Caddy's
// hijacked-connection wrapper (what a hijack through Caddy's response
// recorder returns), and that a write that never waits reaches the
// client.
func TestRawConnThroughCaddy(t *testing.T) {
	got := roundTrip(t, func(w http.ResponseWriter, r *http.Request) {
		rec := caddyhttp.NewResponseRecorder(w, nil, nil)
		nc, _, err := rec.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer nc.Close()
		if _, ok := nc.(*net.TCPConn); ok {
			t.Error("the connection is not wrapped: the test proves nothing")
		}
		rc := RawConn(nc)
		if rc == nil {
			t.Error("no socket under Caddy's wrapper")
			return
		}
		msg := "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata: 1\n\n"
		if n, err := TryWrite(rc, []byte(msg)); n != len(msg) || err != nil {
			t.Errorf("TryWrite: %d, %v", n, err)
		}
	})
	if got != "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata: 1\n\n" {
		t.Errorf("client read %q", got)
	}
}

// TestRawConnOnlyPlainSockets checks that no socket is handed out where
// bytes must go through a layer (TLS) or there is none (a pipe).
func TestRawConnOnlyPlainSockets(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if RawConn(a) != nil {
		t.Error("a pipe has a socket")
	}
	server, client := testnet.TCPPair(t)
	_ = client
	if RawConn(tls.Server(server, &tls.Config{})) != nil {
		t.Error("TLS is looked through")
	}
	if RawConn(server) == nil {
		t.Error("no socket under a TCP connection")
	}
}

// TestTryWriteNeverWaits checks that a write to a client that does not
// read returns at once with what the socket took, then with nothing,
// and no error.
func TestTryWriteNeverWaits(t *testing.T) {
	server, _ := testnet.TCPPair(t)
	_ = server.SetWriteBuffer(16 << 10)
	rc := RawConn(server)
	big := make([]byte, 8<<20)
	start := time.Now()
	n, err := TryWrite(rc, big)
	if err != nil || n <= 0 || n >= len(big) {
		t.Fatalf("first write: %d of %d, %v", n, len(big), err)
	}
	// The socket takes more as the client's side buffers it, then
	// nothing.
	for i := 0; n > 0; i++ {
		if i == 1000 {
			t.Fatal("the socket never filled up")
		}
		if n, err = TryWrite(rc, big); err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("writes took %v", d)
	}
}

// TestTryWritePending checks that what a full socket leaves is kept,
// that nothing is written while something is pending (order), and that
// a passed deadline is cleared rather than failing the write.
func TestTryWritePending(t *testing.T) {
	server, client := testnet.TCPPair(t)
	_ = server.SetWriteBuffer(16 << 10)
	rc := RawConn(server)
	deadline := time.Now().Add(-time.Second)
	if err := server.SetWriteDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 8<<20)
	n, pending, err := TryWritePending(server, rc, &deadline, nil, big)
	if err != nil || n <= 0 || n+len(pending) != len(big) {
		t.Fatalf("first write: %d written, %d pending, %v", n, len(pending), err)
	}
	if !deadline.IsZero() {
		t.Fatalf("the passed deadline is still %v", deadline)
	}
	_ = client.Close() // the socket would take more now, or fail
	n, pending2, err := TryWritePending(server, rc, &deadline, pending, []byte("next"))
	if err != nil || n != 0 || len(pending2) != len(pending)+4 || string(pending2[len(pending):]) != "next" {
		t.Fatalf("with something pending: %d written, %d pending, %v", n, len(pending2), err)
	}
}
