package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// publisherPriority is the real-time priority a publisher process asks
// for: above the subscribers' readers, which may keep a core busy, so that
// a round trip measures the server rather than this machine's scheduler.
const publisherPriority = 10

// raisePriority puts every thread of this process (and so every thread
// they start) under SCHED_FIFO at publisherPriority, and says what it got.
// Without the privilege it leaves the process as it is.
func raisePriority() string {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return "normal (" + err.Error() + ")"
	}
	param := struct{ priority int32 }{publisherPriority}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, uintptr(tid), 1 /* SCHED_FIFO */, uintptr(unsafe.Pointer(&param)))
		if e != 0 {
			return "normal (" + e.Error() + ")"
		}
	}
	return fmt.Sprintf("fifo %d", publisherPriority)
}
