package takeover

import (
	"syscall"
	"unsafe"
)

// rawWriteMax is the largest write made without telling the scheduler.
// A write of one large message (up to the 1 MiB a frame may have) can
// take long enough that the processor should be free for others meanwhile.
const rawWriteMax = 64 << 10

// tryWrite writes b to the non-blocking descriptor fd once. Up to
// rawWriteMax it enters the kernel without telling the scheduler
// (RawSyscall): the call never waits, and a write that the scheduler took
// for a blocking one after 20 µs would hand the processor to another
// thread.
func tryWrite(fd uintptr, b []byte) (int, error) {
	for {
		var n uintptr
		var errno syscall.Errno
		if len(b) <= rawWriteMax {
			n, _, errno = syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		} else {
			n, _, errno = syscall.Syscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		}
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
