package server

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"time"

	"dce/app/codec"
	"dce/app/dce"
	"dce/app/render"
	"dce/app/router"
)

// replier sends a reply to whoever sent a message.
type replier interface {
	reply(path string, id int64, hasID bool, body []byte)
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
		s.hub.stats.limited.Add(1)
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
	if s.access() {
		s.log.Info("request", "transport", transport, "fd", cn.FD(), "path", m.Path, "id", m.ID, "has_id", m.HasID)
	}
	w := &socketWriter{s: s, rp: rp, fd: cn.FD(), transport: transport, id: m.ID, hasID: m.HasID}
	req := &router.Request{
		Path: m.Path, Method: transport, ID: m.ID, HasID: m.HasID,
		Data: codec.Data(m.Payload), Raw: m.Payload,
		Conn: cn, Hub: s.hub, Logger: s.log,
	}
	if err := s.router.Load().Serve(w, req); err != nil {
		s.log.Error("request failed", "transport", transport, "fd", cn.FD(), "path", m.Path, "err", err.Error())
	}
}

// socketWriter answers one message of a socket transport: in response
// mode (hasID) exactly one reply, otherwise only what the action sends.
type socketWriter struct {
	s         *Server
	rp        replier
	fd        uint64
	transport string
	id        int64
	hasID     bool
}

func (w *socketWriter) Reply(path string, data any) error {
	body, err := codec.Body(data)
	if err != nil {
		return err
	}
	w.rp.reply(path, w.id, w.hasID, body)
	return nil
}

func (w *socketWriter) NoNode(path string, exists bool) {
	msg := "no node for path " + path
	if exists {
		msg += " on " + w.transport
	}
	if w.hasID {
		w.rp.reply(path, w.id, true, failBody(404, msg))
	}
	w.s.log.Debug("no node", "transport", w.transport, "fd", w.fd, "path", path, "exists", exists) // debug: a client must not turn its rate budget into log lines
}

func (w *socketWriter) Finish(_ *router.Router, c *dce.Context) {
	if !w.hasID {
		return
	}
	body := statusBody(c.Result())
	w.rp.reply(c.Path, w.id, true, body)
	if w.s.access() {
		w.s.log.Info("response", "transport", w.transport, "fd", w.fd, "path", c.Path, "id", w.id, "bytes", len(body))
	}
}

func (s *Server) logAccess(msg string, cn dce.Conn, args ...any) {
	if s.access() {
		s.log.Info(msg, append([]any{"transport", cn.Transport(), "fd", cn.FD()}, args...)...)
	}
}

// opened runs the open hooks of a new connection, in websocket.service
// order: OnOpen for a WebSocket (r is its handshake), OnConnect for TCP (r
// nil). The first error refuses the connection.
func (s *Server) opened(c *conn, r *http.Request) error {
	for _, h := range s.hooks {
		var err error
		switch {
		case r != nil && h.OnOpen != nil:
			err = h.OnOpen(c, r)
		case r == nil && h.OnConnect != nil:
			err = h.OnConnect(c)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// closed runs when a connection's reader ends: the close hook first, while
// the session mappings still exist, then the mappings go.
func (s *Server) closed(c *conn, why string) {
	reason := c.out.Shut(why)
	s.hub.remove(c)
	for _, h := range s.hooks {
		if h.OnClose == nil {
			continue
		}
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
