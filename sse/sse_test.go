package sse

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// parse is a minimal event-stream parser following the WHATWG rules for
// one event: it returns the id, event type and data of the first event.
func parse(b string) (id, event, data string, ok bool) {
	var lines []string
	for _, line := range strings.Split(b, "\n") {
		if line == "" {
			return id, event, strings.Join(lines, "\n"), lines != nil
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			event = value
		case "data":
			lines = append(lines, value)
		}
	}
	return "", "", "", false
}

func TestAppendEvent(t *testing.T) {
	for _, c := range []struct{ data, want string }{
		{"", "id: 1\ndata: \n\n"},
		{"a", "id: 1\ndata: a\n\n"},
		{"a\nb", "id: 1\ndata: a\ndata: b\n\n"},
		{"a\r\nb\rc\n", "id: 1\ndata: a\ndata: b\ndata: c\ndata: \n\n"},
		{"\xff\x00", "id: 1\ndata: /wA=\n\n"},
	} {
		if got := string(AppendEvent(nil, "1", "", []byte(c.data))); got != c.want {
			t.Errorf("%q: got %q, want %q", c.data, got, c.want)
		}
	}
	if got := string(AppendEvent(nil, "7", "quote", []byte("x"))); got != "id: 7\nevent: quote\ndata: x\n\n" {
		t.Errorf("with event: %q", got)
	}
	if got := string(Reset("h-9", `a"b`)); got != "id: h-9\nevent: push.reset\ndata: {\"last_event_id\":\"a\\\"b\"}\n\n" {
		t.Errorf("reset: %q", got)
	}
}

// FuzzAppendEvent checks that any payload survives a round trip through a
// standard parser: text with line endings normalized to LF, anything else
// as base64.
func FuzzAppendEvent(f *testing.F) {
	for _, s := range []string{"", "a", "a\nb", "a\r\n\r\nb", "\r", "\xff", "data: x\n\nid: 2"} {
		f.Add(s, "ev")
	}
	f.Fuzz(func(t *testing.T, data, event string) {
		if strings.ContainsAny(event, "\r\n") {
			event = ""
		}
		b := string(AppendEvent(nil, "5-1", event, []byte(data)))
		if !strings.HasSuffix(b, "\n\n") || strings.Count(b, "\n\n") != 1 {
			t.Fatalf("event %q is not exactly one event", b)
		}
		id, ev, got, ok := parse(b)
		if !ok || id != "5-1" || ev != event {
			t.Fatalf("parsed %q %q %v from %q", id, ev, ok, b)
		}
		want := strings.ReplaceAll(strings.ReplaceAll(data, "\r\n", "\n"), "\r", "\n")
		if !utf8.ValidString(data) {
			want = base64.StdEncoding.EncodeToString([]byte(data))
		}
		if got != want {
			t.Fatalf("data %q came back as %q", data, got)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"64B", bytes.Repeat([]byte("x"), 64)},
		{"4KiB-lines", bytes.Repeat([]byte("0123456789abcdef\n"), 4096/17)},
		{"1KiB-binary", bytes.Repeat([]byte{0xff, 0}, 512)},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tt.data)))
			var buf []byte
			for i := range b.N {
				buf = AppendEvent(buf[:0], "1sat0obqqb-"+strconv.Itoa(i), "update", tt.data)
			}
		})
	}
}
