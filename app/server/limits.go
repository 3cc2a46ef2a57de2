package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"dce/app/config"
)

// File descriptors kept for everything that is not a client connection:
// listeners, the control socket, logs, templates and static files being
// served, pages loading over HTTP, a Redis pool. A flood is refused with 503
// before the process runs out of files.
const (
	reservedFiles   = 100 // always kept
	reservedPercent = 5   // and this share of the limit
)

// fileLimit is the process's open-file limit (Go raises the soft limit to
// the hard one at start).
func fileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return l.Cur
}

// connectionLimit is the max_connections in force: the configured number,
// or when 0 what the open-file limit allows after the reserve. warn is set
// when a configured number is above what the files allow.
func connectionLimit(configured int, files uint64) (limit int, warn string) {
	allowed := 0
	if files > 0 {
		allowed = int(max(int64(files)-reservedFiles-int64(files)*reservedPercent/100, 1))
	}
	switch {
	case configured > 0 && allowed > 0 && configured > allowed:
		return configured, fmt.Sprintf("websocket.max_connections is %d, but the open-file limit of %d allows about %d connections (after %d kept for the server itself): a flood would run the process out of files; raise the limit (ulimit -n, LimitNOFILE=) or set max_connections to 0 to follow it",
			configured, files, allowed, int(files)-allowed)
	case configured > 0:
		return configured, ""
	case allowed > 0:
		return allowed, ""
	}
	return 100000, ""
}

// fdShortage tells an accept error that passes: out of files, or a peer
// that gave up before it was accepted.
func fdShortage(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

func temporaryAccept(err error) bool {
	return fdShortage(err) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPROTO)
}

// shortageLog logs an accept failure at most once per second per listener.
type shortageLog struct {
	log  *slog.Logger
	name string
	last atomic.Int64 // unix nanos of the last line
	n    atomic.Int64 // failures since then
}

func (l *shortageLog) note(err error) {
	n := l.n.Add(1)
	now := time.Now().UnixNano()
	if last := l.last.Load(); now-last < int64(time.Second) || !l.last.CompareAndSwap(last, now) {
		return
	}
	l.n.Store(0)
	l.log.Warn("accept failed, retrying (out of file descriptors?)", "listener", l.name, "err", err.Error(), "failures", n)
}

// patientListener retries temporary accept errors with a bounded backoff
// (5 ms doubling to 1 s) instead of returning them: a listener that runs
// out of files keeps its loop, and serves again as soon as files are
// freed. It returns net.ErrClosed once stop is closed.
type patientListener struct {
	net.Listener
	stop <-chan struct{}
	log  shortageLog
	gate *httpGate // nil, or the gate of an HTTP listener
}

func patient(ln net.Listener, stop <-chan struct{}, log *slog.Logger, name string) *patientListener {
	return &patientListener{Listener: ln, stop: stop, log: shortageLog{log: log, name: name}}
}

func (l *patientListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil && l.gate != nil && l.gate.refuse(c) {
			backoff = 5 * time.Millisecond
			continue
		}
		if err == nil || !temporaryAccept(err) {
			return c, err
		}
		l.log.note(err)
		select {
		case <-time.After(backoff):
		case <-l.stop:
			return nil, net.ErrClosed
		}
		backoff = min(2*backoff, time.Second)
	}
}

// refusal is why a new connection is refused before it is accepted.
type refusal int

const (
	admitted    refusal = iota
	serverFull          // max_connections: 503
	addressFull         // max_connections_per_ip: 503
	addressRate         // connect_rate_per_ip: 429
)

func (r refusal) status() (int, string) {
	switch r {
	case serverFull:
		return 503, "too many connections"
	case addressFull:
		return 503, "too many connections from your address"
	case addressRate:
		return 429, "too many new connections from your address: slow down"
	}
	return 200, ""
}

// addresses counts the connections of each source address and the rate at
// which it opens new ones.
type addresses struct {
	mu sync.Mutex // a leaf: nothing is taken while it is held
	m  map[netip.Addr]*address
}

type address struct {
	open   int
	tokens float64
	last   time.Time
}

// exempt reports whether ip is in one of the networks.
func exempt(ip netip.Addr, nets []string) bool {
	for _, n := range nets {
		if p, err := netip.ParsePrefix(n); err == nil && p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// take admits one more connection from ip under the limits lim.
func (a *addresses) take(ip netip.Addr, lim *config.Websocket, now time.Time) refusal {
	if !ip.IsValid() || (lim.MaxConnsPerIP == 0 && lim.ConnectRate == 0) || exempt(ip, lim.PerIPExempt) {
		return admitted
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[netip.Addr]*address{}
	}
	e := a.m[ip]
	burst := max(2*lim.ConnectRate, 1)
	if e == nil {
		e = &address{tokens: burst, last: now}
		a.m[ip] = e
	}
	if lim.MaxConnsPerIP > 0 && e.open >= lim.MaxConnsPerIP {
		return addressFull
	}
	if lim.ConnectRate > 0 {
		e.tokens = min(burst, e.tokens+now.Sub(e.last).Seconds()*lim.ConnectRate)
		e.last = now
		if e.tokens < 1 {
			return addressRate
		}
		e.tokens--
	}
	e.open++
	return admitted
}

// give returns a connection of ip. The address is forgotten once it holds
// none and its rate bucket is full again (sweep).
func (a *addresses) give(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e := a.m[ip]; e != nil && e.open > 0 {
		e.open--
	}
}

// sweep forgets the addresses that hold no connection and whose rate
// bucket has refilled: nothing grows without bound.
func (a *addresses) sweep(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip, e := range a.m { // a bucket of twice the rate refills in 2 s
		if e.open == 0 && now.Sub(e.last) >= 2*time.Second {
			delete(a.m, ip)
		}
	}
}

// remoteIP is the address part of "host:port".
func remoteIP(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// An HTTP connection holds a file from accept until its request is refused,
// served or upgraded. net/http accepts as fast as it can and reads each
// request in its own goroutine, so in a flood accepted connections could
// pile up faster than their handlers refuse them and run the process out of
// files. The gate bounds them: past max_connections + handshakeRoom
// connections open or being opened, the listener itself answers 503 and
// closes, at most refuseRoom at a time (beyond that it just closes).
const (
	handshakeRoom = 32 // pages and handshakes in flight on top of max_connections
	refuseRoom    = 16 // gate refusals being written at once
)

var gateRefusal = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 21\r\n\r\ntoo many connections\n")

// httpGate counts the connections of the HTTP listeners that are accepted
// but not yet hijacked or closed (http.Server.ConnState).
type httpGate struct {
	hub      *Hub
	pending  atomic.Int64
	refusing atomic.Int64
}

func (g *httpGate) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		g.pending.Add(1)
	case http.StateHijacked, http.StateClosed:
		g.pending.Add(-1)
	}
}

// refuse takes c away from the HTTP server when the files are spoken for:
// true when it was refused.
func (g *httpGate) refuse(c net.Conn) bool {
	h := g.hub
	if h.slots.Load()+g.pending.Load() < int64(h.limits().MaxConnections)+handshakeRoom {
		return false
	}
	h.stats.refused.Add(1)
	if g.refusing.Add(1) > refuseRoom {
		g.refusing.Add(-1)
		_ = c.Close()
		return true
	}
	go func() {
		defer g.refusing.Add(-1)
		defer c.Close()
		// Read the request that came with the connection first: closing
		// with unread bytes resets it, and the peer could lose the answer.
		_ = c.SetDeadline(time.Now().Add(50 * time.Millisecond))
		var b [4096]byte
		_, _ = c.Read(b[:])
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(gateRefusal)
	}()
	return true
}
