package sse

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/internal/testnet"
)

// serveConn serves a subscription to topic t on server, as push_sse
// does, and returns the stream once its start is read by client.
func serveConn(t *testing.T, h *hub.Hub, server net.Conn, client *bufio.Reader) *Conn {
	t.Helper()
	c := NewConn(server, Options{Retry: time.Second, WriteTimeout: 30 * time.Second})
	sub, start, err := h.Subscribe([]string{"t"}, hub.SubscribeOptions{OnReadyDirect: c})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go c.Serve(sub, start, "", func(error) {
		sub.Close()
		close(done)
	})
	t.Cleanup(func() { c.Close(); <-done })
	if line, err := client.ReadString('\n'); err != nil || line != "retry: 1000\n" {
		t.Fatalf("start: %q, %v", line, err)
	}
	_, _ = client.ReadString('\n')
	return c
}

// waitIdle waits for the stream's writer goroutine to be gone.
func waitIdle(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !c.pump.Idle() {
		if time.Now().After(deadline) {
			t.Fatal("writer never went idle")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConnWritesFromDelivery checks that a message to an idle stream is
// on the socket when Publish returns: the delivery wrote it, not a
// goroutine started for it.
func TestConnWritesFromDelivery(t *testing.T) {
	h, err := hub.New(new(hub.MemoryBroker), hub.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	server, client := testnet.TCPPair(t)
	c := serveConn(t, h, server, bufio.NewReader(client))
	rc, err := client.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		waitIdle(t, c)
		ids, err := h.Publish(context.Background(), &hub.Message{Topic: "t", Data: []byte("hello")})
		if err != nil {
			t.Fatal(err)
		}
		// Read without waiting: only what is already there.
		buf := make([]byte, 256)
		var n int
		_ = rc.Read(func(fd uintptr) bool {
			n, _ = syscall.Read(int(fd), buf)
			return true
		})
		if want := "id: " + ids[0] + "\ndata: hello\n\n"; n < 0 || string(buf[:max(n, 0)]) != want {
			t.Fatalf("message %d: %q on the socket when Publish returned, want %q", i, buf[:max(n, 0)], want)
		}
	}
}

// TestConnStalledReader checks order and completeness when writes from
// the delivery would block or are partial: the client stops reading
// while concurrent publishers send far more than the socket buffers
// hold, starting with a message larger than them.
func TestConnStalledReader(t *testing.T) {
	h, err := hub.New(new(hub.MemoryBroker), hub.Config{Buffer: 1 << 16}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	server, client := testnet.TCPPair(t)
	_ = server.SetWriteBuffer(64 << 10)
	_ = client.SetReadBuffer(64 << 10)
	r := bufio.NewReader(client)
	c := serveConn(t, h, server, r)
	waitIdle(t, c)

	big := bytes.Repeat([]byte("b"), 1<<20)
	if _, err := h.Publish(context.Background(), &hub.Message{Topic: "t", Data: big}); err != nil {
		t.Fatal(err)
	}
	const pubs, each = 4, 300
	var wg sync.WaitGroup
	for range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := h.Publish(context.Background(), &hub.Message{Topic: "t", Data: bytes.Repeat([]byte("m"), 300)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()

	_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
	var last uint64
	for i := range 1 + pubs*each {
		ev, err := readEvent(r)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		id, _, data, ok := parse(ev)
		if !ok {
			t.Fatalf("event %d: %q", i, ev)
		}
		seq := seqOf(t, id)
		if seq <= last {
			t.Fatalf("event %d: id %s after sequence %d", i, id, last)
		}
		last = seq
		if want := 300; i == 0 && len(data) != len(big) || i > 0 && len(data) != want {
			t.Fatalf("event %d: %d bytes of data", i, len(data))
		}
	}
	// Nothing more: no duplicate.
	_ = client.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if ev, err := readEvent(r); err == nil {
		t.Fatalf("extra event %q", ev)
	}
}

// readEvent reads one event, up to its blank line.
func readEvent(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if err == io.EOF && b.Len() > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		b.WriteString(line)
		if line == "\n" {
			return b.String(), nil
		}
	}
}

// seqOf returns the sequence number of an ID (epoch-seq).
func seqOf(t *testing.T, id string) uint64 {
	t.Helper()
	_, s, ok := strings.Cut(id, "-")
	if !ok {
		t.Fatalf("id %q", id)
	}
	var n uint64
	for _, d := range s {
		n = n*10 + uint64(d-'0')
	}
	return n
}
