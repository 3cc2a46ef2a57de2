package cluster

import (
	"context"
	"dce/app/redistest"
	"dce/app/wait"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDeadNodeLeaves: a node that stopped beating (killed: it never said
// goodbye) is not listed once dead_after has passed, and the heartbeat of
// the living removes it.
func TestDeadNodeLeaves(t *testing.T) {
	url := redistest.Machine(t)
	prefix := fmt.Sprintf("dcetest:%d:", rand.Uint64())
	c, err := Join(Options{URL: url, Prefix: prefix, Node: "alive", DeadAfter: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	old := float64(time.Now().Add(-2 * time.Second).UnixMilli()) // its last beat, 2 s ago
	if err := c.rdb.Do(ctx, c.rdb.B().Zadd().Key(c.nodesKey()).ScoreMember().ScoreMember(old, "killed").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if nodes, err := c.Nodes(); err != nil || !slices.Equal(nodes, []string{"alive"}) {
		t.Errorf("Nodes = %v %v; want only the living", nodes, err)
	}
	if !wait.Until(5*time.Second, func() bool {
		n, _ := c.rdb.Do(ctx, c.rdb.B().Zcard().Key(c.nodesKey()).Build()).AsInt64()
		return n == 1
	}) {
		t.Fatal("the dead node was never removed from the set")
	}
}

// TestJoinNamesTheURL: a Redis that does not answer is an error naming it.
func TestJoinNamesTheURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	_, err = Join(Options{URL: "redis://127.0.0.1:" + strconv.Itoa(port) + "/0", Node: "x"})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("Join(down) = %v; want an error naming the URL", err)
	}
}

// TestRedisRestart: a private Redis stops under two nodes and starts again
// on the same port: both re-subscribe and beat again by themselves, and a
// broadcast gets through once more.
func TestRedisRestart(t *testing.T) {
	redis := redistest.Start(t)
	got := make(chan Envelope, 16)
	join := func(name string, deliver func(Envelope)) *Cluster {
		c, err := Join(Options{URL: redis.URL(), Prefix: "t:", Node: name, DeadAfter: 3 * time.Second, Deliver: deliver})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	join("a", func(e Envelope) { got <- e })
	b := join("b", nil)
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			_ = b.Publish(Envelope{To: ToAll, Path: "p", Body: []byte(what)})
			select {
			case e := <-got:
				if string(e.Body) == what && e.From == "b" {
					return
				}
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: nothing arrived", what)
			}
		}
	}
	waitFor("before")
	redis.Stop()
	if err := b.Publish(Envelope{To: ToAll, Path: "p"}); err == nil {
		t.Error("a publish without Redis reported success")
	}
	redis.Restart()
	waitFor("after the restart")
	var nodes []string
	if !wait.Until(5*time.Second, func() bool {
		nodes, _ = b.Nodes()
		return slices.Equal(nodes, []string{"a", "b"})
	}) {
		t.Fatalf("live nodes after the restart: %v; want both beating again", nodes)
	}
}

// TestPresence: one node's logins reach the other (as counts per member);
// a node that leaves takes its members with it; after Redis restarts empty,
// each node writes its presence again from memory, and the other node's
// members do not leave meanwhile (no flicker).
func TestPresence(t *testing.T) {
	redis := redistest.Start(t)
	heard := make(chan map[int64]int, 16)
	join := func(name string, hear func(map[int64]int)) *Cluster {
		c, err := Join(Options{URL: redis.URL(), Prefix: "t:", Node: name, DeadAfter: 2 * time.Second, Presence: hear})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := join("a", nil)
	b := join("b", func(m map[int64]int) { heard <- m })
	defer b.Close()
	expect := func(want map[int64]int) {
		t.Helper()
		select {
		case got := <-heard:
			if !maps.Equal(got, want) {
				t.Fatalf("b heard %v, want %v", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("b heard nothing, want %v", want)
		}
	}
	a.SetPlaces(7, 2)
	expect(map[int64]int{7: 2})
	if got := b.RemotePlaces(); !maps.Equal(got, map[int64]int{7: 2}) {
		t.Fatalf("b.RemotePlaces = %v", got)
	}
	a.SetPlaces(7, 1)
	expect(map[int64]int{7: 1})

	redis.Stop()
	redis.Restart() // empty: a must write member 7 again
	var h map[string]string
	if !wait.Until(10*time.Second, func() bool {
		h, _ = b.rdb.Do(context.Background(), b.rdb.B().Hgetall().Key(b.presenceKey("a")).Build()).AsStrMap()
		return h["7"] == "1"
	}) {
		t.Fatalf("a's presence in Redis after the restart: %v; want member 7 at 1 place", h)
	}
	for len(heard) > 0 { // no flicker: member 7 never left b's view during the outage
		if m := <-heard; m[7] == 0 {
			t.Fatalf("b heard %v during the restart; want member 7 kept at its place", m)
		}
	}
	if got := b.RemotePlaces(); !maps.Equal(got, map[int64]int{7: 1}) {
		t.Fatalf("b.RemotePlaces after the restart = %v", got)
	}
	a.Close()
	expect(map[int64]int{7: 0})
}
