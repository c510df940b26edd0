package takeover

import (
	"crypto/tls"
	"errors"
	"io"
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
		if _, ok := nc.(*net.TCPConn); ok {
			t.Error("the connection is not wrapped: the test proves nothing")
		}
		var s Socket
		defer s.Close()
		if s.Init(nc) == nil {
			t.Error("no socket under Caddy's wrapper")
			return
		}
		msg := "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata: 1\n\n"
		if n, err := s.TryWrite([]byte(msg)); n != len(msg) || err != nil {
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
	var s Socket
	s.Init(server)
	big := make([]byte, 8<<20)
	start := time.Now()
	n, err := s.TryWrite(big)
	if err != nil || n <= 0 || n >= len(big) {
		t.Fatalf("first write: %d of %d, %v", n, len(big), err)
	}
	// The socket takes more as the client's side buffers it, then
	// nothing.
	for i := 0; n > 0; i++ {
		if i == 1000 {
			t.Fatal("the socket never filled up")
		}
		if n, err = s.TryWrite(big); err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("writes took %v", d)
	}
}

// TestTryWritePending checks that what a full socket leaves is kept,
// that nothing is written while something is pending (order), and that a
// passed write deadline does not fail a write that never waits.
func TestTryWritePending(t *testing.T) {
	server, client := testnet.TCPPair(t)
	_ = server.SetWriteBuffer(16 << 10)
	var s Socket
	s.Init(server)
	if err := server.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 8<<20)
	n, pending, err := s.TryWritePending(nil, big)
	if err != nil || n <= 0 || n+len(pending) != len(big) {
		t.Fatalf("first write: %d written, %d pending, %v", n, len(pending), err)
	}
	_ = client.Close() // the socket would take more now, or fail
	n, pending2, err := s.TryWritePending(pending, []byte("next"))
	if err != nil || n != 0 || len(pending2) != len(pending)+4 || string(pending2[len(pending):]) != "next" {
		t.Fatalf("with something pending: %d written, %d pending, %v", n, len(pending2), err)
	}
}

// TestSocketClose checks that nothing is written to a descriptor once
// Close has begun, even after the number was given to another
// connection, and that writes racing Close either go out whole on the
// old connection or fail.
func TestSocketClose(t *testing.T) {
	server, client := testnet.TCPPair(t)
	var s Socket
	if s.Init(server) == nil {
		t.Fatal("no socket")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10000 {
			if _, err := s.TryWrite([]byte("x")); err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("write racing Close: %v", err)
				}
				return
			}
		}
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	// The next connection likely gets the same descriptor number.
	reused, peer := testnet.TCPPair(t)
	_ = reused
	if n, err := s.TryWrite([]byte("leak")); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %d, %v", n, err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _ := peer.Read(make([]byte, 8)); n != 0 {
		t.Errorf("another connection read %d bytes written after Close", n)
	}
	if _, err := io.ReadAll(client); err != nil {
		t.Errorf("old client: %v", err)
	}
}
