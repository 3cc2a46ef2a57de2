package server

import (
	"errors"
	"net"
	"strconv"
	"unicode/utf8"

	"dce/app/dce"
)

// udpPeer is the sender of one datagram: replies go back to it; it gets
// no pushes.
type udpPeer struct {
	s    *Server
	pc   *net.UDPConn
	addr *net.UDPAddr
}

var _ dce.Conn = (*udpPeer)(nil)

func (p *udpPeer) FD() uint64         { return 0 }
func (p *udpPeer) SessionID() string  { return "" }
func (p *udpPeer) Transport() string  { return dce.UDP }
func (p *udpPeer) RemoteAddr() string { return p.addr.String() }
func (p *udpPeer) Close(string)       {}
func (p *udpPeer) Push(path string, data any) error {
	m, err := dce.NewMessage(path, data, dce.Queue)
	if err != nil {
		return err
	}
	return p.Send(m)
}
func (p *udpPeer) Send(m *dce.Message) error {
	if m.Bare {
		return p.write(m.Body)
	}
	return p.write(p.s.codec.Append(nil, m.Path, 0, false, m.Body))
}
func (p *udpPeer) write(b []byte) error {
	_, err := p.pc.WriteToUDP(b, p.addr)
	if err != nil {
		p.s.log.Debug("udp reply failed", "to", p.addr.String(), "err", err)
	}
	return err
}

// serveUDP reads datagrams until the socket closes: one message each.
func (s *Server) serveUDP(pc *net.UDPConn) {
	buf := make([]byte, 64<<10)
	for {
		max := s.hub.limits().MaxFrameBytes // a reload applies to the next datagram
		if len(buf) < max+1 {
			buf = make([]byte, max+1)
		}
		n, addr, err := pc.ReadFromUDP(buf[:max+1])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p := &udpPeer{s: s, pc: pc, addr: addr}
		if n > max {
			p.reply("", 0, false, failBody(413, "datagram longer than "+strconv.Itoa(max)+" bytes"))
			continue
		}
		if !utf8.Valid(buf[:n]) {
			p.reply("", 0, false, failBody(400, "invalid UTF-8"))
			continue
		}
		s.dispatch(p, p, dce.UDP, buf[:n], false, nil, nil)
	}
}

func (p *udpPeer) reply(path string, id int64, hasID bool, body []byte) {
	p.write(p.s.codec.Append(nil, path, id, hasID, body))
}
