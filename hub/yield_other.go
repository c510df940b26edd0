//go:build !linux

package hub

import "runtime"

// pollYielder lets other goroutines run; only Linux parks in the
// network poller (yield_linux.go).
type pollYielder struct{}

func (*pollYielder) yield() { runtime.Gosched() }
func (*pollYielder) close() {}
