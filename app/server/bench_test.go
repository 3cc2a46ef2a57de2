package server_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"dce/app/config"
	"dce/app/dce"
	"dce/app/servertest"
)

// BenchmarkBroadcast pushes one message to N WebSocket clients on loopback
// and waits until every client has read it: one op is one full broadcast.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := servertest.Start(b, root(b), []string{"srvtest"}, func(c *config.Config) {
				c.Websocket.RateLimit = 0
				c.Websocket.WriteCoalesce = 0 // one broadcast at a time: measure the fan-out, not the spacing
			})
			var got atomic.Int64
			var wg sync.WaitGroup
			clients := make([]*websocket.Conn, n)
			for i := range clients {
				c, _, err := websocket.DefaultDialer.Dial("ws://"+s.HTTPAddrs()[0]+"/", nil)
				if err != nil {
					b.Fatal(err)
				}
				clients[i] = c
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if _, _, err := c.NextReader(); err != nil {
							return
						}
						got.Add(1)
					}
				}()
			}
			for s.Status().Connections["websocket"] < n {
				time.Sleep(time.Millisecond)
			}
			m, _ := dce.NewMessage("setMessageList", `[{"id":1,"mid":3,"message":"hi","create_time":"2026-11-25 17:49:08","nickname":"Drunk"}]`, dce.Queue)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				want := got.Load() + int64(n)
				s.Hub().SendAll(m)
				for got.Load() < want {
					time.Sleep(20 * time.Microsecond)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
			for _, c := range clients {
				c.Close()
			}
			wg.Wait()
		})
	}
}
