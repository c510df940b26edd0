//go:build unix

package takeover

import (
	"errors"
	"os"
	"syscall"
)

// TryWrite writes as much of b to rc as the socket takes now, in one
// system call that never waits: it returns how many bytes went out, and
// an error only if the connection failed (a full socket buffer is not
// one). The caller must be the only writer of rc.
func TryWrite(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if !errors.Is(werr, syscall.EINTR) {
				return true // never wait for the socket
			}
		}
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil // the caller's writer sets a new deadline
	}
	if err != nil {
		return 0, err
	}
	if n < 0 {
		n = 0
	}
	if errors.Is(werr, syscall.EAGAIN) {
		return n, nil
	}
	return n, werr
}
