//go:build !unix

package wshub

import "syscall"

// waitReadable returns at once where a read that only waits is not
// available: the read loop waits in gorilla's reader.
func waitReadable(syscall.RawConn) error { return nil }
