package hub

import "unicode/utf8"

// Errors of CheckJSONText; both match ErrInvalid.
var (
	ErrJSONUTF8      = InputError("JSON is not valid UTF-8")
	ErrJSONSurrogate = InputError(`JSON holds a lone UTF-16 surrogate escape (\ud800-\udfff)`)
)

// CheckJSONText reports whether b, a JSON text, would decode to anything
// but what it says: Go's encoding/json silently replaces invalid UTF-8
// and lone surrogate escapes such as "\ud800" with U+FFFD. Call it before
// decoding input that must not be changed on the way in. It does not
// check the JSON syntax: the decoder does.
func CheckJSONText(b []byte) error {
	if !utf8.Valid(b) {
		return ErrJSONUTF8
	}
	inString := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString && i+1 < len(b):
			i++
			if b[i] != 'u' {
				continue
			}
			r, ok := hex4(b, i+1)
			if !ok {
				continue // a syntax error, for the decoder to report
			}
			i += 4
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return ErrJSONSurrogate
			case r >= 0xD800 && r <= 0xDBFF:
				// A high surrogate must be followed by a low one.
				if i+2 >= len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
					return ErrJSONSurrogate
				}
				lo, ok := hex4(b, i+3)
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return ErrJSONSurrogate
				}
				i += 6
			}
		}
	}
	return nil
}

// hex4 reads four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
