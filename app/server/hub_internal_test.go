package server

import (
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"dce/app/config"
	"dce/app/dce"
	"dce/app/session"
)

// Keepalive pings are spread over the ping interval: across the slices of
// one interval every WebSocket is visited exactly once, TCP never.
func TestKeepaliveSlicesCoverEveryWebSocketOnce(t *testing.T) {
	h := newHub(config.Default().Websocket, session.NewMemory(), slog.New(slog.DiscardHandler))
	for i := 0; i < 1000; i++ {
		transport := dce.WebSocket
		if i%7 == 0 {
			transport = dce.TCP
		}
		h.add(&conn{transport: transport})
	}
	for _, n := range []uint64{1, 2, 25, 60} {
		seen := map[uint64]int{}
		for i := uint64(0); i < n; i++ {
			for _, c := range h.slice(n, i) {
				if c.transport != dce.WebSocket {
					t.Fatalf("n=%d: slice holds a %s connection", n, c.transport)
				}
				seen[c.fd]++
			}
		}
		for fd, c := range h.conns {
			want := 0
			if c.transport == dce.WebSocket {
				want = 1
			}
			if seen[fd] != want {
				t.Fatalf("n=%d: connection %d (%s) visited %d times; want %d", n, fd, c.transport, seen[fd], want)
			}
		}
	}
}

// A peer that went away is an ordinary close; a write that timed out (a
// peer that stopped reading) is a problem the log warns about.
func TestWriteFailureReasons(t *testing.T) {
	wrap := func(err error) error {
		return &net.OpError{Op: "writev", Net: "tcp", Err: os.NewSyscallError("writev", err)}
	}
	tests := []struct {
		err     error
		problem bool
	}{
		{wrap(syscall.EPIPE), false},
		{wrap(syscall.ECONNRESET), false},
		{&net.OpError{Op: "write", Err: net.ErrClosed}, false},
		{&net.OpError{Op: "writev", Err: os.ErrDeadlineExceeded}, true},
		{wrap(syscall.ENOBUFS), true},
	}
	for _, tt := range tests {
		if reason := writeFailure(tt.err); isProblem(reason) != tt.problem {
			t.Errorf("%v: reason %q counted as a problem: %v; want %v", tt.err, reason, !tt.problem, tt.problem)
		}
	}
}

// A keepalive ping to a peer that stopped reading does not wait for it
// (which held up the pings of everyone after it, a second each): it is
// handed to a writer, and the connection is not dropped by the ping.
func TestPingDoesNotWaitForAStuckPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String()) // never reads
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// Fill the socket until a write no longer fits.
	chunk := make([]byte, 64<<10)
	for {
		_ = nc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := nc.Write(chunk); err != nil {
			break
		}
	}
	h := newHub(config.Default().Websocket, session.NewMemory(), slog.New(slog.DiscardHandler))
	c := &conn{transport: dce.WebSocket, nc: nc, text: true, codec: dce.TextCodec{}}
	h.add(c)
	if c.unsent() == 0 {
		t.Fatal("the filled socket reports nothing unsent")
	}
	c.ping()
	c.mu.Lock()
	closing, writing := c.closing, c.writing
	c.mu.Unlock()
	if closing || !writing {
		t.Errorf("after the ping: closing %v, writer running %v; want the ping handed to a writer and the connection kept", closing, writing)
	}
	nc.Close() // the writer fails and ends
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		w := c.writing
		c.mu.Unlock()
		if !w {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer did not end")
		}
	}
}
