package outbox

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"dce/app/dce"
	"dce/app/wait"
)

// host is a fixed set of limits and the counters an outbox reports to.
type host struct {
	lim          Limits
	gap          time.Duration
	pushed, slow atomic.Int64
}

func (h *host) Limits() Limits          { return h.lim }
func (h *host) Coalesce() time.Duration { return h.gap }
func (h *host) Pushed()                 { h.pushed.Add(1) }
func (h *host) Slow()                   { h.slow.Add(1) }

func newHost() *host { return &host{lim: Limits{Queue: 64, WriteTimeout: time.Second}} }

func msg(path, body string, mode dce.Mode) *dce.Message {
	return &dce.Message{Path: path, Body: []byte(body), Mode: mode}
}

// pipe returns an outbox writing TCP lines into one end of a net.Pipe and a
// reader of the other end.
func pipe(t *testing.T, h *host, held bool) (*Outbox, *bufio.Reader, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	o := &Outbox{}
	o.Init(h, Encoding{}, a, held)
	return o, bufio.NewReader(b), b
}

func line(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v (so far %q)", err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

func TestSendWritesInOrder(t *testing.T) {
	h := newHost()
	o, r, _ := pipe(t, h, false)
	o.Send(msg("a", `{"n":1}`, dce.Queue))
	o.Reply("b", 7, true, []byte(`{}`))
	o.Send(&dce.Message{Body: []byte("bare"), Bare: true})
	for _, want := range []string{`a;{"n":1}`, `b:7;{}`, `bare`} {
		if got := line(t, r); got != want {
			t.Errorf("got %q; want %q", got, want)
		}
	}
	if h.pushed.Load() != 3 {
		t.Errorf("pushed %d; want 3", h.pushed.Load())
	}
}

// Queued Merge messages of one path leave as one array; a Latest message
// replaces the unsent one of its path; Queue messages stay as they are.
func TestMergeAndLatest(t *testing.T) {
	o, r, _ := pipe(t, newHost(), true) // held: everything waits in the queue
	o.Send(msg("users", `[1]`, dce.Latest))
	o.Send(msg("list", `[{"id":1}]`, dce.Merge))
	o.Send(msg("list", `[{"id":2},{"id":3}]`, dce.Merge))
	o.Send(msg("users", `[1,2]`, dce.Latest))
	o.Send(msg("list", `[{"id":4}]`, dce.Merge))
	o.Send(msg("n", `1`, dce.Queue))
	o.Send(msg("n", `2`, dce.Queue))
	o.Release()
	for _, want := range []string{`users;[1,2]`, `list;[{"id":1},{"id":2},{"id":3},{"id":4}]`, `n;1`, `n;2`} {
		if got := line(t, r); got != want {
			t.Errorf("got %q; want %q", got, want)
		}
	}
}

// A peer that does not read while its queue fills is dropped: the send
// that overflows fails, the connection closes, nothing more is accepted.
func TestFullQueueDropsThePeer(t *testing.T) {
	h := newHost()
	h.lim.Queue = 3
	o, r, _ := pipe(t, h, true)
	for i := range 3 {
		if !o.Send(msg("m", `1`, dce.Queue)) {
			t.Fatalf("send %d refused below the limit", i)
		}
	}
	if o.Send(msg("m", `1`, dce.Queue)) {
		t.Fatal("the send past the limit was accepted")
	}
	if h.slow.Load() != 1 || !o.Closing() {
		t.Errorf("slow %d, closing %v; want 1, true", h.slow.Load(), o.Closing())
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("the peer read %v; want the end: queued frames are discarded", err)
	}
	if reason := o.Shut("closed by client"); !strings.HasPrefix(reason, "send queue full") {
		t.Errorf("reason %q; want the drop's", reason)
	}
}

// Close sends what is queued, then the close frame, then closes; nothing
// is accepted after it.
func TestCloseAfterQueue(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	o := &Outbox{}
	o.Init(newHost(), Encoding{WebSocket: true}, a, true)
	o.Send(msg("p", `{}`, dce.Queue))
	o.Close(1001, "going away")
	if o.Send(msg("late", `{}`, dce.Queue)) {
		t.Error("a send after Close was accepted")
	}
	o.Release()
	want := "\x81\x04p;{}" + "\x88\x0c\x03\xe9going away"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(b, got); err != nil || string(got) != want {
		t.Errorf("wrote %q (%v); want %q", got, err, want)
	}
}

// WebSocket frame headers for each payload length class.
func TestWebSocketHeaders(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		h := wsHeader(nil, 0x81, n)
		var got int
		switch {
		case h[1] < 126:
			got = int(h[1])
		case h[1] == 126:
			got = int(h[2])<<8 | int(h[3])
		default:
			for _, b := range h[2:10] {
				got = got<<8 | int(b)
			}
		}
		if h[0] != 0x81 || got != n {
			t.Errorf("header %x for %d bytes", h, n)
		}
	}
}

// The coalescing gap: a message that follows a write within the gap waits
// for the gap's end, and meanwhile later ones join it in one write; a
// reply does not wait.
func TestCoalescingGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHost()
		h.gap = 50 * time.Millisecond
		o, r, _ := pipe(t, h, false)
		start := time.Now()
		o.Send(msg("m", `1`, dce.Queue)) // idle: written at once
		if got := line(t, r); got != "m;1" || time.Since(start) != 0 {
			t.Fatalf("first %q after %v; want at once", got, time.Since(start))
		}
		synctest.Wait() // the writer has finished
		time.Sleep(10 * time.Millisecond)
		o.Send(msg("m", `2`, dce.Queue))
		o.Send(msg("m", `3`, dce.Queue))
		if _, deferred := o.State(); !deferred {
			t.Fatal("a send within the gap was not deferred")
		}
		line(t, r)
		line(t, r)
		if waited := time.Since(start); waited != 50*time.Millisecond {
			t.Errorf("the deferred messages left at %v; want at the gap's end (50ms)", waited)
		}
		synctest.Wait()
		time.Sleep(10 * time.Millisecond)
		o.Send(msg("m", `4`, dce.Queue)) // deferred again...
		o.Reply("r", 1, true, []byte(`{}`))
		at := time.Now()
		if a, b := line(t, r), line(t, r); a != "m;4" || b != "r:1;{}" || time.Since(at) != 0 {
			t.Errorf("got %q, %q after %v; want both at once: a reply is never held back", a, b, time.Since(at))
		}
	})
}

// A held outbox writes nothing until Release (the WebSocket handshake is
// still being written), then what it queued, in order.
func TestHeldUntilRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, r, b := pipe(t, newHost(), true)
		o.Send(msg("m", `1`, dce.Queue))
		_ = b.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := r.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read %v from a held outbox; want nothing", err)
		}
		_ = b.SetReadDeadline(time.Time{})
		o.Release()
		if got := line(t, r); got != "m;1" {
			t.Errorf("got %q after Release", got)
		}
	})
}

// A write the peer does not take within write_timeout drops it.
func TestWriteTimeoutDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHost()
		o, _, _ := pipe(t, h, false) // the pipe's reader never reads
		o.Send(msg("m", `1`, dce.Queue))
		time.Sleep(h.lim.WriteTimeout + time.Millisecond)
		synctest.Wait()
		if reason := o.Shut("closed by client"); !strings.HasPrefix(reason, "write failed") {
			t.Errorf("reason %q; want a write failure", reason)
		}
	})
}

// A peer that went away is an ordinary close ("peer gone"); a write that
// timed out is a write failure.
func TestWriteFailureReasons(t *testing.T) {
	wrap := func(err error) error {
		return &net.OpError{Op: "writev", Net: "tcp", Err: os.NewSyscallError("writev", err)}
	}
	for err, want := range map[error]string{
		wrap(syscall.EPIPE):                                     "peer gone: ",
		wrap(syscall.ECONNRESET):                                "peer gone: ",
		&net.OpError{Op: "write", Err: net.ErrClosed}:           "peer gone: ",
		&net.OpError{Op: "writev", Err: os.ErrDeadlineExceeded}: "write failed: ",
		wrap(syscall.ENOBUFS):                                   "write failed: ",
	} {
		if reason := writeFailure(err); !strings.HasPrefix(reason, want) {
			t.Errorf("%v: reason %q; want %q…", err, reason, want)
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
	o := &Outbox{}
	o.Init(newHost(), Encoding{WebSocket: true}, nc, false)
	if o.Unsent() == 0 {
		t.Fatal("the filled socket reports nothing unsent")
	}
	o.Ping()
	if o.Closing() {
		t.Error("the ping dropped the connection; want it handed to a writer and the connection kept")
	}
	nc.Close() // the writer fails and ends
	if !wait.Until(5*time.Second, func() bool { writing, _ := o.State(); return !writing }) {
		t.Fatal("the writer did not end")
	}
}

// A reply that found no writer is written by its caller (the connection's
// reader), but only its own batch: pushes queued while it was written go
// to a writer goroutine, so the reader is not held while a busy room keeps
// pushing.
func TestReplyHoldsItsCallerForOneWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, r, _ := pipe(t, newHost(), false)
		returned := make(chan struct{})
		go func() { o.Reply("r", 1, true, []byte(`{}`)); close(returned) }()
		synctest.Wait() // the reply's write waits for the peer to read
		o.Send(msg("m", `1`, dce.Queue))
		o.Send(msg("m", `2`, dce.Queue))
		if got := line(t, r); got != "r:1;{}" {
			t.Fatalf("first %q; want the reply", got)
		}
		synctest.Wait()
		select {
		case <-returned:
		default:
			t.Fatal("Reply still holds its caller while the pushes queued behind it wait to be read")
		}
		if a, b := line(t, r), line(t, r); a != "m;1" || b != "m;2" {
			t.Errorf("then %q, %q; want the pushes, by a writer of their own", a, b)
		}
	})
}
