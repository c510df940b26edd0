package takeover

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// roundTrip serves one GET with handler over a raw connection and returns
// what the server wrote until it closed the connection or 2 s passed.
func roundTrip(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(handler)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String()
		}
	}
}

func TestHijackAfterHead(t *testing.T) {
	var status int
	got := roundTrip(t, func(w http.ResponseWriter, r *http.Request) {
		rec := caddyhttp.NewResponseRecorder(w, nil, nil)
		rec.Header().Set("X-Test", "yes")
		rec.Header().Set("Transfer-Encoding", "identity")
		nc, _, err := Hijack(rec, http.StatusOK)
		if err != nil {
			t.Error(err)
			return
		}
		status = rec.Status()
		_, _ = nc.Write([]byte("data: 1\n\n"))
		nc.Close()
	})
	if status != http.StatusOK {
		t.Errorf("recorder status %d, want 200", status)
	}
	for _, want := range []string{"HTTP/1.1 200 OK\r\n", "X-Test: yes\r\n", "Date: ", "Connection: close\r\n", "\r\n\r\ndata: 1\n\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("response %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "Transfer-Encoding") || strings.Contains(got, "chunked") {
		t.Errorf("response %q is not close-delimited", got)
	}
}

func TestHijackWhenBuffered(t *testing.T) {
	buffer := func(int, http.Header) bool { return true }
	var err error
	roundTrip(t, func(w http.ResponseWriter, r *http.Request) {
		rec := caddyhttp.NewResponseRecorder(w, new(bytes.Buffer), buffer)
		_, _, err = Hijack(rec, http.StatusOK)
	})
	if !errors.Is(err, ErrBuffered) {
		t.Errorf("final head held back: %v, want ErrBuffered", err)
	}
	// Recorders pass a 101 through.
	got := roundTrip(t, func(w http.ResponseWriter, r *http.Request) {
		rec := caddyhttp.NewResponseRecorder(w, new(bytes.Buffer), buffer)
		rec.Header().Set("Upgrade", "websocket")
		rec.Header().Set("Connection", "Upgrade")
		nc, _, err := Hijack(rec, http.StatusSwitchingProtocols)
		if err != nil {
			t.Error(err)
			return
		}
		nc.Close()
	})
	if !strings.HasPrefix(got, "HTTP/1.1 101 Switching Protocols\r\n") || !strings.Contains(got, "Connection: Upgrade\r\n") {
		t.Errorf("101 response %q", got)
	}
}

func TestNotPossible(t *testing.T) {
	w := httptest.NewRecorder() // cannot hijack
	if Possible(w) {
		t.Error("Possible on a writer that cannot hijack")
	}
	if _, _, err := Hijack(w, http.StatusOK); !errors.Is(err, http.ErrNotSupported) || w.Flushed {
		t.Errorf("Hijack: %v", err)
	}
}
