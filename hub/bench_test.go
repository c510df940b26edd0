package hub

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// fanout subscribes n subscribers to one topic.
func fanout(tb testing.TB, n int) (*Hub, []*Subscription) {
	tb.Helper()
	h, err := New(new(MemoryBroker), Config{Buffer: 16}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	subs := make([]*Subscription, n)
	for i := range subs {
		subs[i], _, err = h.Subscribe([]string{"t"}, SubscribeOptions{})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return h, subs
}

// BenchmarkFanout publishes one message to n subscribers and takes it out
// of every queue, as the subscribers' connections do.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h, subs := fanout(b, n)
			bufs := make([][]*Message, n)
			ctx := context.Background()
			data := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := h.Publish(ctx, &Message{Topic: "t", Data: data}); err != nil {
					b.Fatal(err)
				}
				for i, s := range subs {
					<-s.Ready()
					bufs[i] = s.Take(bufs[i])[:0]
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// TestFanoutAllocatesNothingPerDelivery checks that publishing to many
// subscribers allocates no more than publishing to one.
func TestFanoutAllocatesNothingPerDelivery(t *testing.T) {
	allocs := func(n int) float64 {
		h, subs := fanout(t, n)
		bufs := make([][]*Message, n)
		ctx := context.Background()
		data := make([]byte, 64)
		publish := func() {
			if _, err := h.Publish(ctx, &Message{Topic: "t", Data: data}); err != nil {
				t.Fatal(err)
			}
			for i, s := range subs {
				<-s.Ready()
				bufs[i] = s.Take(bufs[i])[:0]
			}
		}
		// The first two publishes size each queue's two arrays.
		publish()
		publish()
		return testing.AllocsPerRun(200, publish)
	}
	one, many := allocs(1), allocs(1000)
	t.Logf("allocations per publish: %.1f with 1 subscriber, %.1f with 1000", one, many)
	if many > one {
		t.Fatalf("publishing to 1000 subscribers allocates %.1f times, to one %.1f: fan-out allocates per delivery", many, one)
	}
}

// BenchmarkPublishParallel publishes from GOMAXPROCS goroutines, each to
// its own topic with one subscriber, to show what the hub's single lock
// costs publishers that share nothing.
func BenchmarkPublishParallel(b *testing.B) {
	h, err := New(new(MemoryBroker), Config{Buffer: 1 << 20}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	var next atomic.Int64
	ctx := context.Background()
	data := make([]byte, 64)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		topic := fmt.Sprint("t", next.Add(1))
		sub, _, err := h.Subscribe([]string{topic}, SubscribeOptions{})
		if err != nil {
			b.Error(err)
			return
		}
		defer sub.Close()
		var buf []*Message
		for pb.Next() {
			if _, err := h.Publish(ctx, &Message{Topic: topic, Data: data}); err != nil {
				b.Error(err)
				return
			}
			buf = sub.Take(buf)[:0]
		}
	})
}

// BenchmarkPublishParallelCrossShard is BenchmarkPublishParallel with one
// more subscriber, on every publisher's topic: its topics span shards,
// so every publish takes the order lock as well as its shard's.
func BenchmarkPublishParallelCrossShard(b *testing.B) {
	h, err := New(new(MemoryBroker), Config{Buffer: 1 << 20}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	topics := topicsInShards(h, runtime.GOMAXPROCS(0))
	cross, _, err := h.Subscribe(topics, SubscribeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	ctx := context.Background()
	data := make([]byte, 64)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		topic := topics[int(next.Add(1)-1)%len(topics)]
		sub, _, err := h.Subscribe([]string{topic}, SubscribeOptions{})
		if err != nil {
			b.Error(err)
			return
		}
		defer sub.Close()
		var buf, cbuf []*Message
		for pb.Next() {
			if _, err := h.Publish(ctx, &Message{Topic: topic, Data: data}); err != nil {
				b.Error(err)
				return
			}
			buf = sub.Take(buf)[:0]
			cbuf = cross.Take(cbuf)[:0]
		}
	})
	if cross.Err() != nil {
		b.Fatal(cross.Err())
	}
}

// BenchmarkSequenceCounter takes sequence numbers from every goroutine
// at once, as publishes on different shards do: what the counter's cache
// line costs when it moves between cores.
func BenchmarkSequenceCounter(b *testing.B) {
	h, err := New(new(MemoryBroker), Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.seq.Add(1)
		}
	})
}
