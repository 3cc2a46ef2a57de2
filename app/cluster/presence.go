package cluster

import (
	"context"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// presence is what this node knows of who is logged in where. Its own
// counts go to Redis (the hash PREFIX cluster:presence:NODE, member →
// places) and, as one envelope per batch of changes, to the other nodes;
// theirs come back the same way. The hash is read when a node appears (a
// new node, one back after a Redis outage) and after every (re)subscription,
// so nothing missed while away stays missed.
type presence struct {
	mu     sync.Mutex
	own    map[int64]int // this node's places per member
	dirty  map[int64]bool
	full   bool // write and announce everything (after a (re)subscription, or when asked)
	ask    bool // with the next full announcement, ask the others for theirs
	wake   chan struct{}
	remote map[string]map[int64]int // node → member → places
	live   map[string]bool          // the nodes seen alive at the last check
	seen   map[string]time.Time     // when each other node last showed it lives (a beat, an envelope)
}

func (p *presence) init() {
	p.own, p.dirty = map[int64]int{}, map[int64]bool{}
	p.remote, p.live, p.seen = map[string]map[int64]int{}, map[string]bool{}, map[string]time.Time{}
	p.wake = make(chan struct{}, 1)
}

func (c *Cluster) presenceKey(node string) string { return c.o.Prefix + "cluster:presence:" + node }

// SetPlaces records that member is logged in at places connections of
// this node (0: none). It never waits for Redis: a writer sends the
// changes, batched, in order.
func (c *Cluster) SetPlaces(member int64, places int) {
	p := &c.p
	p.mu.Lock()
	if places > 0 {
		p.own[member] = places
	} else {
		delete(p.own, member)
	}
	p.dirty[member] = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// resync has the writer rewrite this node's hash and announce all of it,
// asking every other node to announce all of theirs: after a
// (re)subscription, what was missed meanwhile is replaced, not patched.
func (c *Cluster) resync() {
	c.p.mu.Lock()
	c.p.full, c.p.ask = true, true
	c.p.mu.Unlock()
	select {
	case c.p.wake <- struct{}{}:
	default:
	}
}

// presenceWriter writes this node's changes to its hash and publishes them,
// one batch at a time. A batch that fails is kept for the next try.
func (c *Cluster) presenceWriter() {
	defer c.done.Done()
	p := &c.p
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-p.wake:
		case <-retry.C:
		}
		p.mu.Lock()
		full, ask := p.full, p.ask
		batch := make(map[int64]int, len(p.dirty))
		if full {
			maps.Copy(batch, p.own)
		} else {
			for m := range p.dirty {
				batch[m] = p.own[m]
			}
		}
		p.dirty, p.full, p.ask = map[int64]bool{}, false, false
		p.mu.Unlock()
		if len(batch) == 0 && !full {
			continue
		}
		if err := c.writePresence(batch, full, ask); err != nil {
			c.logErr("presence", err)
			p.mu.Lock() // try again: everything, since what failed is unknown
			p.full = true
			p.ask = p.ask || ask
			p.mu.Unlock()
			retry.Reset(200 * time.Millisecond)
		}
	}
}

func (c *Cluster) writePresence(batch map[int64]int, full, ask bool) error {
	key := c.presenceKey(c.o.Node)
	err := c.guard.Do(context.Background(), func(ctx context.Context) error {
		cmds := c.rdb.B()
		var set []string
		var del []string
		for m, n := range batch {
			if n > 0 {
				set = append(set, strconv.FormatInt(m, 10), strconv.Itoa(n))
			} else {
				del = append(del, strconv.FormatInt(m, 10))
			}
		}
		// One MULTI: a node reading this hash meanwhile sees the old or the
		// new members, never an emptied hash.
		todo := rueidis.Commands{cmds.Multi().Build()}
		if full {
			todo = append(todo, cmds.Del().Key(key).Build())
		} else if len(del) > 0 {
			todo = append(todo, cmds.Hdel().Key(key).Field(del...).Build())
		}
		if len(set) > 0 {
			fv := cmds.Hset().Key(key).FieldValue()
			for i := 0; i < len(set); i += 2 {
				fv = fv.FieldValue(set[i], set[i+1])
			}
			todo = append(todo, fv.Build())
		}
		todo = append(todo, cmds.Exec().Build())
		for _, res := range c.rdb.DoMulti(ctx, todo...) {
			if err := res.Error(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.Publish(Envelope{To: ToPresence, Places: batch, Full: full, Ask: ask})
}

// received applies another node's presence envelope, and answers one
// that asks with a full announcement of this node's.
func (c *Cluster) received(e Envelope) {
	c.p.mu.Lock()
	c.p.seen[e.From] = time.Now()
	if e.Ask {
		c.p.full = true
		select {
		case c.p.wake <- struct{}{}:
		default:
		}
	}
	old := c.p.remote[e.From]
	var now map[int64]int
	if e.Full {
		now = e.Places
	} else {
		now = maps.Clone(old)
		if now == nil {
			now = map[int64]int{}
		}
		for m, n := range e.Places {
			if n > 0 {
				now[m] = n
			} else {
				delete(now, m)
			}
		}
	}
	changed := c.replaceLocked(e.From, now)
	c.p.mu.Unlock()
	c.notify(changed)
}

// replaceLocked sets what node holds and returns the members whose count
// on the other nodes changed, with their new counts (p.mu held).
func (c *Cluster) replaceLocked(node string, now map[int64]int) map[int64]int {
	old := c.p.remote[node]
	if len(now) == 0 {
		delete(c.p.remote, node)
	} else {
		c.p.remote[node] = now
	}
	changed := map[int64]int{}
	for m, n := range now {
		if old[m] != n {
			changed[m] = 0
		}
	}
	for m := range old {
		if _, ok := now[m]; !ok {
			changed[m] = 0
		}
	}
	for m := range changed {
		for _, places := range c.p.remote {
			changed[m] += places[m]
		}
	}
	return changed
}

func (c *Cluster) notify(changed map[int64]int) {
	if len(changed) > 0 && c.o.Presence != nil {
		c.o.Presence(changed)
	}
}

// checkNodes drops the nodes that stopped beating (their members leave),
// reads the hash of every node newly seen alive, and removes the dead
// from Redis. A node missing from the set altogether (a Redis restarted
// empty) is dropped only once it has not been heard of for as long as a
// stale one: it beats again within dead_after/4.
func (c *Cluster) checkNodes() {
	beats := map[string]float64{}
	err := c.guard.Do(context.Background(), func(ctx context.Context) error {
		zs, err := c.rdb.Do(ctx, c.rdb.B().Zrange().Key(c.nodesKey()).Min("0").Max("-1").Withscores().Build()).AsZScores()
		for _, z := range zs {
			beats[z.Member] = z.Score
		}
		return err
	})
	if err != nil {
		return // Redis is down: keep what is known until it answers
	}
	now := time.Now()
	limit := float64(now.Add(-c.silentLimit()).UnixMilli())
	c.p.mu.Lock()
	alive := map[string]bool{}
	for n, score := range beats {
		if n != c.o.Node && score >= limit {
			alive[n] = true
			c.p.seen[n] = now
		}
	}
	var gone, came []string
	for n := range c.p.remote {
		if alive[n] {
			continue
		}
		if _, stale := beats[n]; stale || now.Sub(c.p.seen[n]) > c.silentLimit() {
			gone = append(gone, n)
		}
	}
	for n := range alive {
		if !c.p.live[n] {
			came = append(came, n)
		}
	}
	c.p.live = alive
	changed := map[int64]int{}
	for _, n := range gone {
		maps.Copy(changed, c.replaceLocked(n, nil))
		delete(c.p.seen, n)
	}
	c.p.mu.Unlock()
	c.notify(changed)
	for _, n := range came {
		c.readNode(n)
	}
	c.sweep()
}

// readNode replaces what is known of node with its hash in Redis.
func (c *Cluster) readNode(node string) {
	var h map[string]string
	err := c.guard.Do(context.Background(), func(ctx context.Context) (err error) {
		h, err = c.rdb.Do(ctx, c.rdb.B().Hgetall().Key(c.presenceKey(node)).Build()).AsStrMap()
		return err
	})
	if err != nil {
		c.p.mu.Lock()
		delete(c.p.live, node) // read it again at the next check
		c.p.mu.Unlock()
		return
	}
	now := make(map[int64]int, len(h))
	for k, v := range h {
		m, err1 := strconv.ParseInt(k, 10, 64)
		n, err2 := strconv.Atoi(v)
		if err1 == nil && err2 == nil && n > 0 {
			now[m] = n
		}
	}
	c.p.mu.Lock()
	if !c.p.live[node] { // died meanwhile
		c.p.mu.Unlock()
		return
	}
	changed := c.replaceLocked(node, now)
	c.p.mu.Unlock()
	c.notify(changed)
}

// sweep removes nodes silent for a whole DeadAfter, with their presence.
func (c *Cluster) sweep() {
	dead := "(" + strconv.FormatInt(time.Now().Add(-c.o.DeadAfter).UnixMilli(), 10)
	_ = c.guard.Do(context.Background(), func(ctx context.Context) error {
		names, err := c.rdb.Do(ctx, c.rdb.B().Zrangebyscore().Key(c.nodesKey()).Min("-inf").Max(dead).Build()).AsStrSlice()
		if err != nil || len(names) == 0 {
			return err
		}
		for _, n := range names {
			_ = c.rdb.Do(ctx, c.rdb.B().Del().Key(c.presenceKey(n)).Build()).Error()
		}
		return c.rdb.Do(ctx, c.rdb.B().Zrem().Key(c.nodesKey()).Member(names...).Build()).Error()
	})
}

// RemotePlaces returns every member logged in on another node, with its
// places there.
func (c *Cluster) RemotePlaces() map[int64]int {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	out := map[int64]int{}
	for _, places := range c.p.remote {
		for m, n := range places {
			out[m] += n
		}
	}
	return out
}
