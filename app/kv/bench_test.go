package kv

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkSend is the session sample's cost of storing one message: an
// id from the counter, then the append to its view's capped log — on each
// store, from 16 senders at once.
func BenchmarkSend(b *testing.B) {
	file, err := OpenFile(filepath.Join(b.TempDir(), "kv.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer file.Close()
	for _, st := range []struct {
		name string
		s    Store
	}{{"memory", NewMemory()}, {"file", file}} {
		b.Run(st.name, func(b *testing.B) {
			b.SetParallelism(8) // 16 senders on 2 cores
			ctx := context.Background()
			msg := []byte(`{"id":1,"mid":1,"target_mid":0,"message":"hello there","create_time":"2026-12-02 17:49:08","nickname":"Drunk"}`)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id, err := st.s.Next(ctx, "message")
					if err != nil {
						b.Fatal(err)
					}
					if err := st.s.Append(ctx, "group", id, msg, 500); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
	b.Run("file, one sender", func(b *testing.B) { // the latency of a lone message
		ctx := context.Background()
		for i := 0; i < b.N; i++ {
			id, err := file.Next(ctx, "lone")
			if err != nil {
				b.Fatal(err)
			}
			if err := file.Append(ctx, "lone", id, []byte(`{"message":"hi"}`), 500); err != nil {
				b.Fatal(err)
			}
		}
	})
}
