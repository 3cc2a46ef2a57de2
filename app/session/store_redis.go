package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore keeps records in Redis, shared by every node: the record of
// session ID under PREFIX+"s:"+ID (JSON, expiring), the sessions of a
// member in the set PREFIX+"m:"+MEMBER (expiring with its newest session).
//
// A lost Redis does not take requests down with it: the first failure
// marks the store unavailable (one warning), every call then fails at once
// with ErrUnavailable (a 503 reply) instead of waiting for Redis, and a
// background loop pings with backoff (100 ms doubling to 5 s) until Redis
// answers again (one info line).
type RedisStore struct {
	rdb    *redis.Client
	prefix string
	url    string // without the password, for messages
	log    *slog.Logger

	down atomic.Bool
	mu   sync.Mutex // guards the recovery loop's start
	stop chan struct{}
	done sync.WaitGroup
}

// OpenRedisStore connects to rawURL (redis://[:password@]host:port/db) and
// checks that Redis answers: a Redis that is down at start is an error
// naming the URL.
func OpenRedisStore(rawURL, prefix string, log *slog.Logger) (*RedisStore, error) {
	shown := redactURL(rawURL)
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis.url %s: %w", shown, err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, time.Second, time.Second
	opt.MaxRetries = -1   // a failure is reported at once: the store's own loop reconnects
	opt.DialerRetries = 1 // likewise for dialing
	quietRedis.Do(func() { redis.SetLogger(quietLog{}) })
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &RedisStore{rdb: redis.NewClient(opt), prefix: prefix, url: shown, log: log, stop: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("session store: Redis at %s does not answer: %w", shown, err)
	}
	return s, nil
}

// quietLog drops the client's own log lines (a failed dial per retry): the
// store logs an outage once, with the server's logger.
type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

var quietRedis sync.Once

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Available reports whether Redis answered the last call.
func (s *RedisStore) Available() bool { return !s.down.Load() }

// do runs one call unless Redis is known to be down; a connection failure
// starts an outage.
func (s *RedisStore) do(ctx context.Context, f func(ctx context.Context) error) error {
	if s.down.Load() {
		return fmt.Errorf("%w: Redis at %s is down", ErrUnavailable, s.url)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := f(ctx)
	if err == nil || errors.Is(err, redis.Nil) {
		return err
	}
	var re redis.Error
	if errors.As(err, &re) { // Redis answered: not an outage
		return err
	}
	s.outage(err)
	return fmt.Errorf("%w: Redis at %s: %v", ErrUnavailable, s.url, err)
}

func (s *RedisStore) outage(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down.Load() {
		return
	}
	select {
	case <-s.stop:
		return // closing
	default:
	}
	s.down.Store(true)
	s.log.Warn("session store unavailable: requests that need it get 503 until it answers", "redis", s.url, "err", err.Error())
	s.done.Add(1)
	go s.reconnect()
}

func (s *RedisStore) reconnect() {
	defer s.done.Done()
	began := time.Now()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-time.After(backoff):
		case <-s.stop:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			s.down.Store(false)
			s.log.Info("session store available again", "redis", s.url, "outage", time.Since(began).Round(time.Millisecond).String())
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *RedisStore) key(id string) string { return s.prefix + "s:" + id }
func (s *RedisStore) memberKey(m int64) string {
	return s.prefix + "m:" + strconv.FormatInt(m, 10)
}

func (s *RedisStore) Load(ctx context.Context, id string, ttl time.Duration) (Record, bool, error) {
	var b []byte
	err := s.do(ctx, func(ctx context.Context) (err error) {
		b, err = s.rdb.GetEx(ctx, s.key(id), ttl).Bytes()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	var r Record
	if json.Unmarshal(b, &r) != nil {
		return Record{}, false, nil // unreadable: as if absent
	}
	return r, true, nil
}

func (s *RedisStore) Save(ctx context.Context, id string, r Record, ttl time.Duration) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.do(ctx, func(ctx context.Context) error { return s.rdb.Set(ctx, s.key(id), b, ttl).Err() })
}

func (s *RedisStore) Delete(ctx context.Context, id string) error {
	return s.do(ctx, func(ctx context.Context) error { return s.rdb.Del(ctx, s.key(id)).Err() })
}

func (s *RedisStore) AddMember(ctx context.Context, member int64, id string, ttl time.Duration) error {
	return s.do(ctx, func(ctx context.Context) error {
		_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.SAdd(ctx, s.memberKey(member), id)
			p.PExpire(ctx, s.memberKey(member), ttl)
			return nil
		})
		return err
	})
}

func (s *RedisStore) RemoveMember(ctx context.Context, member int64, id string) error {
	return s.do(ctx, func(ctx context.Context) error { return s.rdb.SRem(ctx, s.memberKey(member), id).Err() })
}

func (s *RedisStore) MemberSessions(ctx context.Context, member int64) ([]string, error) {
	var out []string
	err := s.do(ctx, func(ctx context.Context) (err error) {
		out, err = s.rdb.SMembers(ctx, s.memberKey(member)).Result()
		return err
	})
	return out, err
}

// Close stops the reconnect loop and the client.
func (s *RedisStore) Close() error {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	s.done.Wait()
	return s.rdb.Close()
}
