package poll

import (
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-push/push/internal/testnet"
)

func rawConn(t *testing.T, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func fdOf(t *testing.T, rc syscall.RawConn) int {
	t.Helper()
	var n int
	if err := rc.Control(func(fd uintptr) { n = int(fd) }); err != nil {
		t.Fatal(err)
	}
	return n
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// watch makes a Waiter for server whose ready function signals on the
// channel it returns.
func watch(t *testing.T, server *net.TCPConn) (*Waiter, chan struct{}) {
	t.Helper()
	ready := make(chan struct{}, 4)
	return New(rawConn(t, server), func() { ready <- struct{}{} }), ready
}

// TestOneShot checks that ready runs once per Arm, when the socket is
// readable, and that TryRead reads what is there without waiting, then
// EOF once the client has closed its side.
func TestOneShot(t *testing.T) {
	server, client := testnet.TCPPair(t)
	w, ready := watch(t, server)
	defer w.Done()
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if _, err := w.TryRead(buf); err != ErrWouldBlock {
		t.Fatalf("TryRead on an idle socket: %v", err)
	}
	_, _ = client.Write([]byte("a"))
	wait(t, ready, "ready")
	// Not armed again: more data starts nothing.
	_, _ = client.Write([]byte("b"))
	select {
	case <-ready:
		t.Fatal("ready ran twice for one Arm")
	case <-time.After(50 * time.Millisecond):
	}
	if n, err := w.TryRead(buf); err != nil || string(buf[:n]) != "ab" {
		t.Fatalf("TryRead: %q, %v", buf[:n], err)
	}
	_ = client.CloseWrite()
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	wait(t, ready, "ready on EOF")
	if _, err := w.TryRead(buf); err != io.EOF {
		t.Fatalf("TryRead after the client's FIN: %v", err)
	}
}

// TestShutdownBeforeArm checks that a read Shutdown of a connection not
// yet registered (its reader runs) takes effect at once: the reader reads
// EOF, and if it arms without reading, ready runs at once.
func TestShutdownBeforeArm(t *testing.T) {
	server, _ := testnet.TCPPair(t)
	w, ready := watch(t, server)
	defer w.Done()
	if !w.Shutdown(false) {
		t.Fatal("read Shutdown before Arm did nothing")
	}
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	wait(t, ready, "ready at Arm after a read Shutdown")
	if _, err := w.TryRead(make([]byte, 16)); err != io.EOF {
		t.Fatalf("TryRead after a read Shutdown: %v", err)
	}
}

// TestShutdownWakes checks that Shutdown has a registered connection's
// ready run, and reports false once the connection is out of the poller.
func TestShutdownWakes(t *testing.T) {
	server, _ := testnet.TCPPair(t)
	w, ready := watch(t, server)
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	if !w.Shutdown(false) {
		t.Fatal("Shutdown of a registered connection did nothing")
	}
	wait(t, ready, "ready after Shutdown")
	w.Done()
	if w.Shutdown(true) {
		t.Fatal("Shutdown after Done")
	}
	if err := w.Arm(); err == nil {
		t.Fatal("Arm after Done")
	}
}

// TestReusedDescriptor checks that a connection closed after Done and
// another one given the same descriptor number are two registrations:
// the new one's events reach only its own ready.
func TestReusedDescriptor(t *testing.T) {
	if err := start(); err != nil { // its descriptor first
		t.Fatal(err)
	}
	base := Registered()
	old, oldClient := testnet.TCPPair(t)
	oldReady := make(chan struct{}, 1)
	wOld := New(rawConn(t, old), func() { oldReady <- struct{}{} })
	if err := wOld.Arm(); err != nil {
		t.Fatal(err)
	}
	oldFD := fdOf(t, rawConn(t, old))
	wOld.Done()
	old.Close()
	oldClient.Close()
	if got := Registered(); got != base {
		t.Fatalf("%d registrations after Done, want %d", got, base)
	}
	server, client := testnet.TCPPair(t)
	rc := rawConn(t, server)
	if fd := fdOf(t, rc); fd != oldFD {
		t.Fatalf("descriptor %d not reused (%d): the test proves nothing", oldFD, fd)
	}
	newReady := make(chan struct{}, 1)
	w := New(rc, func() { newReady <- struct{}{} })
	defer w.Done()
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	_, _ = client.Write([]byte("x"))
	wait(t, newReady, "the new connection's ready")
	select {
	case <-oldReady:
		t.Fatal("the closed connection's ready ran")
	default:
	}
}

// TestArmClosed checks that a closed connection cannot be armed.
func TestArmClosed(t *testing.T) {
	server, _ := testnet.TCPPair(t)
	rc := rawConn(t, server)
	server.Close()
	w := New(rc, func() { t.Error("ready ran") })
	if err := w.Arm(); err != net.ErrClosed {
		t.Fatalf("Arm of a closed connection: %v", err)
	}
	if Registered() != 0 {
		t.Fatal("a closed connection is registered")
	}
}

// TestShutdownRefusedThenArm checks the order a closing connection and
// its reader may meet in: Shutdown(true) reports false (the connection
// is not registered yet), so the caller closes it, while the reader arms
// it first. The Arm must fail: a registration made just before the
// close would outlive the descriptor (closing it takes it out of the
// epoll set), and ready would never run to end the connection.
func TestShutdownRefusedThenArm(t *testing.T) {
	if err := start(); err != nil {
		t.Fatal(err)
	}
	base := Registered()
	server, _ := testnet.TCPPair(t)
	w, ready := watch(t, server)
	if w.Shutdown(true) {
		t.Fatal("Shutdown before Arm")
	}
	err := w.Arm() // the reader, before the closing side's Close
	server.Close()
	if err == nil {
		select {
		case <-ready:
		case <-time.After(2 * time.Second):
			t.Fatal("armed after a refused Shutdown, then closed: ready never runs")
		}
		w.Done()
	} else if err != net.ErrClosed {
		t.Fatalf("Arm after a refused Shutdown: %v", err)
	}
	if got := Registered(); got != base {
		t.Fatalf("%d registrations, want %d", got, base)
	}
}

// TestBlockingFallback checks the poller where the runtime cannot poll
// the epoll instance and a goroutine waits in epoll_wait instead: the
// instance must stay open through garbage collections, and connections
// be served. It runs in a process of its own, whose poller starts that
// way.
func TestBlockingFallback(t *testing.T) {
	if os.Getenv("POLL_TEST_BLOCKING") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBlockingFallback$", "-test.count=1", "-test.timeout=60s")
		cmd.Env = append(os.Environ(), "POLL_TEST_BLOCKING=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return
	}
	noRuntimePoll = true
	if err := start(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		// Whatever the poller dropped is collected, its finalizer run.
		runtime.GC()
		runtime.GC()
		server, client := testnet.TCPPair(t)
		w, ready := watch(t, server)
		if err := w.Arm(); err != nil {
			t.Fatalf("round %d: Arm: %v", i, err)
		}
		_, _ = client.Write([]byte("x"))
		wait(t, ready, "ready")
		w.Done()
	}
}

// TestArmAfterArrival checks that what arrived between a TryRead that
// found nothing and the Arm that follows is not lost: data, and a reset,
// already in the socket when it is armed start ready at once.
func TestArmAfterArrival(t *testing.T) {
	for _, how := range []string{"data", "RST"} {
		t.Run(how, func(t *testing.T) {
			server, client := testnet.TCPPair(t)
			rc := rawConn(t, server)
			ready := make(chan struct{}, 1)
			w := New(rc, func() { ready <- struct{}{} })
			defer w.Done()
			buf := make([]byte, 16)
			if _, err := w.TryRead(buf); err != ErrWouldBlock {
				t.Fatalf("TryRead on an idle socket: %v", err)
			}
			if how == "data" {
				_, _ = client.Write([]byte("x"))
			} else {
				_ = client.SetLinger(0)
				_ = client.Close()
			}
			// Wait, reading nothing, until it has arrived.
			for deadline := time.Now().Add(10 * time.Second); ; {
				var peek [1]byte
				var perr error
				_ = rc.Control(func(fd uintptr) {
					_, _, perr = syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				})
				if perr != syscall.EAGAIN {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("nothing arrived")
				}
				runtime.Gosched()
			}
			if err := w.Arm(); err != nil {
				t.Fatal(err)
			}
			wait(t, ready, "ready for what arrived before Arm")
			if _, err := w.TryRead(buf); (how == "data") != (err == nil) {
				t.Fatalf("TryRead after %s: %v", how, err)
			}
		})
	}
}
