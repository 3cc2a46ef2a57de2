package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"time"
	"unicode/utf8"

	"dce/app/dce"
)

// acceptTCP accepts raw TCP connections until the listener closes; it
// waits out a shortage of files (patientListener).
func (s *Server) acceptTCP(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return // closed: the server stops
		}
		remote := nc.RemoteAddr().String()
		ip := remoteIP(remote)
		if why := s.hub.reserve(ip); why != admitted {
			_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = nc.Write(append(failBody(why.status()), '\n'))
			_ = nc.Close()
			continue
		}
		c := &conn{transport: dce.TCP, remote: remote, ip: ip, nc: nc}
		c.out.Init((*outboxHost)(s.hub), s.encoding(dce.TCP), nc, false)
		s.hub.add(c, "") // TCP: a new session per connection
		if !s.goTracked(func() { s.readTCP(c) }) {
			s.closed(c, "server shutting down")
		}
	}
}

// readTCP is a TCP connection's reader goroutine: one message per line.
func (s *Server) readTCP(c *conn) {
	why := "closed by client"
	defer func() { s.closed(c, why) }()
	if s.access() {
		s.log.Info("connect", "transport", c.transport, "fd", c.fd, "remote", c.remote)
	}
	if err := s.opened(c, nil); err != nil {
		why = "refused on connect: " + err.Error()
		c.out.Close(0, err.Error())
	}
	br := bufio.NewReaderSize(c.nc, 1024)
	var line []byte
	tooLong := false
	for {
		max := s.hub.limits().MaxFrameBytes // a reload reaches open connections
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > max+2 { // room for \r\n
				tooLong, line = true, line[:0]
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && (len(line) == 0 || tooLong) {
			why = tcpReadError(err)
			return
		}
		c.touch()
		switch {
		case c.out.Closing():
		case tooLong:
			c.reply("", 0, false, failBody(413, "line longer than "+strconv.Itoa(max)+" bytes: dropped"))
		default:
			msg := trimEOL(line)
			if len(msg) > 0 { // blank lines are ignored
				if !utf8.Valid(msg) {
					c.reply("", 0, false, failBody(400, "invalid UTF-8"))
				} else {
					s.dispatch(c, c, dce.TCP, msg, false, &c.limit, func() { c.out.Close(0, "rate limit exceeded") })
				}
			}
		}
		tooLong, line = false, line[:0]
		if err != nil { // a last line without newline
			why = tcpReadError(err)
			return
		}
	}
}

func tcpReadError(err error) string {
	if errors.Is(err, io.EOF) {
		return "closed by client"
	}
	if errors.Is(err, net.ErrClosed) {
		return "closed"
	}
	return err.Error()
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}
