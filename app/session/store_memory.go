package session

import (
	"context"
	"maps"
	"sync"
	"time"
)

// MemoryStore keeps records in this process: the default store of one
// node, nothing survives a restart. Expired records are swept as new ones
// come, so it never holds more than what lived within one ttl.
type MemoryStore struct {
	mu        sync.Mutex
	records   map[string]memRecord
	members   map[int64]map[string]bool
	nextSweep time.Time
	now       func() time.Time
}

type memRecord struct {
	r       Record
	expires time.Time
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{records: map[string]memRecord{}, members: map[int64]map[string]bool{}, now: time.Now}
}

func (s *MemoryStore) Load(_ context.Context, id string, ttl time.Duration) (Record, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	e, ok := s.records[id]
	if !ok || !now.Before(e.expires) {
		return Record{}, false, nil
	}
	e.expires = now.Add(ttl)
	s.records[id] = e
	return copyRecord(e.r), true, nil
}

func (s *MemoryStore) Save(_ context.Context, id string, r Record, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweep(now, ttl)
	s.records[id] = memRecord{r: copyRecord(r), expires: now.Add(ttl)}
	return nil
}

// sweep drops expired records at most once per ttl/4 (s.mu held).
func (s *MemoryStore) sweep(now time.Time, ttl time.Duration) {
	if now.Before(s.nextSweep) {
		return
	}
	s.nextSweep = now.Add(max(ttl/4, time.Second))
	for id, e := range s.records {
		if !now.Before(e.expires) {
			delete(s.records, id)
		}
	}
	for m, ids := range s.members {
		for id := range ids {
			if _, ok := s.records[id]; !ok {
				delete(ids, id)
			}
		}
		if len(ids) == 0 {
			delete(s.members, m)
		}
	}
}

func (s *MemoryStore) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, id)
	return nil
}

func (s *MemoryStore) AddMember(_ context.Context, member int64, id string, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members[member] == nil {
		s.members[member] = map[string]bool{}
	}
	s.members[member][id] = true
	return nil
}

func (s *MemoryStore) RemoveMember(_ context.Context, member int64, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.members[member], id)
	if len(s.members[member]) == 0 {
		delete(s.members, member)
	}
	return nil
}

func (s *MemoryStore) MemberSessions(_ context.Context, member int64) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.members[member]))
	for id := range s.members[member] {
		out = append(out, id)
	}
	return out, nil
}

func (s *MemoryStore) Close() error { return nil }

func copyRecord(r Record) Record {
	r.Data = maps.Clone(r.Data)
	return r
}
