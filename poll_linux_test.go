package push

import (
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/caddy-push/push/internal/poll"
	"github.com/caddy-push/push/internal/testwait"
)

// openFDs counts the process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// streamGoroutines counts the goroutines running code of the stream
// packages: none while every connection is idle or closed.
func streamGoroutines() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("/push/wshub.")) || bytes.Contains(g, []byte("/push/sse.")) {
			n++
		}
	}
	return n
}

// TestIdleConnectionsFreedOnReloadAndStop checks that idle SSE and
// WebSocket connections, which wait in the poller with no goroutine,
// are closed by a reload and by a stop, clients that never answer
// included, and leave no registration, goroutine or descriptor behind.
func TestIdleConnectionsFreedOnReloadAndStop(t *testing.T) {
	const n = 20
	// No collection meanwhile: the finalizer of a socket left open would
	// close it and hide the leak.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	testwait.For(t, "earlier connections to leave the poller", func() bool { return poll.Registered() == 0 })
	fds := openFDs(t)
	site := `push_ws /ws/* news
	push_sse /sse/* news`
	tc := startCaddy(t, "", site)
	open := func() (closeAll func()) {
		var ws []*wsConn
		var sse []*rawConn
		for range n {
			ws = append(ws, mustDialWS(t, wsURL(tc, "/ws/")))
			sse = append(sse, rawSubscribe(t, tc.http, "/sse/"))
		}
		waitSubscribers(t, tc, 2*n)
		testwait.For(t, "the connections to wait in the poller", func() bool {
			return poll.Registered() == 2*n && streamGoroutines() == 0
		})
		return func() {
			for i := range ws {
				// The WebSocket clients never read: the server closes
				// them after its close handshake times out.
				_ = sse[i].waitEOF()
				ws[i].Close()
			}
		}
	}
	closeAll := open()
	if err := tc.load("", site); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "no registration after the reload", func() bool { return poll.Registered() == 0 })
	closeAll()
	testwait.For(t, "the goroutines of the old connections to go", func() bool { return streamGoroutines() == 0 })

	closeAll = open()
	stopCaddy(t)
	testwait.For(t, "no registration after the stop", func() bool { return poll.Registered() == 0 })
	closeAll()
	testwait.For(t, "the goroutines of the connections to go", func() bool { return streamGoroutines() == 0 })
	// Clients and server are in this process: every descriptor of both
	// must be closed. A few are allowed for the runtime and Caddy's own
	// (a listener being replaced, the admin client's idle connection).
	testwait.For(t, "the descriptors to be closed", func() bool { return openFDs(t) <= fds+4 })
}
