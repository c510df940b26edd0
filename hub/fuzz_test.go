package hub

import (
	"path"
	"testing"
	"unicode"
)

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"", "-", "a-1", "a-b-2", "x-18446744073709551615", "x-18446744073709551616", "earliest"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		epoch, seq, ok := parseID(id)
		if !ok {
			return
		}
		if again := formatID(epoch, seq); again != id {
			// Leading zeros and signs are accepted but not produced; the
			// parsed form must itself round-trip.
			if e2, s2, ok2 := parseID(again); !ok2 || e2 != epoch || s2 != seq {
				t.Fatalf("%q -> %q %d -> %q", id, epoch, seq, again)
			}
		}
	})
}

func FuzzValidTopic(f *testing.F) {
	for _, s := range []string{"", "a", "a b", "chat/lobby", "\x00", "é", "\u2028", "a/./b", "a//b", "\u200b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if ValidTopic(topic) != nil {
			return
		}
		if topic == "" || len(topic) > MaxTopicLen || path.Clean("/"+topic) != "/"+topic {
			t.Fatalf("%q accepted", topic)
		}
		for _, r := range topic {
			if unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) || unicode.IsControl(r) {
				t.Fatalf("%q accepted with %U", topic, r)
			}
		}
	})
}
