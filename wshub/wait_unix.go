//go:build unix

package wshub

import (
	"errors"
	"syscall"
)

// waitReadable waits until rc has bytes to read (or EOF, or an error),
// reading none.
func waitReadable(rc syscall.RawConn) error {
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return !errors.Is(err, syscall.EAGAIN)
		}
	})
}
