package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"dce/app/config"
	"dce/app/redistest"
	"dce/app/servertest"
)

// TestClusterDelivery: two servers on one Redis. A broadcast on one
// reaches the clients of both exactly once; each node lists both as live;
// a node that stops leaves the list at once.
func TestClusterDelivery(t *testing.T) {
	url := redistest.Machine(t)
	prefix := fmt.Sprintf("dcetest:%d:", rand.Uint64())
	node := func(name string) func(*config.Config) {
		return func(c *config.Config) {
			c.Cluster.Redis, c.Cluster.Node, c.Redis.Prefix = url, name, prefix
			c.Websocket.RateLimit = 0
		}
	}
	a := start(t, node("a"))
	b := start(t, node("b"))
	onA := servertest.DialWS(t, a.HTTPAddrs()[0])
	onB := servertest.DialWS(t, b.HTTPAddrs()[0])
	for i := range 3 {
		onA.Send(fmt.Sprintf(`srvtest/pushall;{"i":%d}`, i))
	}
	for _, c := range []*servertest.WS{onA, onB} {
		for i := range 3 {
			if got, want := c.Read(), fmt.Sprintf(`broadcast;{"i":%d}`, i); got != want {
				t.Fatalf("got %q; want %q", got, want)
			}
		}
		if extra, err := c.ReadErr(200 * time.Millisecond); err == nil {
			t.Errorf("a broadcast came twice: %q", extra)
		}
	}
	st := a.Status()
	if st.Node != "a" || !slices.Equal(st.ClusterNodes, []string{"a", "b"}) {
		t.Errorf("status: node %q, live nodes %v; want a and [a b]", st.Node, st.ClusterNodes)
	}
	onB.Conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if nodes := a.Status().ClusterNodes; !slices.Equal(nodes, []string{"a"}) {
		t.Errorf("after b stopped: live nodes %v; want [a]", nodes)
	}
}
