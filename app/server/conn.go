package server

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"dce/app/dce"
	"dce/app/internal/outbox"
)

// conn is one WebSocket or TCP connection.
//
// Its reader goroutine owns its life: it reads, dispatches and, when reading
// ends, removes the connection from the hub. What it sends goes through its
// outbox (app/internal/outbox), which never blocks the sender.
type conn struct {
	hub       *Hub
	fd        uint64
	transport string
	remote    string
	ip        netip.Addr   // the remote address, for the per-address limits
	nc        net.Conn     // raw connection, read by the reader (TCP) and closed at the end
	lastSeen  atomic.Int64 // coarse unix seconds of the last frame read
	limit     limiter      // message rate; used by the reader only
	out       outbox.Outbox
}

var _ dce.Conn = (*conn)(nil)

func (c *conn) FD() uint64         { return c.fd }
func (c *conn) SessionID() string  { return c.hub.sessions.SessionOf(c.fd) }
func (c *conn) Transport() string  { return c.transport }
func (c *conn) RemoteAddr() string { return c.remote }

// Push implements dce.Conn.
func (c *conn) Push(path string, data any) error {
	m, err := dce.NewMessage(path, data, dce.Queue)
	if err != nil {
		return err
	}
	return c.Send(m)
}

// Send implements dce.Conn.
func (c *conn) Send(m *dce.Message) error {
	if !c.out.Send(m) {
		return dce.ErrClosed
	}
	return nil
}

// Close implements dce.Conn: queued messages are sent first.
func (c *conn) Close(reason string) { c.out.Close(1000, reason) }

// reply queues a reply carrying the request ID.
func (c *conn) reply(path string, id int64, hasID bool, body []byte) {
	c.out.Reply(path, id, hasID, body)
}

// outboxHost is the Hub as its connections' outboxes see it.
type outboxHost Hub

func (h *outboxHost) Limits() outbox.Limits {
	lim := (*Hub)(h).limits()
	return outbox.Limits{Queue: lim.SendQueue, WriteTimeout: lim.WriteTimeout}
}
func (h *outboxHost) Coalesce() time.Duration { return (*Hub)(h).coalesce() }
func (h *outboxHost) Pushed()                 { h.stats.pushes.Add(1) }
func (h *outboxHost) Slow()                   { h.stats.slow.Add(1) }

// encoding frames this server's messages for a transport.
func (s *Server) encoding(transport string) outbox.Encoding {
	e := outbox.Encoding{WebSocket: transport == dce.WebSocket}
	if !s.text {
		e.Codec = s.codec
	}
	return e
}
