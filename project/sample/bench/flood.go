package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// FloodResult is what a flood run saw: idle WebSockets opened without a
// login, as a hostile client holding connections would.
type FloodResult struct {
	Opened   int64   `json:"opened"`
	Refused  int64   `json:"refused"` // 503 or 429 before the upgrade
	Failed   int64   `json:"failed"`  // no answer (timeout, reset)
	HeldS    float64 `json:"held_s"`
	Survived int64   `json:"survived"` // still open at the end of the hold
}

// Flood opens o.Clients idle WebSockets, o.Ramp at a time, holds them for
// o.Duration, and counts what the server did with them.
func Flood(ctx context.Context, o Options) (FloodResult, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return FloodResult{}, err
	}
	raiseFileLimit()
	var res FloodResult
	var opened, refused, failed atomic.Int64
	conns := make([]*websocket.Conn, o.Clients)
	loopback := isLoopback(u.Hostname())
	ramped(ctx, o.Clients, o.Ramp, func(i int) {
		d := dialer(i, loopback, 512)
		d.HandshakeTimeout = 10 * time.Second
		ws, resp, err := d.DialContext(ctx, u.String(), nil)
		switch {
		case err == nil:
			opened.Add(1)
			conns[i] = ws
		case resp != nil && (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests):
			refused.Add(1)
		default:
			failed.Add(1)
		}
	})
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "opened %d, refused %d, failed %d; holding %v\n", opened.Load(), refused.Load(), failed.Load(), o.Duration)
	}
	// Hold: read (and answer pings) until the end.
	var alive atomic.Int64
	var readers sync.WaitGroup
	for _, ws := range conns {
		if ws == nil {
			continue
		}
		alive.Add(1)
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				if _, _, err := ws.NextReader(); err != nil {
					alive.Add(-1)
					return
				}
			}
		}()
	}
	t0 := time.Now()
	select {
	case <-time.After(o.Duration):
	case <-ctx.Done():
	}
	res.HeldS = time.Since(t0).Seconds()
	res.Survived = alive.Load()
	for _, ws := range conns {
		if ws != nil {
			ws.Close()
		}
	}
	readers.Wait()
	res.Opened, res.Refused, res.Failed = opened.Load(), refused.Load(), failed.Load()
	return res, nil
}

// Table renders a flood result for people.
func (r FloodResult) Table() string {
	return fmt.Sprintf("opened %d, refused %d (503/429), failed %d; %d still open after %.0f s\n", r.Opened, r.Refused, r.Failed, r.Survived, r.HeldS)
}
