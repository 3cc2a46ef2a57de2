package session

import (
	"context"
	"dce/app/internal/redisconn"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
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
	rdb    rueidis.Client
	prefix string
	url    string // without the password, for messages
	log    *slog.Logger

	down   atomic.Bool
	errors atomic.Uint64 // calls that failed for want of Redis
	mu     sync.Mutex    // guards the recovery loop's start
	stop   chan struct{}
	done   sync.WaitGroup
}

// OpenRedisStore connects to rawURL (redis://[:password@]host:port/db) and
// checks that Redis answers: a Redis that is down at start is an error
// naming the URL.
func OpenRedisStore(rawURL, prefix string, log *slog.Logger) (*RedisStore, error) {
	rdb, err := redisconn.Dial(rawURL, "redis.url", false) // the store's own loop reconnects
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RedisStore{rdb: rdb, prefix: prefix, url: redisconn.Redact(rawURL), log: log, stop: make(chan struct{})}, nil
}

func (s *RedisStore) ping(ctx context.Context) error {
	return s.rdb.Do(ctx, s.rdb.B().Ping().Build()).Error()
}

// Errors counts the calls that failed because Redis did not answer.
func (s *RedisStore) Errors() uint64 { return s.errors.Load() }

// Available reports whether Redis answered the last call.
func (s *RedisStore) Available() bool { return !s.down.Load() }

// do runs one call unless Redis is known to be down; a connection failure
// starts an outage.
func (s *RedisStore) do(ctx context.Context, f func(ctx context.Context) error) error {
	if s.down.Load() {
		s.errors.Add(1)
		return fmt.Errorf("%w: Redis at %s is down", ErrUnavailable, s.url)
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
	s.errors.Add(1)
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
		err := s.ping(ctx)
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
		b, err = s.rdb.Do(ctx, s.rdb.B().Getex().Key(s.key(id)).Px(ttl).Build()).AsBytes()
		return err
	})
	if rueidis.IsRedisNil(err) {
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
	return s.do(ctx, func(ctx context.Context) error {
		return s.rdb.Do(ctx, s.rdb.B().Set().Key(s.key(id)).Value(rueidis.BinaryString(b)).Px(ttl).Build()).Error()
	})
}

func (s *RedisStore) Delete(ctx context.Context, id string) error {
	return s.do(ctx, func(ctx context.Context) error {
		return s.rdb.Do(ctx, s.rdb.B().Del().Key(s.key(id)).Build()).Error()
	})
}

func (s *RedisStore) AddMember(ctx context.Context, member int64, id string, ttl time.Duration) error {
	key := s.memberKey(member)
	return s.do(ctx, func(ctx context.Context) error {
		for _, r := range s.rdb.DoMulti(ctx,
			s.rdb.B().Sadd().Key(key).Member(id).Build(),
			s.rdb.B().Pexpire().Key(key).Milliseconds(ttl.Milliseconds()).Build(),
		) {
			if err := r.Error(); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *RedisStore) RemoveMember(ctx context.Context, member int64, id string) error {
	return s.do(ctx, func(ctx context.Context) error {
		return s.rdb.Do(ctx, s.rdb.B().Srem().Key(s.memberKey(member)).Member(id).Build()).Error()
	})
}

func (s *RedisStore) MemberSessions(ctx context.Context, member int64) ([]string, error) {
	var out []string
	err := s.do(ctx, func(ctx context.Context) (err error) {
		out, err = s.rdb.Do(ctx, s.rdb.B().Smembers().Key(s.memberKey(member)).Build()).AsStrSlice()
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
	s.rdb.Close()
	return nil
}

// deleteAll deletes every key under the store's prefix (tests clean up
// with it).
func (s *RedisStore) deleteAll(ctx context.Context) {
	keys, err := s.rdb.Do(ctx, s.rdb.B().Keys().Pattern(s.prefix+"*").Build()).AsStrSlice()
	if err == nil && len(keys) > 0 {
		s.rdb.Do(ctx, s.rdb.B().Del().Key(keys...).Build())
	}
}
