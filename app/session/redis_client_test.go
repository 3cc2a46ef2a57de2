package session

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// BenchmarkRedisClients is how the Redis client was chosen: the store's
// two commonest calls — GETEX (Load, renewing the ttl) and SET PX (Save) —
// through go-redis and rueidis against the machine's Redis, one caller at a
// time (a request's latency) and many at once (a busy server).
//
// go test -run X -bench RedisClients -benchtime 3s ./app/session
func BenchmarkRedisClients(b *testing.B) {
	ctx := context.Background()
	prefix := fmt.Sprintf("dceclient:%d:", time.Now().UnixNano())
	key, val := prefix+"k", []byte(`{"m":7,"d":{"lang":"\"zh\""}}`)

	gr := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer gr.Close()
	if err := gr.Ping(ctx).Err(); err != nil {
		b.Skip(err)
	}
	defer gr.Del(ctx, key)
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}, DisableCache: true})
	if err != nil {
		b.Skip(err)
	}
	defer rc.Close()

	clients := []struct {
		name     string
		set, get func() error
	}{
		{"go-redis",
			func() error { return gr.Set(ctx, key, val, time.Hour).Err() },
			func() error { return gr.GetEx(ctx, key, time.Hour).Err() }},
		{"rueidis",
			func() error {
				return rc.Do(ctx, rc.B().Set().Key(key).Value(string(val)).Px(time.Hour).Build()).Error()
			},
			func() error { return rc.Do(ctx, rc.B().Getex().Key(key).Px(time.Hour).Build()).Error() }},
	}
	for _, c := range clients {
		if err := c.set(); err != nil {
			b.Fatal(c.name, err)
		}
		b.Run(c.name+"/sequential", func(b *testing.B) {
			for b.Loop() {
				if err := c.get(); err != nil {
					b.Fatal(err)
				}
				if err := c.set(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.get(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
