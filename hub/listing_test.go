package hub

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestTopicsAfterPages(t *testing.T) {
	h := newHub(t, Config{})
	const n = listChunk + 17
	var want []string
	for i := range n {
		name := fmt.Sprintf("t/%05d", i)
		want = append(want, name)
		pub(t, h, name, "x")
	}
	slices.Sort(want)
	for _, limit := range []int{3, 100, listChunk, n, n + 1} {
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			if pages > n {
				t.Fatalf("limit %d: paging does not end", limit)
			}
			page := h.TopicsAfter(after, limit)
			if len(page) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			for _, ti := range page {
				if ti.Retained != 1 || ti.LastID == "" {
					t.Fatalf("%+v", ti)
				}
				got = append(got, ti.Topic)
			}
			if len(page) < limit {
				break
			}
			after = page[len(page)-1].Topic
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: %d topics, want %d, or out of order", limit, len(got), len(want))
		}
	}
	if l := h.TopicsAfter("t/00005", 2); len(l) != 2 || l[0].Topic != "t/00006" || l[1].Topic != "t/00007" {
		t.Fatalf("after t/00005: %+v", l)
	}
	if l := h.TopicsAfter("u", 10); len(l) != 0 {
		t.Fatalf("after the last: %+v", l)
	}
}

// TestTopicsAfterWhileTopicsChange lists while other goroutines create and
// remove topics; run with -race. Topics that live throughout are always
// listed.
func TestTopicsAfterWhileTopicsChange(t *testing.T) {
	h := newHub(t, Config{History: -1})
	var stable []*Subscription
	for i := range 50 {
		s, _, err := h.Subscribe([]string{fmt.Sprintf("stable/%02d", i)}, SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stable = append(stable, s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				// Without history, a topic with no subscriber is removed
				// as soon as it is published to.
				_, _ = h.Publish(ctx, &Message{Topic: fmt.Sprintf("churn/%d/%d", w, i)})
				s, _, err := h.Subscribe([]string{fmt.Sprintf("sub/%d/%d", w, i%5000)}, SubscribeOptions{})
				if err == nil {
					s.Close()
				}
			}
		})
	}
	for lists := 0; lists < 20 || h.Stats().Published < 20000; lists++ {
		n := 0
		for _, ti := range h.TopicsAfter("", MaxTopicLen) {
			if len(ti.Topic) > 7 && ti.Topic[:7] == "stable/" {
				n++
			}
		}
		if n != len(stable) {
			cancel()
			wg.Wait()
			t.Fatalf("listed %d of %d stable topics", n, len(stable))
		}
	}
	cancel()
	wg.Wait()
}
