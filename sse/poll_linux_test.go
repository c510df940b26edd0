//go:build linux

package sse

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/internal/poll"
	"github.com/caddy-push/push/internal/testnet"
	"github.com/caddy-push/push/internal/testwait"
)

// TestIdleStreamInPoller checks that an idle stream keeps no goroutine,
// still gets its messages, and ends, freeing its registration, when the
// client leaves (FIN, reset, or a request pipelined and then FIN) or the
// server ends it.
func TestIdleStreamInPoller(t *testing.T) {
	h, err := hub.New(new(hub.MemoryBroker), hub.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// The streams of earlier tests are gone from the poller first.
	testwait.For(t, "earlier streams to end", func() bool { return poll.Registered() == 0 })
	base := 0
	for _, how := range []string{"FIN", "RST", "bytes then FIN", "End"} {
		t.Run(how, func(t *testing.T) {
			server, client := testnet.TCPPair(t)
			c := NewConn(server, Options{Retry: time.Second, WriteTimeout: 30 * time.Second, Heartbeat: time.Hour})
			sub, start, err := h.Subscribe([]string{"t"}, hub.SubscribeOptions{OnReadyDirect: c, OnEnd: func(error) { c.End(0) }})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			// In a goroutine, for a Serve that would read in it.
			go c.Serve(sub, start, "", func(err error) {
				sub.Close()
				done <- err
			})
			testwait.For(t, "the stream to wait in the poller", func() bool {
				return poll.Registered() == base+1 && testwait.Goroutines("sse.(*Conn).read") == 0
			})
			// The stream has no goroutine now: none may be left after.
			goroutines := runtime.NumGoroutine()
			br := bufio.NewReader(client)
			_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := h.Publish(context.Background(), &hub.Message{Topic: "t", Data: []byte("hello")}); err != nil {
				t.Fatal(err)
			}
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if line == "data: hello\n" {
					break
				}
			}
			switch how {
			case "FIN":
				_ = client.CloseWrite()
			case "RST":
				_ = client.SetLinger(0)
				_ = client.Close()
			case "bytes then FIN":
				_, _ = client.Write([]byte(strings.Repeat("GET / HTTP/1.1\r\n\r\n", 100)))
				testwait.For(t, "the reader to return", func() bool { return testwait.Goroutines("sse.(*Conn).read") == 0 })
				_ = client.CloseWrite()
			case "End":
				c.End(0)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the stream did not end")
			}
			if how != "RST" {
				if _, err := io.Copy(io.Discard, br); err != nil {
					t.Fatalf("client: %v, want EOF", err)
				}
			}
			if err := server.SetReadDeadline(time.Time{}); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("the server's socket is still open: %v", err)
			}
			testwait.For(t, "no registration", func() bool { return poll.Registered() == base })
			testwait.For(t, "goroutines to go", func() bool { return runtime.NumGoroutine() <= goroutines })
		})
	}
}

// TestPanicInReadEndsStream checks that a panic while reading what the
// client sent ends the stream as any other end does: out of the poller,
// closed, and done told.
func TestPanicInReadEndsStream(t *testing.T) {
	h, err := hub.New(new(hub.MemoryBroker), hub.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	testwait.For(t, "earlier streams to end", func() bool { return poll.Registered() == 0 })
	server, client := testnet.TCPPair(t)
	c := NewConn(server, Options{Retry: time.Second, WriteTimeout: 30 * time.Second, Heartbeat: time.Hour})
	sub, start, err := h.Subscribe([]string{"t"}, hub.SubscribeOptions{OnReadyDirect: c, OnEnd: func(error) { c.End(0) }})
	if err != nil {
		t.Fatal(err)
	}
	// Set before Serve, which makes the first read itself.
	testHookRead = func() { panic("boom") }
	defer func() { testHookRead = nil }()
	done := make(chan error, 1)
	go c.Serve(sub, start, "", func(err error) {
		sub.Close()
		done <- err
	})
	select {
	case err := <-done:
		if !errors.Is(err, errPanic) {
			t.Fatalf("done got %v, want errPanic", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("done was never called after a panic in the read")
	}
	testwait.For(t, "the stream to leave the poller", func() bool { return poll.Registered() == 0 })
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(client); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
}
