package session_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"dce/app/config"
	"dce/app/servertest"
)

// BenchmarkJoin: b.N pages join one room, one after another, as our page
// does (cookie, signer with delta presence, login). ns/op is one
// newcomer's wait for its own signer; "ms-watcher-sees-all" is how long
// after the last login a watching page's list (whole, then deltas) holds
// everyone.
//
//	go test -run X -bench Join -benchtime 2000x ./project/session
func BenchmarkJoin(b *testing.B) {
	s := servertest.StartEnv(b, root, []string{"session"}, map[string]string{"DCE_SESSION_IM_STORE": "memory"}, func(c *config.Config) {
		c.Websocket.Service = "SessionImServer"
		c.Websocket.RateLimit = 0
	})
	addr := s.HTTPAddrs()[0]
	dial := func() *websocket.Conn {
		h := http.Header{"Cookie": {"dcesid=" + newSID(b)}}
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/session/", h)
		if err != nil {
			b.Fatal(err)
		}
		return ws
	}
	watcher := dial()
	defer watcher.Close()
	online := map[int64]bool{}
	seen := make(chan int, 1024)
	go func() { // the watcher keeps its list as our page does
		for {
			_, f, err := watcher.ReadMessage()
			if err != nil {
				return
			}
			path, body, _ := strings.Cut(string(f), ";")
			switch path {
			case "session/im/login":
				var list []struct{ Mid int64 }
				_ = json.Unmarshal([]byte(body), &list)
				clear(online)
				for _, m := range list {
					online[m.Mid] = true
				}
			case "session/im/presence":
				var ch struct {
					Join  []struct{ Mid int64 }
					Leave []int64
				}
				_ = json.Unmarshal([]byte(body), &ch)
				for _, m := range ch.Join {
					online[m.Mid] = true
				}
				for _, mid := range ch.Leave {
					delete(online, mid)
				}
			default:
				continue
			}
			seen <- len(online)
		}
	}()
	_ = watcher.WriteMessage(websocket.TextMessage, []byte(`session/im/signer;{"presence":"delta"}`))
	var pages []*websocket.Conn
	defer func() {
		for _, p := range pages {
			p.Close()
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := dial()
		pages = append(pages, p)
		_ = p.WriteMessage(websocket.TextMessage, []byte(`session/im/signer;{"presence":"delta"}`))
		_ = p.WriteMessage(websocket.TextMessage, []byte(`session/im/login;{"nickname":"n`+newSID(b)[:12]+`","brief":""}`))
		for {
			_, f, err := p.ReadMessage()
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(string(f), `session/im/signer;{`) {
				break
			}
		}
		go func() { // the page keeps reading, as a browser does
			for {
				if _, _, err := p.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	b.StopTimer()
	last := time.Now()
	for n := range seen {
		if n == b.N {
			break
		}
		if time.Since(last) > 30*time.Second {
			b.Fatalf("the watcher sees %d of %d after 30 s", n, b.N)
		}
	}
	b.ReportMetric(float64(time.Since(last).Milliseconds()), "ms-watcher-sees-all")
}
