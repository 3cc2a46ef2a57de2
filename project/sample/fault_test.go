package sample_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"dce/app/config"
	"dce/app/servertest"
	"dce/project/sample/bench"
)

// fastKeepalive pings every 500 ms and drops peers silent for 1 s.
func fastKeepalive(c *config.Config) {
	chatOnly(c)
	c.Websocket.PingInterval = 500 * time.Millisecond
	c.Websocket.PongTimeout = time.Second
	c.Websocket.RateLimit = 0
}

// TestVanishedMemberLeavesList: a member whose client stops answering
// (no close frame, no pong) leaves everyone's online list within a bounded
// time.
func TestVanishedMemberLeavesList(t *testing.T) {
	// The watcher answers pings only while it reads: on a loaded machine
	// (the race detector, other packages' tests beside) a pong can be late
	// by more than the second fastKeepalive allows.
	s := servertest.Start(t, root, []string{"hello", "sample"}, func(c *config.Config) {
		fastKeepalive(c)
		c.Websocket.PongTimeout = 3 * time.Second
	})
	addr := s.HTTPAddrs()[0]
	watcher := servertest.DialWS(t, addr)
	watcher.Send(`sample/im/login;{"nickname":"watcher"}`)
	watcher.ExpectPrefix("setUserList;")
	watcher.ExpectPrefix("setMessageList;")
	ghost := servertest.DialWS(t, addr) // never reads again after login: answers no ping
	ghost.Send(`sample/im/login;{"nickname":"ghost"}`)
	start := time.Now()
	sawGhost := false
	for time.Since(start) < 10*time.Second {
		f := watcher.Read()
		if !strings.HasPrefix(f, "setUserList;") {
			continue
		}
		if strings.Contains(f, `"ghost"`) {
			sawGhost = true
			continue
		}
		if sawGhost {
			t.Logf("ghost left the list %v after logging in", time.Since(start).Round(time.Millisecond))
			return
		}
	}
	t.Fatalf("the vanished member is still listed after 10 s (seen online: %v)", sawGhost)
}

// TestSoakShort is the CI-sized soak: clients connect, chat and leave (some
// vanish) for a few seconds; afterwards the server is back to where it
// started: no connection, goroutine or file left behind.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 20 s")
	}
	s := servertest.Start(t, root, []string{"hello", "sample"}, fastKeepalive)
	status := func() (bench.ServerStatus, error) {
		st := s.Status()
		return bench.ServerStatus{Connections: st.Connections, Memory: st.Memory, CPUSeconds: st.CPUSeconds, Goroutines: st.Goroutines, OpenFiles: st.OpenFiles}, nil
	}
	res, err := bench.Soak(context.Background(), bench.SoakOptions{
		URL: "ws://" + s.HTTPAddrs()[0] + "/", Clients: 150, Churn: 60, Duration: 6 * time.Second, Status: status,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res.Table())
	if res.Sessions < 300 || res.Errors > res.Sessions/50 {
		t.Errorf("%d sessions, %d errors; want hundreds of sessions and almost no errors", res.Sessions, res.Errors)
	}
	if res.OwnLost != 0 || (res.Messages > 0 && res.Deliveries < res.Messages) {
		t.Errorf("%d messages sent, %d deliveries, %d own messages lost; want every message back at its sender", res.Messages, res.Deliveries, res.OwnLost)
	}
	if res.After.Connections != 0 {
		t.Errorf("%d connections left after everyone left", res.After.Connections)
	}
	// The test process holds the clients too; once they are gone the
	// goroutines and files must be back near the baseline.
	if d := res.After.Goroutines - res.Before.Goroutines; d > 10 {
		t.Errorf("goroutines grew by %d (before %d, after %d)", d, res.Before.Goroutines, res.After.Goroutines)
	}
	if d := res.After.OpenFiles - res.Before.OpenFiles; d > 10 {
		t.Errorf("open files grew by %d (before %d, after %d)", d, res.Before.OpenFiles, res.After.OpenFiles)
	}
	if online := s.Hub().Sessions().Online(); len(online) != 0 {
		t.Errorf("%d members still online: %v", len(online), fmt.Sprint(online))
	}
}
