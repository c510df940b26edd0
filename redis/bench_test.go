package redis

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddy-push/push/hub"
	"github.com/caddy-push/push/internal/redistest"
)

// BenchmarkPublish publishes through a hub on the Redis broker from 8
// goroutines, one message or a batch of 100 per call, and reports the
// call's round trip percentiles and messages a second.
func BenchmarkPublish(b *testing.B) {
	srv := redistest.Start(b)
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			br, err := New(Options{URL: srv.URL(), Prefix: fmt.Sprintf("bench%d:", n)})
			if err != nil {
				b.Fatal(err)
			}
			h, err := hub.New(br, hub.Config{History: 1000}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			data := make([]byte, 64)
			var mu sync.Mutex
			var rtt []time.Duration
			b.SetParallelism(4) // 8 publishers on 2 CPUs
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				msgs := make([]*hub.Message, n)
				var mine []time.Duration
				for pb.Next() {
					for i := range msgs {
						msgs[i] = &hub.Message{Topic: fmt.Sprint("t", i%10), Data: data}
					}
					t0 := time.Now()
					if _, err := h.Publish(context.Background(), msgs...); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				rtt = append(rtt, mine...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			slices.Sort(rtt)
			if len(rtt) > 0 {
				b.ReportMetric(float64(rtt[len(rtt)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(rtt[len(rtt)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(len(rtt)*n)/elapsed.Seconds(), "msgs/s")
			}
		})
	}
}
