// Package cluster joins several servers on one Redis (SPEC §10): a
// heartbeat per node in a sorted set, so every node knows which others are
// alive (a node that stops beating is dead after cluster.dead_after), and a
// pub/sub channel that carries each broadcast once to every node, which fans
// it out to its own connections.
//
// This is the cluster's first part: delivery and liveness. Cluster-wide
// presence and shared chat state build on it.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"dce/app/dce"
	"dce/app/internal/redisconn"
)

// Envelope is one message travelling between nodes.
type Envelope struct {
	From   string   `json:"f"`           // the publishing node
	To     string   `json:"t"`           // ToAll or ToMember
	Member int64    `json:"m,omitempty"` // ToMember: whose connections
	Path   string   `json:"p"`
	Body   []byte   `json:"b"`
	Mode   dce.Mode `json:"o,omitempty"`
	Bare   bool     `json:"r,omitempty"`
}

// Envelope destinations.
const (
	ToAll    = "all"
	ToMember = "member"
)

// Options configure a node.
type Options struct {
	URL       string        // redis://host:port/db
	Prefix    string        // of every key and channel
	Node      string        // this node's name, unique in the cluster
	DeadAfter time.Duration // a node silent this long is dead
	Log       *slog.Logger
	// Deliver receives what other nodes publish (never this node's own).
	Deliver func(Envelope)
}

// Cluster is this node's membership.
type Cluster struct {
	o    Options
	rdb  rueidis.Client
	url  string
	stop chan struct{}
	done sync.WaitGroup

	mu      sync.Mutex
	lastErr time.Time // the last failure logged: at most one line per second
}

// Join connects to Redis (an error naming the URL when it does not answer),
// beats, and listens to the other nodes until Close.
func Join(o Options) (*Cluster, error) {
	rdb, err := redisconn.Dial(o.URL, "cluster.redis", true)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	shown := redisconn.Redact(o.URL)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = 10 * time.Second
	}
	c := &Cluster{o: o, rdb: rdb, url: shown, stop: make(chan struct{})}
	if err := c.beat(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("cluster: Redis at %s: %w", shown, err)
	}
	subscribed := make(chan struct{})
	c.done.Add(2)
	go c.heartbeat()
	go c.listen(subscribed)
	select { // the first subscription is in place before Join returns
	case <-subscribed:
	case <-time.After(2 * time.Second):
	}
	return c, nil
}

// Node is this node's name.
func (c *Cluster) Node() string { return c.o.Node }

func (c *Cluster) nodesKey() string { return c.o.Prefix + "cluster:nodes" }
func (c *Cluster) channel() string  { return c.o.Prefix + "cluster:bus" }

func (c *Cluster) beat() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := float64(time.Now().UnixMilli())
	return c.rdb.Do(ctx, c.rdb.B().Zadd().Key(c.nodesKey()).ScoreMember().ScoreMember(now, c.o.Node).Build()).Error()
}

// heartbeat beats three times per dead_after and drops the dead from the set.
func (c *Cluster) heartbeat() {
	defer c.done.Done()
	t := time.NewTicker(c.o.DeadAfter / 3)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if err := c.beat(); err != nil {
				c.logErr("heartbeat", err)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			dead := strconv.FormatInt(time.Now().Add(-c.o.DeadAfter).UnixMilli(), 10)
			_ = c.rdb.Do(ctx, c.rdb.B().Zremrangebyscore().Key(c.nodesKey()).Min("-inf").Max("("+dead).Build()).Error()
			cancel()
		}
	}
}

// listen receives the other nodes' envelopes, subscribing again (with
// backoff) after Redis drops the connection.
func (c *Cluster) listen(subscribed chan struct{}) {
	defer c.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-c.stop; cancel() }()
	backoff := 100 * time.Millisecond
	var once sync.Once
	for ctx.Err() == nil {
		var ok atomic.Bool // the subscription took: the next failure starts the backoff over
		dc, release := c.rdb.Dedicate()
		wait := dc.SetPubSubHooks(rueidis.PubSubHooks{
			OnSubscription: func(rueidis.PubSubSubscription) {
				once.Do(func() { close(subscribed) })
				ok.Store(true)
			},
			OnMessage: func(m rueidis.PubSubMessage) {
				var e Envelope
				if json.Unmarshal([]byte(m.Message), &e) == nil && e.From != c.o.Node && c.o.Deliver != nil {
					c.o.Deliver(e)
				}
			},
		})
		err := dc.Do(ctx, dc.B().Subscribe().Channel(c.channel()).Build()).Error()
		if err == nil {
			select {
			case err = <-wait:
			case <-ctx.Done():
			}
		}
		release()
		if ctx.Err() != nil {
			return
		}
		if ok.Load() {
			backoff = 100 * time.Millisecond
		}
		c.logErr("subscription", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Publish sends e to every other node (one PUBLISH whatever their number).
func (c *Cluster) Publish(e Envelope) error {
	e.From = c.o.Node
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = c.rdb.Do(ctx, c.rdb.B().Publish().Channel(c.channel()).Message(rueidis.BinaryString(b)).Build()).Error()
	if err != nil {
		c.logErr("publish", err)
	}
	return err
}

// Nodes lists the live nodes, this one included, by name.
func (c *Cluster) Nodes() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	alive := strconv.FormatInt(time.Now().Add(-c.o.DeadAfter).UnixMilli(), 10)
	return c.rdb.Do(ctx, c.rdb.B().Zrangebyscore().Key(c.nodesKey()).Min(alive).Max("+inf").Build()).AsStrSlice()
}

func (c *Cluster) logErr(what string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.lastErr) < time.Second {
		return
	}
	c.lastErr = time.Now()
	c.o.Log.Warn("cluster: "+what+" failed", "redis", c.url, "err", err.Error())
}

// Close leaves the cluster at once (the others see this node gone without
// waiting for dead_after) and stops beating and listening.
func (c *Cluster) Close() {
	close(c.stop)
	c.done.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = c.rdb.Do(ctx, c.rdb.B().Zrem().Key(c.nodesKey()).Member(c.o.Node).Build()).Error()
	cancel()
	c.rdb.Close()
}
