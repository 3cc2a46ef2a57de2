package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Guard keeps a lost Redis from taking requests down with it: the first
// failure marks Redis unavailable (one warning), every call then fails at
// once with the guard's error (a 503 reply) instead of waiting, and a
// background loop pings with backoff (100 ms doubling to 5 s) until Redis
// answers again (one info line).
type Guard struct {
	rdb  rueidis.Client
	url  string // without the password, for messages
	what string // "session store", "shared store": the subject of the log lines
	fail error  // wrapped by every error the guard returns
	log  *slog.Logger

	down   atomic.Bool
	errors atomic.Uint64
	mu     sync.Mutex // guards the recovery loop's start and stop
	stop   chan struct{}
	done   sync.WaitGroup
}

// NewGuard guards rdb (connected to rawURL); its errors wrap fail.
func NewGuard(rdb rueidis.Client, rawURL, what string, fail error, log *slog.Logger) *Guard {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{rdb: rdb, url: Redact(rawURL), what: what, fail: fail, log: log, stop: make(chan struct{})}
}

// Errors counts the calls that failed because Redis did not answer.
func (g *Guard) Errors() uint64 { return g.errors.Load() }

// Available reports whether Redis answered the last call.
func (g *Guard) Available() bool { return !g.down.Load() }

// Do runs f (with a 2-second deadline) unless Redis is known to be down;
// a connection failure starts an outage. A Redis error reply (not a
// connection failure) and "no such key" are returned as they are.
func (g *Guard) Do(ctx context.Context, f func(ctx context.Context) error) error {
	if g.down.Load() {
		g.errors.Add(1)
		return fmt.Errorf("%w: Redis at %s is down", g.fail, g.url)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var err error
	for try := 0; try < 2; try++ { // once more: the first may meet a connection Redis closed
		err = f(ctx)
		var re *rueidis.RedisError
		if err == nil || rueidis.IsRedisNil(err) || errors.As(err, &re) { // Redis answered
			return err
		}
	}
	g.outage(err)
	g.errors.Add(1)
	return fmt.Errorf("%w: Redis at %s: %v", g.fail, g.url, err)
}

func (g *Guard) outage(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down.Load() {
		return
	}
	select {
	case <-g.stop:
		return // closing
	default:
	}
	g.down.Store(true)
	g.log.Warn(g.what+" unavailable: requests that need it get 503 until it answers", "redis", g.url, "err", err.Error())
	g.done.Add(1)
	go g.reconnect()
}

func (g *Guard) reconnect() {
	defer g.done.Done()
	began := time.Now()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-time.After(backoff):
		case <-g.stop:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := g.rdb.Do(ctx, g.rdb.B().Ping().Build()).Error()
		cancel()
		if err == nil {
			g.down.Store(false)
			g.log.Info(g.what+" available again", "redis", g.url, "outage", time.Since(began).Round(time.Millisecond).String())
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Close stops the reconnect loop and the client.
func (g *Guard) Close() {
	g.mu.Lock()
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	g.mu.Unlock()
	g.done.Wait()
	g.rdb.Close()
}
