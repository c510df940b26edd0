//go:build linux

package wshub

import (
	"bytes"
	"testing"
	"time"

	"github.com/caddy-push/push/internal/poll"
	"github.com/caddy-push/push/internal/testwait"
)

// TestFloodingClientIsClosed checks that closing a session whose client
// floods it with pongs, which need no answer, ends it: the reader must
// not go on serving frames the client keeps sending after the close.
func TestFloodingClientIsClosed(t *testing.T) {
	ps := newPollServer(t, Options{})
	base := quiet(t)
	rc := dialRaw(t, ps.url)
	testwait.For(t, "the session to wait in the poller", func() bool { return poll.Registered() == base+1 })
	stop := make(chan struct{})
	flooding := make(chan struct{})
	go func() {
		defer close(flooding)
		pongs := bytes.Repeat(clientFrame(opPong, nil), 10000)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := rc.c.Write(pongs); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); rc.c.Close(); <-flooding }()
	start := time.Now()
	ps.h.Close() // a close frame, then the connection closed after closeWait
	select {
	case <-ps.ended:
	case <-time.After(closeWait + 10*time.Second):
		t.Fatalf("a flooding client kept its session %v after it was closed", time.Since(start)-closeWait)
	}
	testwait.For(t, "no registration", func() bool { return poll.Registered() == base })
}
