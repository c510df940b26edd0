//go:build !unix

package takeover

import "syscall"

// TryWrite writes nothing where a write that never waits is not
// available: the caller's writer goroutine writes everything.
func TryWrite(syscall.RawConn, []byte) (int, error) { return 0, nil }
