package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// joinTimeout bounds one client's wait for its list and history.
const joinTimeout = 30 * time.Second

// JoinResult is what a join run measures; it is part of Result.
type JoinResult struct {
	JoinP50ms     float64 `json:"join_p50_ms,omitempty"`
	JoinP99ms     float64 `json:"join_p99_ms,omitempty"`
	JoinMaxMs     float64 `json:"join_max_ms,omitempty"`
	JoinLastP99ms float64 `json:"join_last1000_p99_ms,omitempty"` // the last 1,000 joins, into the fullest room
	AllInS        float64 `json:"all_in_s,omitempty"`
	Failures      int     `json:"failures"`
	ProbeP50ms    float64 `json:"probe_p50_ms,omitempty"`
	ProbeP99ms    float64 `json:"probe_p99_ms,omitempty"`
	CPUmsPerJoin  float64 `json:"server_cpu_ms_per_join,omitempty"`
}

// Join logs N clients in, o.Ramp at a time (as many people opening the page
// at once), each timing its login until its own online list and history
// have arrived. Then o.Probes newcomers join the full room one by one.
// The clients stay connected, reading, until the end.
func Join(ctx context.Context, o Options) (Result, error) {
	if o.Probes == 0 {
		o.Probes = 20
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return Result{}, err
	}
	raiseFileLimit()
	r := &run{o: o, tag: strconv.FormatUint(rand.Uint64()%1e9, 36)}
	res := Result{Mode: "join", Clients: o.Clients}
	if o.Fill > 0 {
		if err := r.fill(ctx, u, o.Fill); err != nil {
			return res, fmt.Errorf("filling the history: %w", err)
		}
	}
	before, okBefore := r.status()
	waits := make([]time.Duration, o.Clients)
	conns := make([]*websocket.Conn, o.Clients)
	defer func() {
		for _, ws := range conns {
			if ws != nil {
				ws.Close()
			}
		}
	}()
	var failures atomic.Int64
	var firstErr error
	var errMu sync.Mutex
	var in atomic.Int64
	loopback := isLoopback(u.Hostname())
	t0 := time.Now()
	ramped(ctx, o.Clients, o.Ramp, func(i int) {
		ws, wait, err := r.joinOne(ctx, u, fmt.Sprintf("join-%s-%d", r.tag, i), i, loopback)
		conns[i] = ws
		if err != nil {
			failures.Add(1)
			errMu.Lock()
			if firstErr == nil {
				firstErr = fmt.Errorf("client %d: %w", i, err)
			}
			errMu.Unlock()
			return
		}
		waits[i] = wait
		if n := in.Add(1); o.Progress != nil && n%1000 == 0 {
			fmt.Fprintf(o.Progress, "%5.1fs  in %d/%d\n", time.Since(t0).Seconds(), n, o.Clients)
		}
	})
	res.AllInS = time.Since(t0).Seconds()
	res.Connected = int(in.Load())
	res.Failures = int(failures.Load())
	if after, ok := r.status(); ok && okBefore && res.Connected > 0 {
		res.CPUmsPerJoin = 1000 * (after.CPUSeconds - before.CPUSeconds) / float64(res.Connected)
		res.ServerRSSMiB = float64(after.Memory["rss_bytes"]) / (1 << 20)
	}
	ok := make([]time.Duration, 0, len(waits))
	last := make([]time.Duration, 0, 1000)
	for i, w := range waits {
		if w > 0 {
			ok = append(ok, w)
			if i >= o.Clients-1000 {
				last = append(last, w)
			}
		}
	}
	res.JoinP50ms, res.JoinP99ms, res.JoinMaxMs = pct(ok, 0.50), pct(ok, 0.99), pct(ok, 1)
	res.JoinLastP99ms = pct(last, 0.99)

	// Probes: one newcomer at a time into the full room.
	var probes []time.Duration
	for p := 0; p < o.Probes && ctx.Err() == nil; p++ {
		ws, wait, err := r.joinOne(ctx, u, fmt.Sprintf("probe-%s-%d", r.tag, p), o.Clients+p, loopback)
		if ws != nil {
			ws.Close()
		}
		if err != nil {
			res.Failures++
			continue
		}
		probes = append(probes, wait)
	}
	res.ProbeP50ms, res.ProbeP99ms = pct(probes, 0.50), pct(probes, 0.99)
	if res.Failures > 0 && firstErr != nil && o.Progress != nil {
		fmt.Fprintf(o.Progress, "first failure: %v\n", firstErr)
	}
	return res, nil
}

// joinOne connects and logs in one client and returns how long its own
// online list and history took to arrive after the login was sent. The
// connection stays open, its frames read and discarded.
func (r *run) joinOne(ctx context.Context, u *url.URL, nick string, i int, loopback bool) (*websocket.Conn, time.Duration, error) {
	ws, _, err := dialer(i, loopback, 4096).DialContext(ctx, u.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	got := make(chan struct{})
	go func() { // the reader: waits for the list and the history, then drains
		list, history := false, false
		head := make([]byte, 16)
		for {
			_, rd, err := ws.NextReader()
			if err != nil {
				if !(list && history) {
					close(got)
				}
				return
			}
			n, _ := io.ReadFull(rd, head)
			_, _ = io.Copy(io.Discard, rd)
			if list && history {
				continue
			}
			switch {
			case hasPrefix(head[:n], "setUserList;"):
				list = true
			case hasPrefix(head[:n], "setMessageList;"):
				history = true
			}
			if list && history {
				close(got)
			}
		}
	}()
	start := time.Now()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(r.loginFrame(nick, ""))); err != nil {
		return ws, 0, err
	}
	select {
	case <-got:
	case <-time.After(joinTimeout):
		return ws, 0, fmt.Errorf("no list and history within %v", joinTimeout)
	case <-ctx.Done():
		return ws, 0, ctx.Err()
	}
	return ws, max(time.Since(start), 1), nil
}

// pct is the q-quantile of ds in milliseconds (q = 1: the maximum).
func pct(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	i = min(max(i, 0), len(s)-1)
	return float64(s[i].Microseconds()) / 1000
}

// fill sends n messages of the longest size (1,024 characters) from one
// client, paced under the server's rate limit, and waits for the last.
func (r *run) fill(ctx context.Context, u *url.URL, n int) error {
	ws, _, err := dialer(0, false, 4096).DialContext(ctx, u.String(), nil)
	if err != nil {
		return err
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`sample/im/login;{"nickname":"filler-`+r.tag+`","presence":"delta","history":1}`)); err != nil {
		return err
	}
	pace := time.Duration(0)
	if r.o.MaxRate > 0 {
		pace = time.Duration(float64(time.Second) / (r.o.MaxRate * 0.9))
	}
	pad := strings.Repeat("x", 1024-12)
	for i := 0; i < n; i++ {
		id := ""
		if i == n-1 {
			id = ":1" // the last one is acknowledged
		}
		if err := ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`sample/im/send%s;{"message":"%010d %s"}`, id, i, pad))); err != nil {
			return err
		}
		time.Sleep(pace)
	}
	_ = ws.SetReadDeadline(time.Now().Add(joinTimeout))
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return err
		}
		if hasPrefix(b, "sample/im/send:1;") {
			if !strings.Contains(string(b), `"data"`) {
				return fmt.Errorf("the last message was refused: %s", b)
			}
			return nil
		}
	}
}
