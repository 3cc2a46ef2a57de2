package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"dce/app/redistest"
	"dce/app/wait"
)

// chatClient is one chat user on a node, over WebSocket or TCP, speaking
// the sample's protocol as the original page does. Frames go to a channel
// read by the test.
type chatClient struct {
	name   string
	send   func(frame string) error
	frames chan string
	close  func()
}

func dialChat(t *testing.T, name, transport, addr string) *chatClient {
	t.Helper()
	c := &chatClient{name: name, frames: make(chan string, 4096)}
	switch transport {
	case "ws":
		return dialWS(t, name, "ws://"+addr+"/", nil)
	case "tcp":
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		c.send = func(f string) error {
			mu.Lock()
			defer mu.Unlock()
			_, err := nc.Write([]byte(f + "\n"))
			return err
		}
		c.close = func() { nc.Close() }
		go func() {
			defer close(c.frames)
			r := bufio.NewReaderSize(nc, 1<<20)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				c.frames <- strings.TrimRight(line, "\n")
			}
		}()
	}
	t.Cleanup(c.close)
	return c
}

// dialWS opens a WebSocket client at url with header (a cookie).
func dialWS(t *testing.T, name, url string, header http.Header) *chatClient {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		t.Fatal(err)
	}
	c := &chatClient{name: name, frames: make(chan string, 4096)}
	var mu sync.Mutex
	c.send = func(f string) error {
		mu.Lock()
		defer mu.Unlock()
		return ws.WriteMessage(websocket.TextMessage, []byte(f))
	}
	c.close = func() { ws.Close() }
	go func() {
		defer close(c.frames)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			c.frames <- string(b)
		}
	}()
	t.Cleanup(c.close)
	return c
}

// next returns the next frame with prefix, failing after timeout.
func (c *chatClient) next(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatalf("%s: connection closed while waiting for %q", c.name, prefix)
			}
			if strings.HasPrefix(f, prefix) {
				return f
			}
		case <-deadline:
			t.Fatalf("%s: no %q within %v", c.name, prefix, timeout)
		}
	}
}

// waitList waits for a setUserList naming exactly want.
func (c *chatClient) waitList(t *testing.T, timeout time.Duration, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	slices.Sort(want)
	var got []string
	for time.Since(start) < timeout {
		f := c.next(t, "setUserList;", timeout-time.Since(start))
		var list []struct{ Nickname string }
		if err := json.Unmarshal([]byte(strings.TrimPrefix(f, "setUserList;")), &list); err != nil {
			t.Fatalf("%s: %v in %s", c.name, err, f)
		}
		got = got[:0]
		for _, m := range list {
			got = append(got, m.Nickname)
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return time.Since(start)
		}
	}
	t.Fatalf("%s: online list %v, want %v", c.name, got, want)
	return 0
}

type chatMessage struct {
	ID       int64  `json:"id"`
	Message  string `json:"message"`
	Nickname string `json:"nickname"`
}

func messages(t *testing.T, frame string) []chatMessage {
	var ms []chatMessage
	if err := json.Unmarshal([]byte(strings.TrimPrefix(frame, "setMessageList;")), &ms); err != nil {
		t.Fatalf("%v in %s", err, frame)
	}
	return ms
}

// clusterApp is a copy of the checkout, built, for cluster nodes.
func clusterApp(t *testing.T) (dir string, ports []int) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and runs servers")
	}
	dir, ports = copyApp(t)
	if _, code := dce(t, dir, "routes"); code != 0 {
		t.Fatal("./dce routes failed")
	}
	return dir, ports
}

// startNode runs one cluster node of dir on port.
func startNode(t *testing.T, dir string, port int, redis string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	return startLimited(t, dir, 4096, []string{"DCE_CLUSTER_REDIS=" + redis, "DCE_CLUSTER_DEAD_AFTER=3s"}, "-port", strconv.Itoa(port))
}

// TestClusterThreeNodes: three node processes of one checkout on one
// (private) Redis. Clients on every node, over WebSocket and TCP, see one
// online list; every message reaches every client exactly once, in its
// sender's order. A node killed with SIGKILL leaves no ghost: its member
// leaves every list within cluster.dead_after, the others keep chatting,
// and its user reconnects to another node and finds what it missed.
func TestClusterThreeNodes(t *testing.T) {
	dir, ports := clusterApp(t)
	redis := redistest.Start(t)
	web := []int{ports[0], ports[0] + 10, ports[0] + 20}
	tcp := []int{ports[2], ports[2] + 10, ports[2] + 20}
	var nodes []*exec.Cmd
	for _, p := range web {
		cmd, _ := startNode(t, dir, p, redis.URL())
		nodes = append(nodes, cmd)
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	clients := []*chatClient{
		dialChat(t, "alice", "ws", addr(web[0])),
		dialChat(t, "bob", "ws", addr(web[1])),
		dialChat(t, "carol", "ws", addr(web[2])),
		dialChat(t, "dave", "tcp", addr(tcp[1])),
	}
	names := []string{"alice", "bob", "carol", "dave"}
	for _, c := range clients {
		if err := c.send(`sample/im/login;{"nickname":"` + c.name + `","brief":"on a node"}`); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		c.waitList(t, 10*time.Second, names...)
	}

	// Everyone sends; everyone gets everything once, in each sender's order.
	const each = 25
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_ = c.send(fmt.Sprintf(`sample/im/send;{"message":"%s %d"}`, c.name, i))
			}
		}()
	}
	wg.Wait()
	for _, c := range clients {
		seen := map[string]int{} // sender → next number expected
		ids := map[int64]bool{}
		for got := 0; got < each*len(clients); {
			for _, m := range messages(t, c.next(t, "setMessageList;", 10*time.Second)) {
				if ids[m.ID] {
					t.Fatalf("%s got message %d twice", c.name, m.ID)
				}
				ids[m.ID] = true
				var n int
				fmt.Sscanf(strings.TrimPrefix(m.Message, m.Nickname+" "), "%d", &n)
				if n != seen[m.Nickname] {
					t.Fatalf("%s: from %s got %q, want number %d next", c.name, m.Nickname, m.Message, seen[m.Nickname])
				}
				seen[m.Nickname]++
				got++
			}
		}
	}

	// Node 3 dies without a word: carol leaves every list within dead_after.
	if err := nodes[2].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = nodes[2].Wait()
	killed := time.Now()
	for _, c := range []*chatClient{clients[0], clients[1], clients[3]} {
		c.waitList(t, 6*time.Second, "alice", "bob", "dave")
	}
	gone := time.Since(killed)
	t.Logf("carol left every list %v after her node was killed (dead_after 3s)", gone.Round(time.Millisecond))
	if gone > 3*time.Second+500*time.Millisecond {
		t.Errorf("carol left the lists %v after the kill; want within dead_after (3 s)", gone)
	}
	// The others keep chatting, and carol finds on node 1 what she missed.
	_ = clients[0].send(`sample/im/send;{"message":"while carol was away"}`)
	for _, c := range []*chatClient{clients[1], clients[3]} {
		if f := c.next(t, "setMessageList;", 5*time.Second); !strings.Contains(f, "while carol was away") {
			t.Fatalf("%s: %s", c.name, f)
		}
	}
	carol := dialChat(t, "carol", "ws", addr(web[0]))
	_ = carol.send(`sample/im/login;{"nickname":"carol"}`)
	carol.next(t, "setUserList;", 5*time.Second)
	history := messages(t, carol.next(t, "setMessageList;", 5*time.Second))
	if len(history) == 0 || history[len(history)-1].Message != "while carol was away" {
		t.Fatalf("carol's history on node 1 ends with %+v; want the message she missed", history[max(0, len(history)-1):])
	}
	clients[1].waitList(t, 5*time.Second, names...)

	out, code := dce(t, dir, "websocket", "status", "-port", strconv.Itoa(web[1]))
	var st struct {
		Node         string   `json:"node"`
		ClusterNodes []string `json:"cluster_nodes"`
	}
	if err := json.Unmarshal([]byte(out[max(0, strings.Index(out, "{")):]), &st); code != 0 || err != nil || len(st.ClusterNodes) != 2 || !slices.Contains(st.ClusterNodes, st.Node) {
		t.Errorf("status of node 2 after node 3 died (want it and node 1 live): exit %d %v\n%s", code, err, out)
	}
}

// TestClusterRedisRestart: Redis stops under two nodes and starts again.
// Meanwhile every connection stays open and a message is refused with a
// 503 reply, never dropped in silence; afterwards the nodes chat again, and
// a node started after the restart sees the whole online list (presence
// written again from the nodes' memory).
func TestClusterRedisRestart(t *testing.T) {
	dir, ports := clusterApp(t)
	redis := redistest.StartPersistent(t)
	web := []int{ports[0], ports[0] + 10, ports[0] + 20}
	startNode(t, dir, web[0], redis.URL())
	startNode(t, dir, web[1], redis.URL())
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	alice := dialChat(t, "alice", "ws", addr(web[0]))
	bob := dialChat(t, "bob", "tcp", addr(ports[2]+10))
	_ = alice.send(`sample/im/login;{"nickname":"alice"}`)
	_ = bob.send(`sample/im/login;{"nickname":"bob"}`)
	alice.waitList(t, 10*time.Second, "alice", "bob")

	redis.Stop()
	_ = alice.send(`sample/im/send:7;{"message":"during the outage"}`)
	if f := alice.next(t, "sample/im/send:7;", 5*time.Second); !strings.Contains(f, `"code":503`) {
		t.Fatalf("a message during the outage got %s; want a 503 reply", f)
	}
	redis.Restart()
	// The nodes reconnect by themselves; a send succeeds again and reaches
	// the other node.
	i := 7
	if !wait.Until(15*time.Second, func() bool {
		i++
		_ = alice.send(fmt.Sprintf(`sample/im/send:%d;{"message":"after %d"}`, i, i))
		return !strings.Contains(alice.next(t, fmt.Sprintf("sample/im/send:%d;", i), 5*time.Second), `"code":503`)
	}) {
		t.Fatal("sends are still refused 15 s after Redis came back")
	}
	for !strings.Contains(bob.next(t, "setMessageList;", 5*time.Second), fmt.Sprintf("after %d", i)) {
	}
	for _, c := range []*chatClient{alice, bob} {
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatalf("%s was disconnected by the outage", c.name)
			}
			_ = f
		default:
		}
	}
	startNode(t, dir, web[2], redis.URL())
	carol := dialChat(t, "carol", "ws", addr(web[2]))
	_ = carol.send(`sample/im/login;{"nickname":"carol"}`)
	carol.waitList(t, 10*time.Second, "alice", "bob", "carol")
}
