package takeover

import (
	"net"
	"reflect"
	"strings"
	"syscall"
	"time"
)

// RawConn returns the socket under c, a connection taken over by Hijack,
// for writes that must never wait (see TryWrite), or nil when c is not a
// plain TCP connection (TLS, a pipe in a test). Caddy's wrapper, which
// only counts bytes for the access log written at connect, is looked
// through.
func RawConn(c net.Conn) syscall.RawConn {
	for range 4 {
		switch t := c.(type) {
		case *net.TCPConn:
			rc, err := t.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		case *net.UnixConn:
			rc, err := t.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		}
		inner, ok := caddyConn(c)
		if !ok {
			return nil
		}
		c = inner
	}
	return nil
}

// caddyConn returns the connection Caddy's hijacked-connection wrapper
// embeds. Only that wrapper is looked through: another one (TLS) may
// transform the bytes.
func caddyConn(c net.Conn) (net.Conn, bool) {
	v := reflect.ValueOf(c)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil, false
	}
	v = v.Elem()
	t := v.Type()
	if t.Kind() != reflect.Struct || !strings.HasSuffix(t.PkgPath(), "/caddyhttp") {
		return nil, false
	}
	f, ok := t.FieldByName("Conn")
	if !ok || !f.Anonymous || f.Type != reflect.TypeFor[net.Conn]() {
		return nil, false
	}
	inner, ok := v.FieldByIndex(f.Index).Interface().(net.Conn)
	return inner, ok && inner != nil
}

// TryWritePending writes what of b the socket takes now (TryWrite),
// unless pending holds something already, and returns pending with what
// is left of b appended, and how many bytes went out. A write deadline
// that has passed fails even a write that would not wait: it is cleared
// first, on conn and in *deadline, and the next write that may wait sets
// a new one. b may be a shared encoding or a pooled buffer: pending gets
// a copy.
func TryWritePending(conn net.Conn, raw syscall.RawConn, deadline *time.Time, pending, b []byte) (n int, rest []byte, err error) {
	if len(pending) == 0 {
		if !deadline.IsZero() && time.Until(*deadline) <= 0 {
			*deadline = time.Time{}
			if err := conn.SetWriteDeadline(*deadline); err != nil {
				return 0, pending, err
			}
		}
		if n, err = TryWrite(raw, b); err != nil {
			return 0, pending, err
		}
	}
	if n < len(b) {
		pending = append(pending, b[n:]...)
	}
	return n, pending, nil
}
