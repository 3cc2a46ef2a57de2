package kv

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"strconv"

	"github.com/redis/rueidis"

	"dce/app/internal/redisconn"
)

// Redis is a Store shared by every node: a counter is PREFIX+"c:"+NAME, a
// table the hash PREFIX+"t:"+TABLE, a log the sorted set PREFIX+"l:"+LOG
// (score the id, member the id's 8 bytes then the value). A Redis that
// stops answering makes every call fail at once with ErrUnavailable (a 503
// reply) until it answers again.
type Redis struct {
	*redisconn.Guard // Errors, Available
	rdb              rueidis.Client
	prefix           string
}

var _ Store = (*Redis)(nil)

// OpenRedis connects to rawURL and checks that Redis answers.
func OpenRedis(rawURL, prefix string, log *slog.Logger) (*Redis, error) {
	rdb, err := redisconn.Dial(rawURL, "redis.url", false)
	if err != nil {
		return nil, fmt.Errorf("kv store: %w", err)
	}
	return &Redis{Guard: redisconn.NewGuard(rdb, rawURL, "shared store", ErrUnavailable, log), rdb: rdb, prefix: prefix}, nil
}

// Next implements Store.
func (r *Redis) Next(ctx context.Context, name string) (n int64, err error) {
	err = r.Do(ctx, func(ctx context.Context) error {
		n, err = r.rdb.Do(ctx, r.rdb.B().Incr().Key(r.prefix+"c:"+name).Build()).AsInt64()
		return err
	})
	return n, err
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, table, key string) (v []byte, ok bool, err error) {
	err = r.Do(ctx, func(ctx context.Context) error {
		v, err = r.rdb.Do(ctx, r.rdb.B().Hget().Key(r.prefix+"t:"+table).Field(key).Build()).AsBytes()
		return err
	})
	if rueidis.IsRedisNil(err) {
		return nil, false, nil
	}
	return v, err == nil, err
}

// Put implements Store.
func (r *Redis) Put(ctx context.Context, table, key string, value []byte) error {
	return r.Do(ctx, func(ctx context.Context) error {
		return r.rdb.Do(ctx, r.rdb.B().Hset().Key(r.prefix+"t:"+table).FieldValue().FieldValue(key, rueidis.BinaryString(value)).Build()).Error()
	})
}

// PutNew implements Store: HSETNX, then HGET when another got there first.
func (r *Redis) PutNew(ctx context.Context, table, key string, value []byte) (stored []byte, created bool, err error) {
	err = r.Do(ctx, func(ctx context.Context) error {
		created, err = r.rdb.Do(ctx, r.rdb.B().Hsetnx().Key(r.prefix+"t:"+table).Field(key).Value(rueidis.BinaryString(value)).Build()).AsBool()
		if err != nil || created {
			stored = value
			return err
		}
		stored, err = r.rdb.Do(ctx, r.rdb.B().Hget().Key(r.prefix+"t:"+table).Field(key).Build()).AsBytes()
		return err
	})
	return stored, created, err
}

// Append implements Store: ZADD and the trim in one MULTI.
func (r *Redis) Append(ctx context.Context, log string, id int64, value []byte, limit int) error {
	k := r.prefix + "l:" + log
	member := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), uint64(id))
	member = append(member, value...)
	cmds := rueidis.Commands{
		r.rdb.B().Multi().Build(),
		r.rdb.B().Zadd().Key(k).ScoreMember().ScoreMember(float64(id), rueidis.BinaryString(member)).Build(),
	}
	if limit > 0 {
		cmds = append(cmds, r.rdb.B().Zremrangebyrank().Key(k).Start(0).Stop(int64(-limit-1)).Build())
	}
	cmds = append(cmds, r.rdb.B().Exec().Build())
	return r.Do(ctx, func(ctx context.Context) error {
		for _, res := range r.rdb.DoMulti(ctx, cmds...) {
			if err := res.Error(); err != nil {
				return err
			}
		}
		return nil
	})
}

// After implements Store.
func (r *Redis) After(ctx context.Context, log string, after int64, limit int) ([][]byte, error) {
	k := r.prefix + "l:" + log
	var raw []string
	err := r.Do(ctx, func(ctx context.Context) (err error) {
		cmd := r.rdb.B().Zrange().Key(k).Min("+inf").Max("(" + strconv.FormatInt(after, 10)).Byscore().Rev()
		if limit > 0 {
			raw, err = r.rdb.Do(ctx, cmd.Limit(0, int64(limit)).Build()).AsStrSlice()
		} else {
			raw, err = r.rdb.Do(ctx, cmd.Build()).AsStrSlice()
		}
		return err
	})
	slices.Reverse(raw)
	return strip(raw), err
}

// Before implements Store.
func (r *Redis) Before(ctx context.Context, log string, before int64, limit int) ([][]byte, bool, error) {
	k := r.prefix + "l:" + log
	var raw []string
	err := r.Do(ctx, func(ctx context.Context) (err error) {
		raw, err = r.rdb.Do(ctx, r.rdb.B().Zrange().Key(k).Min("("+strconv.FormatInt(before, 10)).Max("-inf").Byscore().Rev().Limit(0, int64(limit)+1).Build()).AsStrSlice()
		return err
	})
	more := len(raw) > limit
	if more {
		raw = raw[:limit]
	}
	slices.Reverse(raw)
	return strip(raw), more, err
}

// strip drops the id in front of each value.
func strip(raw []string) [][]byte {
	out := make([][]byte, 0, len(raw))
	for _, m := range raw {
		if len(m) >= 8 {
			out = append(out, []byte(m[8:]))
		}
	}
	return out
}

// Close implements Store.
func (r *Redis) Close() error {
	r.Guard.Close()
	return nil
}

// DeleteAll deletes every key under the store's prefix (tests clean up
// with it).
func (r *Redis) DeleteAll(ctx context.Context) { redisconn.DeleteAll(ctx, r.rdb, r.prefix) }
