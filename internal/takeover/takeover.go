// Package takeover answers a request's head through Caddy's response
// writers and then takes the connection over from net/http.
//
// The head goes through the writer chain, so that Caddy's deferred header
// operations run, net/http writes it (with Date) and Caddy's access log and
// metrics record the status. The connection is then taken from net/http's
// own writer, under Caddy's wrappers: Caddy's hijacked-connection wrapper
// counts bytes without a lock, and the access log reads that count when
// the handler returns, while the connection is still being written.
package takeover

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"reflect"
	"strings"
)

// ErrBuffered is returned when a writer in the chain holds the response
// back (it buffers it, or encodes it): the bytes must go through the
// chain, not around it.
var ErrBuffered = errors.New("response is buffered or encoded by a handler in between")

type unwrapper interface{ Unwrap() http.ResponseWriter }

// Possible reports whether w's connection can be taken over after a
// final (non-1xx) head: its innermost writer can hijack and no encoder
// (Caddy's encode) sits in between, which would have to see the bytes.
func Possible(w http.ResponseWriter) bool {
	_, ok := hijacker(w, false)
	return ok
}

// hijacker returns the innermost writer of w if it can hijack; unless
// viaEncoder, not through an encoder.
func hijacker(w http.ResponseWriter, viaEncoder bool) (http.Hijacker, bool) {
	for {
		if !viaEncoder && encoder(w) {
			return nil, false
		}
		u, ok := w.(unwrapper)
		if !ok {
			h, ok := w.(http.Hijacker)
			return h, ok
		}
		w = u.Unwrap()
	}
}

func encoder(w http.ResponseWriter) bool {
	t := reflect.TypeOf(w)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return strings.HasSuffix(t.PkgPath(), "/caddyhttp/encode")
}

// buffered reports whether a writer in the chain kept the head back:
// Caddy's response recorders say so through Buffered once the header is
// written.
func buffered(w http.ResponseWriter) bool {
	for {
		if b, ok := w.(interface{ Buffered() bool }); ok && b.Buffered() {
			return true
		}
		u, ok := w.(unwrapper)
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
}

// Hijack writes the head with status through w, whose header the caller
// has set, and takes the connection over: net/http writes the head and
// flushes it (a hijack after WriteHeader does), and the connection is
// returned as net/http had it. Nothing may write through w afterwards.
//
// An informational head (101) goes through encoders and buffering
// writers, which pass it on. For a final one, if Possible(w) is false
// Hijack writes nothing and returns http.ErrNotSupported; if the head was
// held back by a writer in between it returns ErrBuffered, and the
// response goes on through w.
func Hijack(w http.ResponseWriter, status int) (net.Conn, *bufio.ReadWriter, error) {
	informational := 100 <= status && status <= 199
	h, ok := hijacker(w, informational)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	w.WriteHeader(status)
	if !informational && buffered(w) {
		return nil, nil, ErrBuffered
	}
	return h.Hijack()
}
