package hub

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckJSONText(t *testing.T) {
	for _, c := range []struct {
		in  string
		err error
	}{
		{`{"topic":"news","data":"caf\u00e9 \ud83d\ude00 ok"}`, nil},
		{`{"data":"\\ud800"}`, nil},        // an escaped backslash, then text
		{`{"data":"\\\ud83d\ude00"}`, nil}, // a backslash, then a pair
		{`{"data":"\"\u0041"}`, nil},       // an escaped quote stays in the string
		{`["\ud800 is in a string"]`, ErrJSONSurrogate},
		{`{"topic":"bad\ud800","data":"x"}`, ErrJSONSurrogate},
		{`{"topic":"bad\udc00","data":"x"}`, ErrJSONSurrogate},
		{`{"data":"\ud83d"}`, ErrJSONSurrogate},
		{`{"data":"\ud83d\u0041"}`, ErrJSONSurrogate},
		{`{"data":"\uD83D\uDE00"}`, nil},
		{"{\"topic\":\"bad\xff\",\"data\":\"x\"}", ErrJSONUTF8},
		{"{\"data\":\"\xed\xa0\x80\"}", ErrJSONUTF8}, // a surrogate encoded as raw UTF-8
		{`{"data":"\u12"}`, nil},                     // bad syntax is the decoder's to report
	} {
		if err := CheckJSONText([]byte(c.in)); !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", c.in, err, c.err)
		}
		if c.err != nil && !errors.Is(CheckJSONText([]byte(c.in)), ErrInvalid) {
			t.Errorf("%s: error does not match ErrInvalid", c.in)
		}
	}
}

// FuzzCheckJSONText: whatever passes decodes to exactly what it says:
// every string the decoder returns is valid UTF-8 and has no U+FFFD that
// the input did not spell.
func FuzzCheckJSONText(f *testing.F) {
	f.Add([]byte(`{"a":"\ud83d\ude00","b":["x\\ud800"]}`))
	f.Add([]byte(`"\ud800"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if CheckJSONText(b) != nil {
			return
		}
		var v any
		if json.Unmarshal(b, &v) != nil {
			return
		}
		var walk func(any)
		walk = func(v any) {
			switch v := v.(type) {
			case string:
				if !utf8.ValidString(v) {
					t.Fatalf("%q decoded to invalid UTF-8", b)
				}
				for _, r := range v {
					if r == utf8.RuneError && !containsReplacement(b) {
						t.Fatalf("%q decoded with a replacement character", b)
					}
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			case map[string]any:
				for k, x := range v {
					walk(k)
					walk(x)
				}
			}
		}
		walk(v)
	})
}

// containsReplacement reports whether b spells U+FFFD itself.
func containsReplacement(b []byte) bool {
	s := string(b)
	return strings.Contains(s, "\uFFFD") || strings.Contains(strings.ToLower(s), `\ufffd`)
}
