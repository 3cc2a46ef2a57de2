package server

import (
	"log/slog"
	"net/netip"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"dce/app/cluster"
	"dce/app/config"
	"dce/app/dce"
	"dce/app/session"
)

// Hub is the set of live connections. It implements dce.Hub.
//
// Lock order, outermost first — a lock is only ever taken while holding
// those above it:
//
//  1. a project's own lock (the chat's ImWebsocketService.mu, held while
//     it queues pushes so they keep their order)
//  2. session.Manager.mu (it calls nothing while held)
//  3. Hub.mu (read by broadcasts, which run side by side)
//  4. outbox.Outbox.mu (one connection's queue, taken briefly per enqueue)
//  5. lockedConn.mu (a WebSocket's write lock, taken by a writer that holds
//     nothing else, and by gorilla's control-frame writes)
//
// addresses.mu, Server.mu and the limiter's state are leaves: nothing is
// taken while holding them.
type Hub struct {
	mu       sync.RWMutex // lock order 3 (see above): guards conns
	conns    map[uint64]*conn
	nextFD   atomic.Uint64
	sessions dce.Sessions
	log      *slog.Logger
	lim      atomic.Pointer[config.Websocket]
	now      atomic.Int64 // coarse clock, unix seconds, ticked by keepalive
	slots    atomic.Int64 // connections open or being opened, for max_connections
	addrs    addresses    // connections and connect rate per source address

	stats stats

	// bus carries broadcasts to the other nodes of a cluster; nil on one
	// node. Set before the listeners open, never changed.
	bus *cluster.Cluster
	// onPublish hands other nodes' Publish to the server types (set with bus).
	onPublish func(topic string, m *dce.Message)
}

type stats struct {
	accepted, closed, requests, pushes, slow, refused, limited atomic.Uint64
}

var _ dce.Hub = (*Hub)(nil)

func newHub(lim config.Websocket, sessions dce.Sessions, log *slog.Logger) *Hub {
	h := &Hub{conns: map[uint64]*conn{}, sessions: sessions, log: log}
	h.lim.Store(&lim)
	h.now.Store(time.Now().Unix())
	return h
}

func (h *Hub) limits() *config.Websocket { return h.lim.Load() }

// add registers a new connection and gives it its number and session:
// sid when the client presented one (cookie, query), else a new one.
func (h *Hub) add(c *conn, sid string) {
	presented := sid != ""
	if !presented {
		sid = session.NewID()
	}
	c.fd = h.nextFD.Add(1)
	c.hub = h
	c.lastSeen.Store(h.now.Load())
	c.limit = newLimiter(h.limits())
	h.mu.Lock()
	h.conns[c.fd] = c
	h.mu.Unlock()
	h.sessions.Open(c.fd, sid, presented)
	h.stats.accepted.Add(1)
}

// remove unregisters a connection; it gets no more pushes.
func (h *Hub) remove(c *conn) {
	h.mu.Lock()
	delete(h.conns, c.fd)
	h.mu.Unlock()
	h.release(c.ip)
	h.stats.closed.Add(1)
}

// reserve takes a connection slot for a peer at ip before its connection
// is accepted (before the WebSocket upgrade): under max_connections, and
// under the per-address limits unless ip is exempt.
func (h *Hub) reserve(ip netip.Addr) refusal {
	lim := h.limits()
	r := serverFull
	if h.slots.Add(1) <= int64(lim.MaxConnections) {
		r = h.addrs.take(ip, lim, time.Now())
	}
	if r != admitted {
		h.slots.Add(-1)
		h.stats.refused.Add(1)
	}
	return r
}

// release gives a slot back: the connection closed or never opened.
func (h *Hub) release(ip netip.Addr) {
	h.slots.Add(-1)
	h.addrs.give(ip)
}

// Push implements dce.Hub.
func (h *Hub) Push(fd uint64, path string, data any) error {
	m, err := dce.NewMessage(path, data, dce.Queue)
	if err != nil {
		return err
	}
	if h.Send([]uint64{fd}, m) == 0 {
		return dce.ErrClosed
	}
	return nil
}

// Send implements dce.Hub.
func (h *Hub) Send(fds []uint64, m *dce.Message) int {
	n := 0
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, fd := range fds {
		if c, ok := h.conns[fd]; ok && c.out.Send(m) {
			n++
		}
	}
	return n
}

// PushMember implements dce.Hub: data to every connection of member — on
// every node of a cluster. It returns how many of this node's took it.
func (h *Hub) PushMember(member int64, path string, data any) (int, error) {
	m, err := dce.NewMessage(path, data, dce.Queue)
	if err != nil {
		return 0, err
	}
	if h.bus != nil {
		_ = h.bus.Publish(cluster.Envelope{To: cluster.ToMember, Member: member, Path: m.Path, Body: m.Body, Mode: m.Mode, Bare: m.Bare})
	}
	return h.Send(h.sessions.MemberConns(member), m), nil
}

// SendAll implements dce.Hub: every connection — of every node in a
// cluster (one publish; each node fans out to its own). It returns how many
// of this node's took it.
func (h *Hub) SendAll(m *dce.Message) int {
	if h.bus != nil {
		_ = h.bus.Publish(cluster.Envelope{To: cluster.ToAll, Path: m.Path, Body: m.Body, Mode: m.Mode, Bare: m.Bare})
	}
	return h.sendAllLocal(m)
}

// Publish implements dce.Hub: m to the same project on the other nodes.
func (h *Hub) Publish(topic string, m *dce.Message) error {
	if h.bus == nil {
		return nil
	}
	return h.bus.Publish(cluster.Envelope{To: cluster.ToTopic, Topic: topic, Path: m.Path, Body: m.Body, Mode: m.Mode, Bare: m.Bare})
}

// deliver hands another node's envelope to this node's connections.
func (h *Hub) deliver(e cluster.Envelope) {
	m := &dce.Message{Path: e.Path, Body: e.Body, Mode: e.Mode, Bare: e.Bare}
	switch e.To {
	case cluster.ToAll:
		h.sendAllLocal(m)
	case cluster.ToTopic:
		if h.onPublish != nil {
			h.onPublish(e.Topic, m)
		}
	case cluster.ToMember:
		h.Send(h.sessions.MemberConns(e.Member), m)
	}
}

func (h *Hub) sendAllLocal(m *dce.Message) int {
	n := 0
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, c := range h.conns {
		if c.out.Send(m) {
			n++
		}
	}
	return n
}

// Conn implements dce.Hub.
func (h *Hub) Conn(fd uint64) (dce.Conn, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	c, ok := h.conns[fd]
	if !ok {
		return nil, false
	}
	return c, true
}

// Conns implements dce.Hub.
func (h *Hub) Conns() []dce.Conn {
	h.mu.RLock()
	out := make([]dce.Conn, 0, len(h.conns))
	for _, c := range h.conns {
		out = append(out, c)
	}
	h.mu.RUnlock()
	slices.SortFunc(out, func(a, b dce.Conn) int { return int(a.FD()) - int(b.FD()) })
	return out
}

// Sessions implements dce.Hub.
func (h *Hub) Sessions() dce.Sessions { return h.sessions }

// Logger implements dce.Hub.
func (h *Hub) Logger() *slog.Logger { return h.log }

// snapshot copies the live connections, for shutdown and keepalive.
func (h *Hub) snapshot() []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*conn, 0, len(h.conns))
	for _, c := range h.conns {
		out = append(out, c)
	}
	return out
}

// keepalive ticks the coarse clock every second and pings each WebSocket
// once per ping interval, dropping those silent for longer than the pong
// timeout. The pings are spread over the interval (each second, the
// connections whose number falls in that second's slice), so 10,000
// connections cost 400 pings a second rather than one storm that delays
// every broadcast. It returns when stop is closed.
func (h *Hub) keepalive(stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var tidy tidier
	for n := uint64(0); ; n++ {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			h.now.Store(now.Unix())
			h.addrs.sweep(now)
			tidy.check(now, h.stats.accepted.Load()+h.stats.closed.Load())
			lim := h.limits()
			parts := uint64(max(1, lim.PingInterval.Round(time.Second)/time.Second))
			deadline := now.Add(-lim.PongTimeout).Unix()
			for _, c := range h.slice(parts, n%parts) {
				if c.lastSeen.Load() < deadline {
					c.out.Drop("keepalive: no pong within " + lim.PongTimeout.String())
					continue
				}
				c.out.Ping()
			}
		}
	}
}

// slice returns the WebSockets whose number is i modulo n.
func (h *Hub) slice(n, i uint64) []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []*conn
	for fd, c := range h.conns {
		if fd%n == i && c.transport == dce.WebSocket {
			out = append(out, c)
		}
	}
	return out
}

// coalesce is the least time between two writes to one busy connection:
// write_coalesce, widened by 11 µs per open connection so that a broadcast
// storm costs at most about 90,000 writes a second, a budget two shared
// cores keep up with (10,000 connections: 110 ms; 5, 10, 11, 12 and 15 µs
// measured, see README "Performance"). 0 when write_coalesce is 0.
func (h *Hub) coalesce() time.Duration {
	gap := h.limits().WriteCoalesce
	if gap <= 0 {
		return 0
	}
	return max(gap, time.Duration(h.slots.Load())*11*time.Microsecond)
}

// tidier returns memory to the system once a burst of connections has
// settled: a join storm grows reader stacks (a login may encode a large
// online list) and pools, and an idle server runs no GC that would shrink
// them. After 256 or more connects and closes, and 5 s without any, it
// runs two collections (stacks shrink by half in each, pools empty) and
// hands free pages back.
type tidier struct {
	seen, tidied uint64    // connects+closes: last seen, at the last tidy
	changed      time.Time // when seen last changed
}

func (t *tidier) check(now time.Time, churn uint64) {
	if churn != t.seen {
		t.seen, t.changed = churn, now
		return
	}
	if churn-t.tidied >= 256 && now.Sub(t.changed) >= 5*time.Second {
		t.tidied = churn
		runtime.GC()
		runtime.GC()
		debug.FreeOSMemory()
	}
}

// touch records that the peer is alive.
func (c *conn) touch() { c.lastSeen.Store(c.hub.now.Load()) }

// limiter is a token bucket of messages per connection; only the
// connection's reader uses it. Rate and burst are read from the limits in
// force at each message, so a reload reaches connections already open.
type limiter struct {
	tokens  float64
	last    time.Time
	strikes int       // messages refused since the client last kept its rate for a second
	refused time.Time // the last refusal
}

func newLimiter(lim *config.Websocket) limiter {
	return limiter{tokens: float64(lim.RateBurst)}
}

// allow takes a token; it reports false when the client is over the rate.
func (l *limiter) allow(now time.Time, lim *config.Websocket) bool {
	if lim.RateLimit <= 0 {
		l.strikes = 0
		return true
	}
	burst := float64(lim.RateBurst)
	if !l.last.IsZero() {
		l.tokens = min(burst, l.tokens+now.Sub(l.last).Seconds()*lim.RateLimit)
	} else {
		l.tokens = min(l.tokens, burst)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		if l.strikes > 0 && now.Sub(l.refused) >= time.Second {
			l.strikes = 0 // a second without a refusal: forgiven
		}
		return true
	}
	// A flood earns a token now and then as the bucket refills; those do
	// not forgive it, or a client sending far over the rate would never be
	// closed.
	l.strikes++
	l.refused = now
	return false
}
