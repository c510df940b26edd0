package hub

import (
	"testing"
)

// TestCountsPerKind: subscribers and deliveries are counted per kind of
// subscription, and disconnections by reason.
func TestCountsPerKind(t *testing.T) {
	h := newHub(t, Config{Buffer: 1})
	a, _, err := h.Subscribe([]string{"t"}, SubscribeOptions{Kind: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := h.Subscribe([]string{"t"}, SubscribeOptions{Kind: 2})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := h.Subscribe([]string{"t"}, SubscribeOptions{Kind: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Out of range kinds count as 0.
	d, _, err := h.Subscribe([]string{"other"}, SubscribeOptions{Kind: MaxKinds})
	if err != nil {
		t.Fatal(err)
	}
	st := h.Stats()
	if st.Kinds[0].Subscribers != 1 || st.Kinds[1].Subscribers != 1 || st.Kinds[2].Subscribers != 2 {
		t.Fatalf("subscribers per kind: %+v", st.Kinds)
	}

	pub(t, h, "t", "one")
	a.Take(nil)
	a.Sent(1)
	b.Take(nil)
	b.Sent(1)
	pub(t, h, "t", "two") // c has one queued already: it is cut
	a.Sent(1)
	b.Sent(1)
	d.End(ErrShutdown)
	st = h.Stats()
	if st.Kinds[1].Delivered != 2 || st.Kinds[2].Delivered != 2 || st.Delivered != 4 {
		t.Fatalf("delivered: %d total, per kind %+v", st.Delivered, st.Kinds)
	}
	if st.DroppedSlow != 1 || st.DroppedShutdown != 1 {
		t.Fatalf("dropped: slow %d, shutdown %d; want 1 and 1", st.DroppedSlow, st.DroppedShutdown)
	}
	if st.Kinds[0].Subscribers != 0 || st.Kinds[1].Subscribers != 1 || st.Kinds[2].Subscribers != 1 || st.Subscribers != 2 {
		t.Fatalf("subscribers after the cuts: %d, per kind %+v", st.Subscribers, st.Kinds)
	}
	a.Close()
	b.Close()
	c.Close()
	if st := h.Stats(); st.Kinds[1].Subscribers != 0 || st.Kinds[2].Subscribers != 0 || st.DroppedShutdown != 1 {
		t.Fatalf("after closing: %+v, dropped shutdown %d", st.Kinds, st.DroppedShutdown)
	}
}
