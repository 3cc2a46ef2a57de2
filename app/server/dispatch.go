package server

import (
	"bytes"
	"errors"
	"strings"
	"time"

	"dce/app/codec"
	"dce/app/dce"
	"dce/app/render"
)

// replier sends a reply to whoever sent a message.
type replier interface {
	reply(path string, id int64, hasID bool, body []byte)
}

func (p *udpPeer) reply(path string, id int64, hasID bool, body []byte) {
	p.write(p.s.codec.Append(nil, path, id, hasID, body))
}

// Greeting answers an empty path, proving the round trip.
var greeting = statusBody(dce.Status{Data: map[string]any{"info": dce.Product + " " + dce.Version + ": send PATH[:ID];JSON"}})

// statusBody encodes status data as a reply body.
func statusBody(st dce.Status) []byte {
	if st.Status == nil && st.Code == 0 && st.Message == "" && st.Data == nil {
		return []byte("{}")
	}
	var buf bytes.Buffer
	if err := render.JSON(&buf, st, false); err != nil {
		return statusBody(dce.FailStatus(500, "reply could not be encoded"))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func failBody(code int, msg string) []byte { return statusBody(dce.FailStatus(code, msg)) }

// dispatch decodes one frame, routes it to its node and answers in response
// mode. Every socket transport calls it; lim is nil where no rate applies.
func (s *Server) dispatch(cn dce.Conn, rp replier, transport string, frame []byte, binary bool, lim *limiter, closeForRate func()) {
	s.hub.stats.requests.Add(1)
	m, err := s.codec.Decode(frame, binary)
	if err != nil {
		code, msg := 400, err.Error()
		var de *dce.Error
		if errors.As(err, &de) {
			code, msg = de.Code, de.Message
		}
		rp.reply(m.Path, 0, false, failBody(code, msg))
		s.logAccess("request refused", cn, "path", m.Path, "err", msg)
		return
	}
	if l := s.hub.limits(); lim != nil && !lim.allow(time.Now(), l) {
		rp.reply(m.Path, m.ID, m.HasID, failBody(429, "too many messages: slow down"))
		if lim.strikes > l.RateBurst {
			closeForRate()
		}
		return
	}
	if m.Path == "" {
		rp.reply("", m.ID, m.HasID, greeting)
		return
	}
	rt := s.router.Load()
	n, exists := rt.Tree.Exact(m.Path, transport)
	if n == nil {
		msg := "no node for path " + m.Path
		if exists {
			msg += " on " + transport
		}
		if m.HasID {
			rp.reply(m.Path, m.ID, true, failBody(404, msg))
		}
		s.log.Debug("no node", "transport", transport, "fd", cn.FD(), "path", m.Path, "exists", exists) // debug: a client must not turn its rate budget into log lines
		return
	}
	c := &dce.Context{
		Node: n, Path: m.Path, Method: transport,
		ID: m.ID, HasID: m.HasID,
		Data: codec.Data(m.Payload), Raw: m.Payload,
		Conn: cn, Hub: s.hub, Logger: s.log,
	}
	c.ReplyFunc = func(path string, data any) error {
		body, err := codec.Body(data)
		if err != nil {
			return err
		}
		rp.reply(path, m.ID, m.HasID, body)
		return nil
	}
	if s.access() {
		s.log.Info("request", "transport", transport, "fd", cn.FD(), "path", m.Path, "id", m.ID, "has_id", m.HasID)
	}
	if err := rt.Call(c); err != nil {
		s.log.Error("request failed", "transport", transport, "fd", cn.FD(), "path", m.Path, "err", err.Error())
	}
	if m.HasID && !c.Replied() {
		body := statusBody(c.Result())
		rp.reply(m.Path, m.ID, true, body)
		if s.access() {
			s.log.Info("response", "transport", transport, "fd", cn.FD(), "path", m.Path, "id", m.ID, "bytes", len(body))
		}
	}
}

func (s *Server) logAccess(msg string, cn dce.Conn, args ...any) {
	if s.access() {
		s.log.Info(msg, append([]any{"transport", cn.Transport(), "fd", cn.FD()}, args...)...)
	}
}

// closed runs when a connection's reader ends: the close hook first, while
// the session mappings still exist, then the mappings go.
func (s *Server) closed(c *conn, why string) {
	c.mu.Lock()
	c.closing = true
	c.queue = nil
	if c.reason == "" {
		c.reason = why
	}
	reason := c.reason
	c.mu.Unlock()
	s.hub.remove(c)
	if h, ok := s.hooks.(dce.OnCloser); ok {
		func() {
			defer func() {
				if p := recover(); p != nil {
					s.log.Error("close hook panicked", "fd", c.fd, "panic", p)
				}
			}()
			h.OnClose(c)
		}()
	}
	s.hub.sessions.Close(c.fd)
	_ = c.nc.Close()
	if s.access() {
		s.log.Info("close", "transport", c.transport, "fd", c.fd, "remote", c.remote, "reason", reason)
	} else if isProblem(reason) {
		s.log.Warn("connection dropped", "transport", c.transport, "fd", c.fd, "remote", c.remote, "reason", reason)
	}
}

// isProblem tells a drop worth a warning (slow reader, keepalive, rate)
// from an ordinary close.
func isProblem(reason string) bool {
	for _, p := range []string{"send queue full", "keepalive", "rate limit", "write failed"} {
		if strings.HasPrefix(reason, p) {
			return true
		}
	}
	return false
}
