package hub

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// pollYieldFor is how long pollYielder.yield parks: long enough that the
// timer has not fired before the goroutine is parked, so that the
// scheduler, its run queue empty, polls the network.
const pollYieldFor = 10_000 // ns

// pollYielder parks a goroutine for a moment in the runtime's network
// poller, on a timerfd. Unlike a runtime timer (whose wait the poller
// rounds up to a millisecond), a timerfd wakes it on time, and unlike
// runtime.Gosched, parking lets the scheduler poll the network before it
// runs the goroutine again.
type pollYielder struct {
	fd int
	f  *os.File
}

func (y *pollYielder) yield() {
	if y.f == nil {
		fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
		if err != nil {
			runtime.Gosched()
			return
		}
		y.fd, y.f = fd, os.NewFile(uintptr(fd), "timerfd")
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(pollYieldFor)}
	if err := unix.TimerfdSettime(y.fd, 0, &spec, nil); err != nil {
		runtime.Gosched()
		return
	}
	var b [8]byte
	if _, err := y.f.Read(b[:]); err != nil {
		runtime.Gosched()
	}
}

func (y *pollYielder) close() {
	if y.f != nil {
		y.f.Close()
		y.f = nil
	}
}
