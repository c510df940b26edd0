package wshub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/caddy-push/push/hub"
)

// Client frame types of `format json`.
const (
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypePublish     = "publish"
)

// Server frame types of `format json`.
const (
	TypeMessage = "message"
	TypeReset   = "reset"
	TypeAck     = "ack"
	TypeError   = "error"
)

// maxRefLen bounds the ref a client may attach to a frame.
const maxRefLen = 128

// maxCursorLen bounds the last_event_id of a subscribe frame.
const maxCursorLen = 1024

// Frame is a decoded and checked client frame.
type Frame struct {
	Type string
	// Ref is echoed in the ack or error frame that answers this one: a
	// JSON number or string, or nil.
	Ref json.RawMessage
	// Topics of a subscribe or unsubscribe frame.
	Topics []string
	// LastEventID of a subscribe frame.
	LastEventID string
	// Topic, Event and Data of a publish frame; Data is decoded from
	// data_base64 if that was given.
	Topic string
	Event string
	Data  []byte
}

type wireFrame struct {
	Type        string          `json:"type"`
	Ref         json.RawMessage `json:"ref,omitempty"`
	Topics      []string        `json:"topics,omitempty"`
	LastEventID string          `json:"last_event_id,omitempty"`
	Topic       string          `json:"topic,omitempty"`
	Event       string          `json:"event,omitempty"`
	Data        *string         `json:"data,omitempty"`
	DataBase64  *string         `json:"data_base64,omitempty"`
}

// FrameError is why a client frame was refused, with the frame's ref if
// one could be read.
type FrameError struct {
	Ref json.RawMessage
	Err error
}

func (e *FrameError) Error() string { return e.Err.Error() }

func (e *FrameError) Unwrap() error { return e.Err }

// DecodeFrame parses and checks one client text frame. maxTopics bounds
// the topics of one frame. The error is a *FrameError.
func DecodeFrame(b []byte, maxTopics int) (*Frame, error) {
	// encoding/json would replace invalid UTF-8 and lone surrogate
	// escapes with U+FFFD: refuse them instead.
	if err := hub.CheckJSONText(b); err != nil {
		var ref json.RawMessage
		if !errors.Is(err, hub.ErrJSONUTF8) {
			ref = readRef(b)
		}
		return nil, &FrameError{Ref: ref, Err: err}
	}
	var w wireFrame
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&w)
	if err == nil {
		if _, err = dec.Token(); errors.Is(err, io.EOF) {
			err = nil
		} else if err == nil {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil {
		// Still answer with the ref if the frame has a readable one.
		return nil, &FrameError{Ref: readRef(b), Err: fmt.Errorf("malformed frame: %v", err)}
	}
	f := &Frame{Type: w.Type, Ref: validRef(w.Ref)}
	fail := func(format string, args ...any) (*Frame, error) {
		return nil, &FrameError{Ref: f.Ref, Err: fmt.Errorf(format, args...)}
	}
	if w.Ref != nil && f.Ref == nil {
		return fail("ref must be a number or a string of at most %d bytes", maxRefLen)
	}
	switch w.Type {
	case TypeSubscribe, TypeUnsubscribe:
		if w.Topic != "" || w.Event != "" || w.Data != nil || w.DataBase64 != nil {
			return fail("%s takes topics, not topic, event or data", w.Type)
		}
		if w.Type == TypeUnsubscribe && w.LastEventID != "" {
			return fail("unsubscribe takes no last_event_id")
		}
		if len(w.Topics) == 0 {
			return fail("%s needs topics", w.Type)
		}
		if len(w.Topics) > maxTopics {
			return fail("more than %d topics in one frame", maxTopics)
		}
		for _, t := range w.Topics {
			if err := hub.ValidTopic(t); err != nil {
				return fail("topic %q: %v", t, err)
			}
		}
		if len(w.LastEventID) > maxCursorLen {
			return fail("last_event_id longer than %d bytes", maxCursorLen)
		}
		f.Topics, f.LastEventID = w.Topics, w.LastEventID
	case TypePublish:
		if w.Topics != nil || w.LastEventID != "" {
			return fail("publish takes topic, not topics or last_event_id")
		}
		if err := hub.ValidTopic(w.Topic); err != nil {
			return fail("topic %q: %v", w.Topic, err)
		}
		if err := hub.ValidEvent(w.Event); err != nil {
			return fail("event %q: %v", w.Event, err)
		}
		switch {
		case (w.Data == nil) == (w.DataBase64 == nil):
			return fail("publish needs one of data and data_base64")
		case w.Data != nil:
			f.Data = []byte(*w.Data)
		default:
			d, err := base64.StdEncoding.DecodeString(*w.DataBase64)
			if err != nil {
				return fail("data_base64: %v", err)
			}
			f.Data = d
		}
		f.Topic, f.Event = w.Topic, w.Event
	case "":
		return fail("frame has no type")
	default:
		return fail("unknown frame type %q", w.Type)
	}
	return f, nil
}

// readRef returns the ref of a frame that could not be decoded, if it
// has one that can be echoed.
func readRef(b []byte) json.RawMessage {
	var r struct {
		Ref json.RawMessage `json:"ref"`
	}
	_ = json.Unmarshal(b, &r)
	return validRef(r.Ref)
}

// validRef returns ref if it is a JSON number or string short enough to
// echo, else nil.
func validRef(ref json.RawMessage) json.RawMessage {
	ref = bytes.TrimSpace(ref)
	if len(ref) == 0 || len(ref) > maxRefLen {
		return nil
	}
	switch c := ref[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
		return ref
	}
	return nil
}

// serverFrame is the JSON of every server frame but message frames,
// which appendMessage writes.
type serverFrame struct {
	Type        string          `json:"type"`
	Ref         json.RawMessage `json:"ref,omitempty"`
	ID          string          `json:"id,omitempty"`
	LastEventID *string         `json:"last_event_id,omitempty"`
	Error       string          `json:"error,omitempty"`
}

func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only strings and checked raw JSON go in: this cannot fail.
		panic(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// AckFrame is the answer to a frame that was carried out; id is the ID of
// a published message, or empty.
func AckFrame(ref json.RawMessage, id string) []byte {
	return marshal(serverFrame{Type: TypeAck, Ref: ref, ID: id})
}

// ErrorFrame is the answer to a frame that was refused.
func ErrorFrame(ref json.RawMessage, err error) []byte {
	return marshal(serverFrame{Type: TypeError, Ref: ref, Error: err.Error()})
}

// ResetFrame tells a subscriber that messages after last may have been
// missed; head is the ID after which live messages follow.
func ResetFrame(last, head string) []byte {
	return marshal(serverFrame{Type: TypeReset, LastEventID: &last, ID: head})
}

// MessageFrame is m as a `format json` message frame.
func MessageFrame(m *hub.Message) []byte {
	type messageFrame struct {
		Type       string  `json:"type"`
		ID         string  `json:"id"`
		Topic      string  `json:"topic"`
		Event      string  `json:"event,omitempty"`
		Data       *string `json:"data,omitempty"`
		DataBase64 *string `json:"data_base64,omitempty"`
	}
	f := messageFrame{Type: TypeMessage, ID: m.ID(), Topic: m.Topic, Event: m.Event}
	if utf8.Valid(m.Data) {
		s := string(m.Data)
		f.Data = &s
	} else {
		s := base64.StdEncoding.EncodeToString(m.Data)
		f.DataBase64 = &s
	}
	return marshal(f)
}
