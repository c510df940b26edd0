// Package redisclient compares the two Redis clients the broker could use
// on what the broker does: one script call per publish, and pub/sub
// receive. It is its own module so that neither client is a dependency of
// caddy-push through it.
package redisclient

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// publishScript is the shape of the broker's publish: take sequence
// numbers, append to a stream, publish one message.
const publishScript = `
local seq = redis.call('INCRBY', KEYS[1], 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '1000', seq .. '-0', 'd', ARGV[1])
redis.call('PUBLISH', KEYS[3], seq .. ' ' .. ARGV[1])
return seq`

func startRedis(b *testing.B) string {
	b.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		b.Skip("redis-server not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatal("redis-server did not start")
	return ""
}

var payload = string(make([]byte, 64))

func BenchmarkScript(b *testing.B) {
	addr := startRedis(b)
	ctx := context.Background()
	keys := []string{"b:seq", "b:log", "b:ch"}

	b.Run("rueidis", func(b *testing.B) {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		s := rueidis.NewLuaScript(publishScript)
		b.Run("serial", func(b *testing.B) {
			for b.Loop() {
				if err := s.Exec(ctx, c, keys, []string{payload}).Error(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel", func(b *testing.B) {
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.Exec(ctx, c, keys, []string{payload}).Error(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	})

	b.Run("go-redis", func(b *testing.B) {
		c := goredis.NewClient(&goredis.Options{Addr: addr})
		defer c.Close()
		s := goredis.NewScript(publishScript)
		b.Run("serial", func(b *testing.B) {
			for b.Loop() {
				if err := s.Run(ctx, c, keys, payload).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel", func(b *testing.B) {
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.Run(ctx, c, keys, payload).Err(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	})
}

// BenchmarkPubSubReceive measures the time from PUBLISH to the
// subscriber's callback, one message in flight at a time, and the
// receive cost with many in flight.
func BenchmarkPubSubReceive(b *testing.B) {
	addr := startRedis(b)
	ctx := context.Background()

	b.Run("rueidis", func(b *testing.B) {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		got := make(chan struct{}, 1024)
		var n atomic.Int64
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ready := make(chan struct{})
		go c.Receive(sctx, c.B().Subscribe().Channel("ch").Build(), func(m rueidis.PubSubMessage) {
			if m.Message == "ready" {
				close(ready)
				return
			}
			n.Add(1)
			got <- struct{}{}
		})
		waitReady(b, ready, func() { c.Do(ctx, c.B().Publish().Channel("ch").Message("ready").Build()) })
		pub := func() error { return c.Do(ctx, c.B().Publish().Channel("ch").Message(payload).Build()).Error() }
		runReceive(b, pub, got)
	})

	b.Run("go-redis", func(b *testing.B) {
		c := goredis.NewClient(&goredis.Options{Addr: addr})
		defer c.Close()
		ps := c.Subscribe(ctx, "ch2")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			b.Fatal(err)
		}
		got := make(chan struct{}, 1024)
		go func() {
			for range ps.Channel(goredis.WithChannelSize(1024)) {
				got <- struct{}{}
			}
		}()
		pub := func() error { return c.Publish(ctx, "ch2", payload).Err() }
		runReceive(b, pub, got)
	})
}

func waitReady(b *testing.B, ready chan struct{}, ping func()) {
	for i := 0; ; i++ {
		ping()
		select {
		case <-ready:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if i > 100 {
			b.Fatal("subscription not ready")
		}
	}
}

func runReceive(b *testing.B, pub func() error, got chan struct{}) {
	b.Run("roundtrip", func(b *testing.B) {
		for b.Loop() {
			if err := pub(); err != nil {
				b.Fatal(err)
			}
			<-got
		}
	})
	b.Run("back-to-back", func(b *testing.B) {
		done := make(chan struct{})
		go func() {
			for i := 0; i < b.N; i++ {
				<-got
			}
			close(done)
		}()
		for i := 0; i < b.N; i++ {
			if err := pub(); err != nil {
				b.Fatal(err)
			}
		}
		<-done
	})
}
