package session

import (
	"context"
	"encoding/json"
	"time"

	"dce/app/dce"
)

// Record is what a store keeps of one session.
type Record struct {
	Member int64                      `json:"m,omitempty"` // the logged-in member; 0 for none
	Data   map[string]json.RawMessage `json:"d,omitempty"` // the session's values, as JSON
}

// Store keeps session records and, per member, the sessions logged in as
// it. Every record expires ttl after its last use (sliding); a member's
// index expires with its last session. Implementations: MemoryStore
// (one process), FileStore (bbolt, survives a restart), RedisStore (shared
// by every node).
type Store interface {
	// Load returns the record of id and renews its ttl; ok is false for an
	// unknown or expired id.
	Load(ctx context.Context, id string, ttl time.Duration) (r Record, ok bool, err error)
	// Save writes the record of id with a fresh ttl.
	Save(ctx context.Context, id string, r Record, ttl time.Duration) error
	// Delete forgets id.
	Delete(ctx context.Context, id string) error
	// AddMember records that session id is logged in as member.
	AddMember(ctx context.Context, member int64, id string, ttl time.Duration) error
	// RemoveMember forgets that session id is logged in as member.
	RemoveMember(ctx context.Context, member int64, id string) error
	// MemberSessions lists the sessions recorded for member; some may have
	// expired since (callers prune them).
	MemberSessions(ctx context.Context, member int64) ([]string, error)
	// Close releases the store.
	Close() error
}

// ErrUnavailable wraps a store failure. It is a *dce.Error: an action that
// returns it (or an error wrapping it) answers 503, and the connection
// stays; the details go to the log, not to the client.
var ErrUnavailable = &dce.Error{Code: 503, Message: "session store unavailable: try again shortly"}
