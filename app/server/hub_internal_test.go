package server

import (
	"log/slog"
	"testing"

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
		h.add(&conn{transport: transport}, "")
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

// The outbox's write failures: a peer that went away is an ordinary close;
// a write that timed out (a peer that stopped reading) is a problem the log
// warns about.
func TestWriteFailureIsAProblem(t *testing.T) {
	for reason, problem := range map[string]bool{
		"peer gone: writev: broken pipe":    false,
		"write failed: i/o timeout":         true,
		"send queue full: the client reads": true,
		"closed by client (1000)":           false,
	} {
		if isProblem(reason) != problem {
			t.Errorf("%q counted as a problem: %v; want %v", reason, !problem, problem)
		}
	}
}
