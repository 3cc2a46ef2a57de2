package server_test

import (
	"fmt"
	"testing"

	"github.com/gorilla/websocket"

	"dce/app/config"
	"dce/app/servertest"
)

// BenchmarkRoundTrip: 8 WebSocket clients, each a request and its reply at
// a time (PATH:ID;JSON → echo): the request pipeline's cost per message.
func BenchmarkRoundTrip(b *testing.B) {
	s := servertest.Start(b, root(b), []string{"srvtest"}, func(c *config.Config) { c.Websocket.RateLimit = 0 })
	b.SetParallelism(4)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+s.HTTPAddrs()[0]+"/", nil)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		for i := 0; pb.Next(); i++ {
			if err := c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`srvtest/echo:%d;{"k":1}`, i+1))); err != nil {
				b.Error(err)
				return
			}
			if _, _, err := c.ReadMessage(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
