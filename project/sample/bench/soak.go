package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// SoakOptions of a soak run: Clients users stay connected at once; each
// session logs in, chats now and then and leaves after a random time (mean
// Clients/Churn seconds), some without a close frame, and a new session
// takes its place.
type SoakOptions struct {
	URL      string
	Clients  int
	Churn    float64       // sessions ended (and replaced) per second
	Duration time.Duration // churning time; then everyone leaves
	Status   func() (ServerStatus, error)
	Progress func(format string, args ...any)
}

// SoakSample is the server's state at one moment.
type SoakSample struct {
	Connections int    `json:"connections"`
	RSSMiB      uint64 `json:"rss_mib"`
	Goroutines  int    `json:"goroutines"`
	OpenFiles   int    `json:"open_files"`
}

// SoakResult compares the server before, at full load and after.
type SoakResult struct {
	Sessions   int64      `json:"sessions"`
	Messages   int64      `json:"messages"`   // sent
	Deliveries int64      `json:"deliveries"` // messages received by every session (history excluded)
	OwnLost    int64      `json:"own_lost"`   // own messages a sender never got back (each send reaches its sender too)
	Errors     int64      `json:"errors"`
	Before     SoakSample `json:"before"`
	Loaded     SoakSample `json:"loaded"`
	After      SoakSample `json:"after"`
}

// Soak runs the churn, then waits for the server to settle.
func Soak(ctx context.Context, o SoakOptions) (SoakResult, error) {
	if o.Clients < 1 || o.Churn <= 0 || o.Duration <= 0 || o.Status == nil {
		return SoakResult{}, fmt.Errorf("soak wants clients >= 1, churn > 0, a duration and the server status")
	}
	if o.Progress == nil {
		o.Progress = func(string, ...any) {}
	}
	raiseFileLimit()
	u, err := url.Parse(o.URL)
	if err != nil {
		return SoakResult{}, err
	}
	sample := func() SoakSample {
		st, err := o.Status()
		if err != nil {
			return SoakSample{}
		}
		return SoakSample{Connections: st.Connections["total"], RSSMiB: st.Memory["rss_bytes"] >> 20, Goroutines: st.Goroutines, OpenFiles: st.OpenFiles}
	}
	var res SoakResult
	res.Before = sample()
	var sessions, messages, errs atomic.Int64
	var tally deliveries
	end := time.Now().Add(o.Duration)
	mean := time.Duration(float64(o.Clients) / o.Churn * float64(time.Second))
	tag := fmt.Sprint(rand.Uint32())
	var gone vanished
	var wg sync.WaitGroup
	for i := 0; i < o.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.Int64N(int64(time.Second) * int64(1+o.Clients/500)))) // ramp up
			for n := 0; time.Now().Before(end) && ctx.Err() == nil; n++ {
				life := time.Duration(rand.ExpFloat64() * float64(mean))
				m, err := session(ctx, u, fmt.Sprintf("soak-%s-%d-%d", tag, i, n), min(life, time.Until(end)), &gone, &tally)
				messages.Add(m)
				sessions.Add(1)
				if err != nil {
					errs.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	tick := time.NewTicker(10 * time.Second)
	loadedAt := time.Now().Add(o.Duration / 2)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			s := sample()
			if time.Now().After(loadedAt) && res.Loaded.Connections == 0 {
				res.Loaded = s
			}
			o.Progress("%s  connections %d  rss %d MiB  goroutines %d  open files %d  sessions %d  deliveries %d  own lost %d  errors %d\n",
				time.Now().Format(time.TimeOnly), s.Connections, s.RSSMiB, s.Goroutines, s.OpenFiles, sessions.Load(), tally.received.Load(), tally.ownLost.Load(), errs.Load())
		}
	}
	tick.Stop()
	gone.closeAll()
	// Everyone has left: give the server time to drop the last connections
	// and tidy up (it returns memory 5 s after the churn stops).
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if s := sample(); s.Connections == 0 && time.Now().After(deadline.Add(-20*time.Second)) {
			break
		}
	}
	res.After = sample()
	res.Sessions, res.Messages, res.Errors = sessions.Load(), messages.Load(), errs.Load()
	res.Deliveries, res.OwnLost = tally.received.Load(), tally.ownLost.Load()
	return res, nil
}

// vanished holds the sockets of users who vanished: open, silent, never
// answering a ping, until the end of the soak.
type vanished struct {
	mu    sync.Mutex
	conns []*websocket.Conn
}

func (v *vanished) add(ws *websocket.Conn) {
	v.mu.Lock()
	v.conns = append(v.conns, ws)
	v.mu.Unlock()
}

func (v *vanished) closeAll() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, ws := range v.conns {
		ws.Close()
	}
	v.conns = nil
}

// deliveries counts what the soak's sessions received.
type deliveries struct {
	received atomic.Int64 // message entries in setMessageList pushes after the history
	ownLost  atomic.Int64
}

// session is one user's visit: log in, chat every few seconds, leave; one
// in ten vanishes without a close frame, leaving the server's keepalive to
// notice. Every message reaches its sender too: before leaving, a session
// waits (up to 5 s) for its own messages, and counts those that never came.
func session(ctx context.Context, u *url.URL, nick string, life time.Duration, gone *vanished, tally *deliveries) (int64, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024}
	ws, _, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		return 0, err
	}
	keep := false
	defer func() {
		if !keep {
			ws.Close()
		}
	}()
	own := []byte(`"message":"soak ` + nick + ` `)
	var ownGot atomic.Int64
	go func() { // count what the room says, reusing one buffer: the tool must stay lighter than the server
		history := true
		var b []byte
		for {
			_, rd, err := ws.NextReader()
			if err != nil {
				return
			}
			if b, err = readAll(b[:0], rd); err != nil {
				return
			}
			if !bytes.HasPrefix(b, []byte("setMessageList;")) {
				continue
			}
			if history { // the first list after the login is the history
				history = false
				continue
			}
			tally.received.Add(int64(bytes.Count(b, []byte(`"mid":`))))
			ownGot.Add(int64(bytes.Count(b, own)))
		}
	}()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`sample/im/login;{"nickname":"`+nick+`","brief":"soak"}`)); err != nil {
		return 0, err
	}
	var sent int64
	settle := func() { // wait for our own messages, count the missing
		for deadline := time.Now().Add(5 * time.Second); ownGot.Load() < sent && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		tally.ownLost.Add(max(0, sent-ownGot.Load()))
	}
	leave := time.After(life)
	chat := time.NewTicker(time.Duration(3+rand.IntN(5)) * time.Second)
	defer chat.Stop()
	for {
		select {
		case <-ctx.Done():
			return sent, nil
		case <-leave:
			settle()
			if rand.IntN(10) == 0 { // vanish: stop reading (no pongs), keep the socket open
				_ = ws.SetReadDeadline(time.Now())
				keep = true
				gone.add(ws)
				return sent, nil
			}
			_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			return sent, nil
		case <-chat.C:
			msg := `sample/im/send;{"message":"soak ` + nick + ` ` + strings.Repeat("x", rand.IntN(40)) + `"}`
			if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				return sent, err
			}
			sent++
		}
	}
}

// Table renders a soak result for people.
func (r SoakResult) Table() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "sessions %d, messages sent %d, deliveries %d, own messages lost %d, errors %d\n", r.Sessions, r.Messages, r.Deliveries, r.OwnLost, r.Errors)
	fmt.Fprintf(&sb, "%-8s %12s %8s %11s %11s\n", "", "connections", "RSS MiB", "goroutines", "open files")
	for _, row := range []struct {
		name string
		s    SoakSample
	}{{"before", r.Before}, {"loaded", r.Loaded}, {"after", r.After}} {
		fmt.Fprintf(&sb, "%-8s %12d %8d %11d %11d\n", row.name, row.s.Connections, row.s.RSSMiB, row.s.Goroutines, row.s.OpenFiles)
	}
	return sb.String()
}

// readAll appends what r holds to buf.
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
