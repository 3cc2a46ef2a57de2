package session

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileStore keeps records in one bbolt file (runtime/sessions.db): one
// node, survives a restart and a crash (every write is a committed,
// fsynced transaction). Expired records are swept every SweepEvery.
type FileStore struct {
	db   *bolt.DB
	now  func() time.Time
	stop chan struct{}
	done sync.WaitGroup
}

// SweepEvery is how often a FileStore drops expired records.
const SweepEvery = 30 * time.Second

var (
	bucketSessions = []byte("sessions") // id → fileRecord
	bucketMembers  = []byte("members")  // member → {id: expiry}
)

type fileRecord struct {
	R       Record `json:"r"`
	Expires int64  `json:"e"` // unix nanoseconds
}

// OpenFileStore opens (or creates) the store at path. Another process
// holding the file is an error after a second, not a wait.
func OpenFileStore(path string) (*FileStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("session store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSessions, bucketMembers} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("session store %s: %w", path, err)
	}
	s := &FileStore{db: db, now: time.Now, stop: make(chan struct{})}
	s.done.Add(1)
	go s.sweeper()
	return s, nil
}

func (s *FileStore) sweeper() {
	defer s.done.Done()
	t := time.NewTicker(SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = s.Sweep()
		case <-s.stop:
			return
		}
	}
}

// Sweep deletes the expired records and index entries.
func (s *FileStore) Sweep() error {
	now := s.now().UnixNano()
	return s.db.Update(func(tx *bolt.Tx) error {
		var dead [][]byte
		_ = tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			var fr fileRecord
			if json.Unmarshal(v, &fr) != nil || fr.Expires <= now {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range dead {
			_ = tx.Bucket(bucketSessions).Delete(k)
		}
		dead = dead[:0]
		_ = tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			var ids map[string]int64
			if json.Unmarshal(v, &ids) != nil || len(ids) == 0 {
				dead = append(dead, append([]byte(nil), k...))
				return nil
			}
			for _, exp := range ids {
				if exp > now {
					return nil
				}
			}
			dead = append(dead, append([]byte(nil), k...))
			return nil
		})
		for _, k := range dead {
			_ = tx.Bucket(bucketMembers).Delete(k)
		}
		return nil
	})
}

func (s *FileStore) Load(_ context.Context, id string, ttl time.Duration) (Record, bool, error) {
	var fr fileRecord
	found := false
	now := s.now()
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSessions).Get([]byte(id))
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, &fr); err != nil {
			return nil // unreadable: as if absent
		}
		found = fr.Expires > now.UnixNano()
		return nil
	})
	if err != nil || !found {
		return Record{}, false, err
	}
	// Renewing costs a write: only when a tenth of the ttl has passed.
	if time.Duration(fr.Expires-now.UnixNano()) < ttl-ttl/10 {
		if err := s.Save(context.Background(), id, fr.R, ttl); err != nil {
			return Record{}, false, err
		}
	}
	return fr.R, true, nil
}

func (s *FileStore) Save(_ context.Context, id string, r Record, ttl time.Duration) error {
	b, err := json.Marshal(fileRecord{R: r, Expires: s.now().Add(ttl).UnixNano()})
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSessions).Put([]byte(id), b) })
}

func (s *FileStore) Delete(_ context.Context, id string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSessions).Delete([]byte(id)) })
}

func (s *FileStore) member(member int64, f func(ids map[string]int64)) error {
	key := []byte(strconv.FormatInt(member, 10))
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMembers)
		ids := map[string]int64{}
		if v := b.Get(key); v != nil {
			_ = json.Unmarshal(v, &ids)
		}
		f(ids)
		if len(ids) == 0 {
			return b.Delete(key)
		}
		v, err := json.Marshal(ids)
		if err != nil {
			return err
		}
		return b.Put(key, v)
	})
}

func (s *FileStore) AddMember(_ context.Context, member int64, id string, ttl time.Duration) error {
	exp := s.now().Add(ttl).UnixNano()
	return s.member(member, func(ids map[string]int64) { ids[id] = exp })
}

func (s *FileStore) RemoveMember(_ context.Context, member int64, id string) error {
	return s.member(member, func(ids map[string]int64) { delete(ids, id) })
}

func (s *FileStore) MemberSessions(_ context.Context, member int64) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMembers).Get([]byte(strconv.FormatInt(member, 10)))
		if v == nil {
			return nil
		}
		var ids map[string]int64
		if err := json.Unmarshal(v, &ids); err != nil {
			return nil
		}
		for id := range ids {
			out = append(out, id)
		}
		return nil
	})
	return out, err
}

// Close stops the sweeper and closes the file.
func (s *FileStore) Close() error {
	close(s.stop)
	s.done.Wait()
	return s.db.Close()
}
