package hub

import (
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// With one P and a goroutine that never idles, the runtime polls the
// network only from sysmon, every 10 ms; a pollYielder's yield lets it
// poll at once. A goroutine parked on a socket that already has data
// must run at the busy goroutine's first yields, not after many.
func TestPollYieldLetsTheNetworkIn(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[1])
	f := os.NewFile(uintptr(fds[0]), "pair")
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var yields atomic.Int64
	woke := make(chan int64, 1)
	go func() {
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil {
			t.Error(err)
		}
		woke <- yields.Load()
	}()
	// Let the reader park in the poller.
	for range 10 {
		runtime.Gosched()
	}
	if _, err := syscall.Write(fds[1], []byte{1}); err != nil {
		t.Fatal(err)
	}

	var y pollYielder
	defer y.close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case n := <-woke:
			if n > 3 {
				t.Fatalf("the reader ran after %d yields, want at most 3", n)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the reader never ran")
		}
		y.yield()
		yields.Add(1)
	}
}
