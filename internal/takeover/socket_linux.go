package takeover

import (
	"syscall"
	"unsafe"
)

// tryWrite writes b to the non-blocking descriptor fd once. It enters the
// kernel without telling the scheduler (RawSyscall): the call never
// waits, and a write that the scheduler took for a blocking one after
// 20 µs would hand the processor to another thread.
func tryWrite(fd uintptr, b []byte) (int, error) {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		switch errno {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		default:
			return 0, errno
		}
	}
}
