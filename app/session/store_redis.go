package session

import (
	"context"
	"dce/app/internal/redisconn"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
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
	*redisconn.Guard // Do, Errors, Available, Close
	rdb              rueidis.Client
	prefix           string
}

// OpenRedisStore connects to rawURL (redis://[:password@]host:port/db) and
// checks that Redis answers: a Redis that is down at start is an error
// naming the URL.
func OpenRedisStore(rawURL, prefix string, log *slog.Logger) (*RedisStore, error) {
	rdb, err := redisconn.Dial(rawURL, "redis.url", false) // the guard's own loop reconnects
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	return &RedisStore{Guard: redisconn.NewGuard(rdb, rawURL, "session store", ErrUnavailable, log), rdb: rdb, prefix: prefix}, nil
}

func (s *RedisStore) key(id string) string { return s.prefix + "s:" + id }
func (s *RedisStore) memberKey(m int64) string {
	return s.prefix + "m:" + strconv.FormatInt(m, 10)
}

func (s *RedisStore) Load(ctx context.Context, id string, ttl time.Duration) (Record, bool, error) {
	var b []byte
	err := s.Do(ctx, func(ctx context.Context) (err error) {
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
	return s.Do(ctx, func(ctx context.Context) error {
		return s.rdb.Do(ctx, s.rdb.B().Set().Key(s.key(id)).Value(rueidis.BinaryString(b)).Px(ttl).Build()).Error()
	})
}

func (s *RedisStore) Delete(ctx context.Context, id string) error {
	return s.Do(ctx, func(ctx context.Context) error {
		return s.rdb.Do(ctx, s.rdb.B().Del().Key(s.key(id)).Build()).Error()
	})
}

func (s *RedisStore) AddMember(ctx context.Context, member int64, id string, ttl time.Duration) error {
	key := s.memberKey(member)
	return s.Do(ctx, func(ctx context.Context) error {
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
	return s.Do(ctx, func(ctx context.Context) error {
		return s.rdb.Do(ctx, s.rdb.B().Srem().Key(s.memberKey(member)).Member(id).Build()).Error()
	})
}

func (s *RedisStore) MemberSessions(ctx context.Context, member int64) ([]string, error) {
	var out []string
	err := s.Do(ctx, func(ctx context.Context) (err error) {
		out, err = s.rdb.Do(ctx, s.rdb.B().Smembers().Key(s.memberKey(member)).Build()).AsStrSlice()
		return err
	})
	return out, err
}

// Close stops the reconnect loop and the client.
func (s *RedisStore) Close() error {
	s.Guard.Close()
	return nil
}

// deleteAll deletes every key under the store's prefix (tests clean up
// with it).
func (s *RedisStore) deleteAll(ctx context.Context) { redisconn.DeleteAll(ctx, s.rdb, s.prefix) }
