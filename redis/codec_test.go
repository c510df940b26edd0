package redis

import (
	"testing"
)

func TestDecodeBatch(t *testing.T) {
	b, err := decodeBatch("ep\n7\n1700000000123\n4:news0:5:hello6:chat/a3:ev13:x\ny")
	if err != nil {
		t.Fatal(err)
	}
	if b.epoch != "ep" || b.first != 7 || b.last() != 8 || b.time.UnixMilli() != 1700000000123 {
		t.Fatalf("header: %+v", b)
	}
	m0, m1 := b.msgs[0], b.msgs[1]
	if m0.Topic != "news" || m0.Event != "" || string(m0.Data) != "hello" || m0.Seq != 7 {
		t.Fatalf("first message: %+v", m0)
	}
	if m1.Topic != "chat/a" || m1.Event != "ev1" || string(m1.Data) != "x\ny" || m1.Seq != 8 {
		t.Fatalf("second message: %+v", m1)
	}
	for _, bad := range []string{
		"", "ep", "ep\n", "ep\n0\n1\n1:a0:0:", "ep\nx\n1\n1:a0:0:", "ep\n1\nx\n1:a0:0:",
		"ep\n1\n1\n", "ep\n1\n1\n1:a0:", "ep\n1\n1\n9:a0:0:", "ep\n1\n1\n-1:a0:0:",
		"\n1\n1\n1:a0:0:", "ep\n18446744073709551615\n1\n1:a0:0:1:a0:0:",
	} {
		if _, err := decodeBatch(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add("ep\n7\n1700000000123\n4:news0:5:hello6:chat/a3:ev13:x\ny")
	f.Add("ep\n1\n1\n1:a0:0:")
	f.Fuzz(func(t *testing.T, p string) {
		b, err := decodeBatch(p)
		if err != nil {
			return
		}
		if len(b.msgs) == 0 || b.last() < b.first {
			t.Fatalf("decoded an empty or wrapping batch: %+v", b)
		}
		for i, m := range b.msgs {
			if m.Seq != b.first+uint64(i) {
				t.Fatalf("message %d has seq %d", i, m.Seq)
			}
		}
	})
}
