package takeover

import (
	"net"
	"reflect"
	"strings"
	"syscall"
)

// RawConn returns the socket under c, a connection taken over by Hijack,
// for the poller and for writes that never wait (Socket), or nil when c
// is not a plain TCP connection (TLS, a pipe in a test). Caddy's wrapper, which
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
