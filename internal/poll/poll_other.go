//go:build !linux

package poll

import "syscall"

// New returns nil: there is no poller here.
func New(syscall.RawConn, func()) *Waiter { return nil }

// Arm is never called: New returns no Waiter.
func (w *Waiter) Arm() error { return ErrUnavailable }

// Shutdown reports false: nothing is ever registered.
func (w *Waiter) Shutdown(bool) bool { return false }

// Done does nothing.
func (w *Waiter) Done() {}

// TryRead is never called: New returns no Waiter.
func (w *Waiter) TryRead([]byte) (int, error) { return 0, ErrUnavailable }

func registered() int { return 0 }
