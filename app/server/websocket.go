package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"dce/app/dce"
	"dce/app/session"
)

// lockedConn serializes writes: gorilla writes control frames (pong, close
// 1009) through Write while the connection's writer sends batches.
type lockedConn struct {
	net.Conn
	mu sync.Mutex // lock order 5 (Hub): the innermost; held only around one write
}

func (l *lockedConn) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Conn.Write(p)
}

// hijacker hands gorilla a lockedConn instead of the raw connection, and
// reports the connection before gorilla writes the 101 response.
type hijacker struct {
	http.ResponseWriter
	conn     *lockedConn
	onHijack func(*lockedConn)
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &lockedConn{Conn: nc}
	h.onHijack(h.conn)
	return h.conn, brw, nil
}

// checkOrigin allows requests without Origin (non-browser clients), from
// the same host, or from websocket.allowed_origins ("*" allows every one).
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, a := range s.cfg.Load().Websocket.AllowedOrigins {
		if a == "*" || strings.EqualFold(a, origin) || strings.EqualFold(a, u.Host) {
			return true
		}
	}
	s.log.Warn("websocket origin refused", "origin", origin, "host", r.Host, "remote", r.RemoteAddr)
	return false
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	ip := remoteIP(r.RemoteAddr)
	if why := s.hub.reserve(ip); why != admitted {
		code, msg := why.status()
		w.Header().Set("Connection", "close") // the refused peer keeps no file
		http.Error(w, msg, code)
		return
	}
	// The connection joins the hub before the 101 response goes out, so a
	// client that has connected is in every later broadcast; its writer is
	// held (writing) until the response is written.
	c := &conn{transport: dce.WebSocket, remote: r.RemoteAddr, ip: ip}
	c.out.Init((*outboxHost)(s.hub), s.encoding(dce.WebSocket), nil, true) // held until the 101 is written
	sid, _ := session.FromHandshake(r, s.cfg.Load().Session.Name)          // "" without one: a session for this connection alone
	hj := &hijacker{ResponseWriter: w, onHijack: func(lc *lockedConn) {
		c.nc = lc.Conn
		c.out.Attach(lc.Conn, &lc.mu)
		s.hub.add(c, sid)
	}}
	ws, err := s.upgrader.Upgrade(hj, r, nil)
	if err != nil {
		if hj.conn == nil {
			s.hub.release(ip) // refused before the hijack: the upgrader answered
			return
		}
		s.hub.remove(c)
		s.hub.sessions.Close(c.fd)
		return
	}
	c.out.Release()
	if !s.goTracked(func() { s.readWebSocket(c, ws, r) }) {
		s.closed(c, "server shutting down")
	}
}

var readPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readWebSocket is the connection's reader goroutine.
func (s *Server) readWebSocket(c *conn, ws *websocket.Conn, r *http.Request) {
	why := "closed by client"
	defer func() { s.closed(c, why) }()
	if s.access() {
		s.log.Info("connect", "transport", c.transport, "fd", c.fd, "remote", c.remote)
	}
	if err := s.opened(c, r); err != nil {
		why = "refused on open: " + err.Error()
		c.out.Close(websocket.ClosePolicyViolation, err.Error())
	}
	ws.SetPongHandler(func(string) error { c.touch(); return nil })
	ping := ws.PingHandler()
	ws.SetPingHandler(func(d string) error { c.touch(); return ping(d) })
	for {
		ws.SetReadLimit(int64(s.hub.limits().MaxFrameBytes)) // a reload reaches open connections
		mt, rd, err := ws.NextReader()
		if err != nil {
			why = readError(err)
			return
		}
		bp := readPool.Get().(*[]byte)
		buf, err := readAll((*bp)[:0], rd)
		if err != nil {
			why = readError(err)
			return
		}
		c.touch()
		if c.out.Closing() {
			s.putRead(bp, buf)
			continue // wait for the peer's close frame
		}
		if mt == websocket.TextMessage && !utf8.Valid(buf) {
			c.out.Close(websocket.CloseInvalidFramePayloadData, "invalid UTF-8 in a text frame")
			s.putRead(bp, buf)
			continue
		}
		offStack(func() {
			s.dispatch(c, c, dce.WebSocket, buf, mt == websocket.BinaryMessage, &c.limit, func() {
				c.out.Close(websocket.ClosePolicyViolation, "rate limit exceeded")
			})
		})
		s.putRead(bp, buf)
	}
}

// offStack runs f on a fresh goroutine and waits for it. A connection's
// reader spends its life parked in a read with a shallow stack; the request
// itself (a controller may encode a large list) grows a stack that is
// dropped when it ends, instead of staying with the idle reader: at 10,000
// connections that is the difference between 4 and 8+ KiB each.
func offStack(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

func (s *Server) putRead(bp *[]byte, buf []byte) {
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		readPool.Put(bp)
	}
}

func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func readError(err error) string {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		return "closed by client (" + strconv.Itoa(ce.Code) + ")"
	case errors.Is(err, websocket.ErrReadLimit):
		return "frame too large (closed with 1009)"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	}
	return err.Error()
}
