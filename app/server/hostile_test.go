package server_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"dce/app/config"
	"dce/app/server"
	"dce/app/servertest"
)

// TestHostileClientDoesNotDisturbOthers: one client sends every kind of bad
// input while another keeps a conversation; the other's answers never change.
func TestHostileClientDoesNotDisturbOthers(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Websocket.MaxFrameBytes = 4096 })
	addr := s.HTTPAddrs()[0]
	good := servertest.DialWS(t, addr)
	bad := []func(*websocket.Conn) error{
		func(c *websocket.Conn) error { return c.WriteMessage(websocket.TextMessage, []byte("no separator")) },
		func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, []byte("srvtest/echo:abc;{}"))
		},
		func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, []byte("srvtest/echo:99999999999999999999;{}"))
		},
		func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, []byte(`srvtest/echo:1;{"broken":`))
		},
		func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, []byte(`srvtest/echo:2;{"a":[1,{"b":null}]}`))
		},
		func(c *websocket.Conn) error { return c.WriteMessage(websocket.BinaryMessage, []byte{0, 1, 2}) },
		func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, []byte("srvtest/nothing:3;{}"))
		},
		func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, []byte("srvtest/page:4;{}"))
		},
		func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, []byte("srvtest/boom:5;{}"))
		},
		func(c *websocket.Conn) error { return c.WriteMessage(websocket.PingMessage, []byte("x")) },
		func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, []byte("srvtest/echo;\xff\xfe"))
		}, // closes 1007
		func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 10000)))
		}, // closes 1009
		func(c *websocket.Conn) error {
			return c.WriteControl(websocket.CloseMessage, []byte{0x03}, time.Now().Add(time.Second))
		}, // malformed close
	}
	for round := 0; round < 3; round++ {
		for i, send := range bad {
			h, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = send(h)
			_ = send(h)
			h.Close()
			id := round*100 + i
			good.Send(fmt.Sprintf(`srvtest/echo:%d;{"n":%d}`, id, id))
			good.Expect(fmt.Sprintf(`srvtest/echo:%d;{"data":{"echo":{"n":%d},"transport":"websocket"}}`, id, id))
		}
	}
	// Raw garbage on the TCP and HTTP ports.
	tc := servertest.DialTCP(t, servertest.Sock(t, s, "tcp"))
	tc.Write([]byte("\x00\x01\x02\xff\n;;;\n:\n" + strings.Repeat("z", 9000) + "\n"))
	tc.Send(`srvtest/echo:7;{}`)
	got := tc.Read()
	for !strings.HasPrefix(got, "srvtest/echo:7;") {
		got = tc.Read()
	}
	good.Send(`srvtest/echo:999;{}`)
	good.ExpectPrefix(`srvtest/echo:999;{"data"`)
}

// TestFloodKeepsOthersFast: a few clients flood as fast as they can; the
// rate limit answers them with 429 and closes them, and a normal client's
// round trips stay fast meanwhile.
func TestFloodKeepsOthersFast(t *testing.T) {
	s := start(t, nil) // default limits: 200 messages/s, burst 400
	addr := s.HTTPAddrs()[0]
	giveUp := time.Now().Add(2 * servertest.Timeout) // a flooder the server never closes stops here
	type outcome struct {
		refused   int // 429 replies
		closeCode int
	}
	done := make(chan outcome)
	for f := 0; f < 3; f++ {
		go func() {
			var out outcome
			read := make(chan struct{})
			defer func() { <-read; done <- out }()
			c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
			if err != nil {
				close(read)
				return
			}
			defer c.Close()
			go func() {
				defer close(read)
				for {
					_ = c.SetReadDeadline(time.Now().Add(2 * servertest.Timeout))
					_, b, err := c.ReadMessage()
					if err != nil {
						if ce, ok := err.(*websocket.CloseError); ok {
							out.closeCode = ce.Code
						}
						return
					}
					if strings.Contains(string(b), `"code":429`) {
						out.refused++
					}
				}
			}()
			for time.Now().Before(giveUp) {
				if c.WriteMessage(websocket.TextMessage, []byte(`srvtest/pushall;{"flood":true}`)) != nil {
					return // closed for its rate
				}
			}
		}()
	}
	good := servertest.DialWS(t, addr)
	var rtts []time.Duration
	for i := 0; i < 40; i++ {
		t0 := time.Now()
		good.Send(fmt.Sprintf(`srvtest/echo:%d;{}`, i))
		for !strings.HasPrefix(good.Read(), fmt.Sprintf("srvtest/echo:%d;", i)) {
		}
		rtts = append(rtts, time.Since(t0))
		time.Sleep(10 * time.Millisecond) // pacing of the normal client, not a wait for the server
	}
	for f := 0; f < 3; f++ {
		out := <-done
		if out.refused == 0 || out.closeCode != websocket.ClosePolicyViolation {
			t.Errorf("a flooder got %d 429 replies and close %d; want 429s, then close 1008", out.refused, out.closeCode)
		}
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	if med := rtts[len(rtts)/2]; med > 100*time.Millisecond {
		t.Errorf("median round trip %v under flood; want under 100 ms (all: %v)", med, rtts)
	}
}

// TestControlSocketRefusesOtherUsers runs a client as user nobody: it gets
// nothing from the server's control socket.
func TestControlSocketRefusesOtherUsers(t *testing.T) {
	if dir := os.Getenv("DCE_CONTROL_PROBE"); dir != "" { // the child, as nobody
		out, err := server.Control(dir, "status")
		fmt.Printf("probe: %q %v\n", out, err)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	s := start(t, nil)
	dir, err := os.MkdirTemp("", "dce-control-") // directly in /tmp: user nobody can reach it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.ListenControl(dir); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	bin := filepath.Join(dir, "probe.test")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestControlSocketRefusesOtherUsers$")
	cmd.Env = append(os.Environ(), "DCE_CONTROL_PROBE="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `probe: ""`) || strings.Contains(string(out), "connections") {
		t.Errorf("another user reached the control socket:\n%s", out)
	}
	if st, _ := server.Control(dir, "status"); !strings.Contains(st, "connections") {
		t.Errorf("the owner cannot use the control socket: %q", st)
	}
}

// TestStopDuringBroadcast: shutting down while broadcasts are queued
// flushes them, and every client gets close 1001.
func TestStopDuringBroadcast(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Websocket.RateLimit = 0 })
	addr := s.HTTPAddrs()[0]
	const n = 20
	counts := make(chan [2]int, n)
	for i := 0; i < n; i++ {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			got, code := 0, 0
			for {
				_ = c.SetReadDeadline(time.Now().Add(servertest.Timeout))
				_, b, err := c.ReadMessage()
				if err != nil {
					if ce, ok := err.(*websocket.CloseError); ok {
						code = ce.Code
					}
					break
				}
				if strings.HasPrefix(string(b), "broadcast;") {
					got++
				}
			}
			counts <- [2]int{got, code}
		}()
	}
	waitFor(t, "every client connected", func() bool { return s.Status().Connections["websocket"] >= n })
	sender := servertest.DialWS(t, addr)
	for i := 0; i < 300; i++ {
		sender.Send(fmt.Sprintf(`srvtest/pushall;{"i":%d}`, i))
	}
	// Stop while pushes are still on their way: some broadcasts queued.
	waitFor(t, "broadcasts queued", func() bool { return s.Status().Pushes >= 10*(n+1) })
	sender.Conn.Close() // it reads nothing: the stop would wait out its close grace
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	lo, hi := 1<<30, 0
	for i := 0; i < n; i++ {
		r := <-counts
		if r[1] != websocket.CloseGoingAway {
			t.Errorf("a client ended with close %d; want 1001", r[1])
		}
		lo, hi = min(lo, r[0]), max(hi, r[0])
	}
	if lo == 0 || hi-lo > 1 {
		t.Errorf("clients got between %d and %d broadcasts; want each what was queued (the same, give or take the one in flight)", lo, hi)
	}
}
