package hub

import (
	"os"
	"runtime"
	"syscall"
	"unsafe"
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

// itimerspec is the kernel's struct itimerspec.
type itimerspec struct {
	interval, value syscall.Timespec
}

func (y *pollYielder) yield() {
	if y.f == nil {
		const tfdNonblock, tfdCloexec = syscall.O_NONBLOCK, syscall.O_CLOEXEC
		fd, _, e := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, 1 /* CLOCK_MONOTONIC */, tfdNonblock|tfdCloexec, 0)
		if e != 0 {
			runtime.Gosched()
			return
		}
		y.fd, y.f = int(fd), os.NewFile(fd, "timerfd")
	}
	spec := itimerspec{value: syscall.NsecToTimespec(pollYieldFor)}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, uintptr(y.fd), 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); e != 0 {
		runtime.Gosched()
		return
	}
	// The poll that ends the park may also have readied a request: the
	// runtime resumes one of them and queues the others, so let those
	// run before the writes go on.
	var b [8]byte
	_, _ = y.f.Read(b[:])
	runtime.Gosched()
}

func (y *pollYielder) close() {
	if y.f != nil {
		y.f.Close()
		y.f = nil
	}
}
