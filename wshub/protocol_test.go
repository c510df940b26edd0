package wshub

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/caddy-push/push/hub"
)

func TestDecodeFrame(t *testing.T) {
	for _, tt := range []struct {
		in, err, ref string
	}{
		{`{"type":"subscribe","topics":["a","b/c"],"last_event_id":"x-1","ref":1}`, "", "1"},
		{`{"type":"unsubscribe","topics":["a"]}`, "", ""},
		{`{"type":"publish","topic":"a","event":"e","data":"","ref":"r"}`, "", `"r"`},
		{`{"type":"publish","topic":"a","data_base64":"AP8="}`, "", ""},
		{` {"type":"publish","topic":"a","data":"x"} `, "", ""},
		{`{"type":"publish","topic":"a","data":"x"}{}`, "data after", ""},
		{`{"type":"publish","topic":"a","data_base64":"!!"}`, "data_base64", ""},
		{`{"type":"publish","topic":"a","data":"x","data_base64":"AA=="}`, "one of data", ""},
		{`{"type":"publish","topic":"","data":"x","ref":-2.5}`, "topic", "-2.5"},
		{`{"type":"publish","topic":"a","event":"a\nb","data":"x"}`, "event", ""},
		{`{"type":"publish","topics":["a"],"topic":"a","data":"x"}`, "takes topic", ""},
		{`{"type":"subscribe","topics":[]}`, "needs topics", ""},
		{`{"type":"subscribe","topics":["a b"]}`, "space", ""},
		{`{"type":"unsubscribe","topics":["a"],"last_event_id":"x"}`, "no last_event_id", ""},
		{`{"type":"subscribe","topics":["a"],"last_event_id":"` + strings.Repeat("x", 1025) + `"}`, "longer", ""},
		{`{"type":"subscribe","topics":["a","b","c"]}`, "more than 2", ""},
		{`{"type":"","ref":3}`, "no type", "3"},
		{`{"type":"x","ref":[1]}`, "ref must be", ""},
		{`{"type":"x","ref":"` + strings.Repeat("r", 200) + `"}`, "ref must be", ""},
		{`{"type":1,"ref":4}`, "malformed", "4"},
		{`[]`, "malformed", ""},
		// Never silently changed: invalid UTF-8 and lone surrogates.
		{"{\"type\":\"publish\",\"topic\":\"a\",\"data\":\"\xff\",\"ref\":5}", "UTF-8", ""},
		{"{\"type\":\"subscribe\",\"topics\":[\"a\xc3\"]}", "UTF-8", ""},
		{`{"type":"publish","topic":"a","data":"\ud800","ref":6}`, "surrogate", "6"},
		{`{"type":"publish","topic":"a\udfff","data":"x"}`, "surrogate", ""},
		{`{"type":"subscribe","topics":["a"],"last_event_id":"\udbff","ref":"r"}`, "surrogate", `"r"`},
		{`{"type":"publish","topic":"a","data":"\ud83d\ude00"}`, "", ""},
		// Topic rules: look-alikes and segments a path cleaner changes.
		{`{"type":"subscribe","topics":["news\u200b"]}`, "invisible", ""},
		{`{"type":"publish","topic":"chat/../admin","data":"x"}`, "segment", ""},
		{``, "malformed", ""},
	} {
		f, err := DecodeFrame([]byte(tt.in), 2)
		if tt.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.in, err)
			} else if string(f.Ref) != tt.ref {
				t.Errorf("%s: ref %s, want %s", tt.in, f.Ref, tt.ref)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: error %v, want %q", tt.in, err, tt.err)
			continue
		}
		if ref := string(err.(*FrameError).Ref); ref != tt.ref {
			t.Errorf("%s: error ref %s, want %s", tt.in, ref, tt.ref)
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","topics":["a","b/c"],"last_event_id":"x-1","ref":1}`,
		`{"type":"publish","topic":"a","event":"e","data":"hi","ref":"r"}`,
		`{"type":"publish","topic":"a","data_base64":"AP8="}`,
		`{"type":"unsubscribe","topics":["a"],"ref":-1e3}`,
		`{"ref":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b, 4)
		var ref json.RawMessage
		if err != nil {
			fe, ok := err.(*FrameError)
			if !ok {
				t.Fatalf("error %T", err)
			}
			ref = fe.Ref
			// The answer must be valid JSON whatever the input.
			if !json.Valid(ErrorFrame(ref, err)) {
				t.Fatalf("error frame not JSON for %q", b)
			}
		} else {
			ref = fr.Ref
			switch fr.Type {
			case TypeSubscribe, TypeUnsubscribe:
				if len(fr.Topics) == 0 || len(fr.Topics) > 4 {
					t.Fatalf("%d topics", len(fr.Topics))
				}
				for _, tp := range fr.Topics {
					if hub.ValidTopic(tp) != nil {
						t.Fatalf("invalid topic %q accepted", tp)
					}
				}
			case TypePublish:
				if hub.ValidTopic(fr.Topic) != nil || hub.ValidEvent(fr.Event) != nil {
					t.Fatalf("invalid publish accepted: %+v", fr)
				}
			default:
				t.Fatalf("type %q accepted", fr.Type)
			}
			if !json.Valid(AckFrame(ref, "x-1")) {
				t.Fatalf("ack not JSON for %q", b)
			}
		}
		if ref != nil && (!json.Valid(ref) || len(ref) > maxRefLen) {
			t.Fatalf("ref %q echoed", ref)
		}
	})
}

func TestMessageFrame(t *testing.T) {
	m := &hub.Message{Topic: "t", Data: []byte("<a & b>\n\"q\"")}
	var got map[string]any
	if err := json.Unmarshal(MessageFrame(m), &got); err != nil {
		t.Fatal(err)
	}
	if got["data"] != "<a & b>\n\"q\"" || got["type"] != "message" || got["topic"] != "t" {
		t.Fatalf("got %v", got)
	}
	if _, ok := got["event"]; ok {
		t.Fatal("empty event sent")
	}
	m = &hub.Message{Topic: "t", Event: "e", Data: []byte{0xff, 0}}
	got = nil
	_ = json.Unmarshal(MessageFrame(m), &got)
	if got["data_base64"] != "/wA=" || got["event"] != "e" || got["data"] != nil {
		t.Fatalf("binary: got %v", got)
	}
	if !utf8.Valid(ResetFrame("\xff", "h")) || !json.Valid(ResetFrame("\xff", "h")) {
		t.Fatal("reset frame of an invalid cursor is not valid JSON")
	}
}

// FuzzScanFrame checks that looking at staged client bytes never panics
// and never reports a control frame longer than what is staged, however
// the bytes are split between gorilla's buffer and the staging one.
func FuzzScanFrame(f *testing.F) {
	f.Add(clientFrameBytes(opPing, []byte("hi")), uint8(1), false)
	f.Add(clientFrameBytes(opPong, nil), uint8(0), false)
	f.Add(clientFrameBytes(opText, []byte(`{"type":"subscribe"}`)), uint8(3), true)
	f.Add([]byte{0x89, 0xff, 0, 0, 0, 0, 0, 0, 0, 9}, uint8(2), false)
	f.Fuzz(func(t *testing.T, b []byte, split uint8, failed bool) {
		k := int(split) % (len(b) + 1)
		kind, n, off, _ := scanFrame(b[:k], b[k:], failed)
		switch kind {
		case scanPing, scanPong:
			if n > len(b) || off > n || n-off > 125 {
				t.Fatalf("control frame of %d bytes (payload at %d) in %d staged", n, off, len(b))
			}
			if b[0]&0x80 == 0 || b[1]&0x80 == 0 {
				t.Fatalf("an unfinished or unmasked frame taken as a control frame: % x", b[:2])
			}
		case scanMore:
			if failed {
				t.Fatal("more asked for after the read failed")
			}
		}
	})
}

func clientFrameBytes(op byte, payload []byte) []byte {
	b := []byte{0x80 | op, 0x80 | byte(len(payload)), 1, 2, 3, 4}
	for i, c := range payload {
		b = append(b, c^[]byte{1, 2, 3, 4}[i%4])
	}
	return b
}
