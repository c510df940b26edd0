package takeover

import (
	"syscall"
	"unsafe"
)

// rawWriteMax is the largest write made without telling the scheduler.
// A write of one large message (up to the 1 MiB a frame may have) can
// take long enough that the processor should be free for others meanwhile.
const rawWriteMax = 64 << 10

// tryWrite writes b to the non-blocking socket fd once. Up to
// rawWriteMax it enters the kernel without telling the scheduler
// (RawSyscall): the call never waits, and a write that the scheduler took
// for a blocking one after 20 µs would hand the processor to another
// thread. It sends (send(2), as sendto with no address) rather than
// writes: write(2) goes through the file layer, whose checks and change
// notification cost a delivery at light load about 0.4 µs more in the
// kernel (vfs_write against __sys_sendto in perf); MSG_NOSIGNAL has a
// connection the client reset fail with EPIPE and no signal.
func tryWrite(fd uintptr, b []byte) (int, error) {
	for {
		var n uintptr
		var errno syscall.Errno
		if len(b) <= rawWriteMax {
			n, _, errno = syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), syscall.MSG_NOSIGNAL, 0, 0)
		} else {
			n, _, errno = syscall.Syscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), syscall.MSG_NOSIGNAL, 0, 0)
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
