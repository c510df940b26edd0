package sse

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-push/push/hub"
)

// TestIdleHTTP2StreamOutlivesWriteTimeout: HTTP/2 resets a stream whose
// write deadline passes even when nothing is being written, so a stream
// that went idle after a write must not keep its deadline.
func TestIdleHTTP2StreamOutlivesWriteTimeout(t *testing.T) {
	h, err := hub.New(new(hub.MemoryBroker), hub.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	const writeTimeout = 100 * time.Millisecond
	subscribed := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub, start, err := h.Subscribe([]string{"t"}, hub.SubscribeOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		defer sub.Close()
		s := NewStream(w, Options{WriteTimeout: writeTimeout})
		defer s.Finish()
		if err := s.Begin(sub, start, ""); err != nil {
			t.Error(err)
			return
		}
		close(subscribed)
		_ = s.Run(r.Context().Done())
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("got HTTP/%d, want HTTP/2", resp.ProtoMajor)
	}
	<-subscribed
	r := bufio.NewReader(resp.Body)
	// Each message arms the deadline; the stream then stays idle for many
	// times the write timeout before the next one.
	for i, data := range []string{"first", "second", "third"} {
		if i > 0 {
			time.Sleep(5 * writeTimeout)
		}
		if _, err := h.Publish(ctx, &hub.Message{Topic: "t", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
		var event strings.Builder
		for !strings.HasSuffix(event.String(), "\n\n") {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("message %q: stream ended: %v", data, err)
			}
			event.WriteString(line)
		}
		if _, _, got, _ := parse(event.String()); got != data {
			t.Fatalf("got %q, want %q", got, data)
		}
	}
}
