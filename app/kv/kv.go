// Package kv keeps the small shared state a project needs beyond sessions:
// counters (member and message ids), tables (nickname → member) and capped
// logs (a chat's history). Three stores behind one interface, like the
// session stores: Memory (one process, gone at exit), File (a bbolt file
// under runtime/, survives a restart and a crash) and Redis (shared by
// every node of a cluster). The chat samples keep their members and history
// here; any project can.
package kv

import (
	"context"

	"dce/app/dce"
)

// Store is one place for counters, tables and logs. Names are the
// project's own: give them a prefix of the project ("im:", "session:").
type Store interface {
	// Next returns the next value of counter name: 1, 2, 3, …
	Next(ctx context.Context, name string) (int64, error)
	// Get returns the value of key in table.
	Get(ctx context.Context, table, key string) (value []byte, ok bool, err error)
	// Put sets key in table to value.
	Put(ctx context.Context, table, key string, value []byte) error
	// PutNew sets key in table to value unless key is there already, and
	// returns the value the table now holds and whether it was created by
	// this call: of two nodes registering one nickname, one wins.
	PutNew(ctx context.Context, table, key string, value []byte) (stored []byte, created bool, err error)
	// Append adds value under id (ascending: ids come from Next) to log,
	// keeping only the newest limit entries.
	Append(ctx context.Context, log string, id int64, value []byte, limit int) error
	// After returns the values of log with ids above after, ascending: the
	// newest limit of them (all when limit is 0).
	After(ctx context.Context, log string, after int64, limit int) ([][]byte, error)
	// Before returns up to limit values of log with ids below before,
	// ascending (the newest of them), and whether older ones remain.
	Before(ctx context.Context, log string, before int64, limit int) ([][]byte, bool, error)
	// Close releases the store.
	Close() error
}

// ErrUnavailable wraps every failure of a store that cannot be reached
// (Redis down): the request that needed it gets a 503 reply.
var ErrUnavailable = &dce.Error{Code: 503, Message: "the shared store is unavailable, try again"}

// JSONArray joins values that are each JSON (a log's messages) into one
// JSON array, without decoding them.
func JSONArray(values [][]byte) []byte {
	n := 2
	for _, v := range values {
		n += len(v) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v...)
	}
	return append(b, ']')
}
