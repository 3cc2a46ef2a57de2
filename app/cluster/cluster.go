// Package cluster joins several servers on one Redis (SPEC §10): a
// heartbeat per node in a sorted set, so every node knows which others are
// alive (a node that stops beating is dead after cluster.dead_after), and a
// pub/sub channel that carries each broadcast once to every node, which fans
// it out to its own connections.
//
// Presence (presence.go) rides on both: each node keeps its logged-in
// members in a hash of its own and tells the others of every change, so
// every node knows the whole cluster's online list; a dead node's members
// leave it with the node.
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
	To     string   `json:"t"`           // ToAll, ToMember, ToTopic or ToPresence
	Member int64    `json:"m,omitempty"` // ToMember: whose connections
	Topic  string   `json:"k,omitempty"` // ToTopic: the project's topic
	Path   string   `json:"p,omitempty"`
	Body   []byte   `json:"b,omitempty"`
	Mode   dce.Mode `json:"o,omitempty"`
	Bare   bool     `json:"r,omitempty"`

	// ToPresence: member → login places on the sending node (0: gone);
	// Full replaces everything known of that node.
	Places map[int64]int `json:"l,omitempty"`
	Full   bool          `json:"u,omitempty"`
	Ask    bool          `json:"a,omitempty"` // the others answer with a Full of theirs
}

// Envelope destinations.
const (
	ToAll      = "all"      // every connection
	ToTopic    = "topic"    // the project's own delivery (dce.Hub.Publish)
	ToMember   = "member"   // every connection of Member
	ToPresence = "presence" // not for connections: a node's presence changed
)

// Options configure a node.
type Options struct {
	URL       string        // redis://host:port/db
	Prefix    string        // of every key and channel
	Node      string        // this node's name, unique in the cluster
	DeadAfter time.Duration // a node silent this long is dead
	Log       *slog.Logger
	// Deliver receives what other nodes publish for connections (never
	// this node's own).
	Deliver func(Envelope)
	// Presence receives the new cluster-wide count of login places on the
	// other nodes of each member whose count changed there.
	Presence func(changes map[int64]int)
}

// Cluster is this node's membership.
type Cluster struct {
	o     Options
	rdb   rueidis.Client
	guard *redisconn.Guard // beats, publishes and presence writes fail fast while Redis is down
	url   string
	stop  chan struct{}
	done  sync.WaitGroup

	mu      sync.Mutex
	lastErr time.Time // the last failure logged: at most one line per second

	p presence
}

// Join connects to Redis (an error naming the URL when it does not answer),
// beats, and listens to the other nodes until Close.
func Join(o Options) (*Cluster, error) {
	rdb, err := redisconn.Dial(o.URL, "cluster.redis", false)
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
	c.guard = redisconn.NewGuard(rdb, o.URL, "cluster", errBus, o.Log)
	c.p.init()
	if err := c.beat(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("cluster: Redis at %s: %w", shown, err)
	}
	subscribed := make(chan struct{})
	c.done.Add(3)
	go c.heartbeat()
	go c.listen(subscribed)
	go c.presenceWriter()
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

// errBus wraps the cluster's failures for want of Redis: a 503.
var errBus = &dce.Error{Code: 503, Message: "the cluster's Redis is unavailable, try again"}

// A node beats every DeadAfter/4 and is taken for dead when silent for
// 3/4 of DeadAfter (three missed beats); the living look every DeadAfter/8.
// A killed node's members thus leave every list within 7/8 of DeadAfter.
func (c *Cluster) silentLimit() time.Duration { return c.o.DeadAfter * 3 / 4 }

func (c *Cluster) beat() error {
	now := float64(time.Now().UnixMilli())
	return c.guard.Do(context.Background(), func(ctx context.Context) error {
		return c.rdb.Do(ctx, c.rdb.B().Zadd().Key(c.nodesKey()).ScoreMember().ScoreMember(now, c.o.Node).Build()).Error()
	})
}

// heartbeat beats, and looks for nodes that died or came (presence.go).
func (c *Cluster) heartbeat() {
	defer c.done.Done()
	t := time.NewTicker(c.o.DeadAfter / 8)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if i%2 == 0 {
			if err := c.beat(); err != nil {
				c.logErr("heartbeat", err)
				continue
			}
		}
		c.checkNodes()
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
				c.resync() // what was missed while not subscribed
			},
			OnMessage: func(m rueidis.PubSubMessage) {
				var e Envelope
				if json.Unmarshal([]byte(m.Message), &e) != nil || e.From == c.o.Node {
					return
				}
				switch {
				case e.To == ToPresence:
					c.received(e)
				case c.o.Deliver != nil:
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

// Publish sends e to every other node (one PUBLISH whatever their
// number). While Redis is down it fails at once with a 503 error.
func (c *Cluster) Publish(e Envelope) error {
	e.From = c.o.Node
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	err = c.guard.Do(context.Background(), func(ctx context.Context) error {
		return c.rdb.Do(ctx, c.rdb.B().Publish().Channel(c.channel()).Message(rueidis.BinaryString(b)).Build()).Error()
	})
	if err != nil {
		c.logErr("publish", err)
	}
	return err
}

// Nodes lists the live nodes, this one included, by name.
func (c *Cluster) Nodes() (nodes []string, err error) {
	alive := strconv.FormatInt(time.Now().Add(-c.silentLimit()).UnixMilli(), 10)
	err = c.guard.Do(context.Background(), func(ctx context.Context) error {
		nodes, err = c.rdb.Do(ctx, c.rdb.B().Zrangebyscore().Key(c.nodesKey()).Min(alive).Max("+inf").Build()).AsStrSlice()
		return err
	})
	return nodes, err
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
	_ = c.rdb.Do(ctx, c.rdb.B().Del().Key(c.presenceKey(c.o.Node)).Build()).Error()
	_ = c.Publish(Envelope{To: ToPresence, Full: true})
	cancel()
	c.guard.Close()
}
