package kv

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// File is a Store in one bbolt file: one node, survives a restart and a
// crash (every write is a committed, fsynced transaction).
type File struct {
	db *bolt.DB
}

var _ Store = (*File)(nil)

var (
	bucketCounters = []byte("counters") // name → next value, big-endian
	bucketCounts   = []byte("counts")   // log → entries held, big-endian
)

func tableBucket(name string) []byte { return []byte("t:" + name) }
func logBucket(name string) []byte   { return []byte("l:" + name) }

func key(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

// OpenFile opens (or creates, with its folder) the store at path. Another
// process holding the file is an error after a second, not a wait.
func OpenFile(path string) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("kv store %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("kv store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCounters, bucketCounts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("kv store %s: %w", path, err)
	}
	return &File{db: db}, nil
}

// Next implements Store.
func (f *File) Next(_ context.Context, name string) (int64, error) {
	var n int64
	err := f.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCounters)
		if v := b.Get([]byte(name)); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
		n++
		return b.Put([]byte(name), key(n))
	})
	return n, err
}

// Get implements Store.
func (f *File) Get(_ context.Context, table, k string) (value []byte, ok bool, err error) {
	err = f.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(tableBucket(table)); b != nil {
			if v := b.Get([]byte(k)); v != nil {
				value, ok = slices.Clone(v), true
			}
		}
		return nil
	})
	return value, ok, err
}

// Put implements Store.
func (f *File) Put(_ context.Context, table, k string, value []byte) error {
	return f.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(tableBucket(table))
		if err != nil {
			return err
		}
		return b.Put([]byte(k), value)
	})
}

// PutNew implements Store.
func (f *File) PutNew(_ context.Context, table, k string, value []byte) (stored []byte, created bool, err error) {
	err = f.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(tableBucket(table))
		if err != nil {
			return err
		}
		if v := b.Get([]byte(k)); v != nil {
			stored = slices.Clone(v)
			return nil
		}
		stored, created = value, true
		return b.Put([]byte(k), value)
	})
	return stored, created, err
}

// Append implements Store.
func (f *File) Append(_ context.Context, log string, id int64, value []byte, limit int) error {
	return f.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(logBucket(log))
		if err != nil {
			return err
		}
		counts := tx.Bucket(bucketCounts)
		var n uint64
		if v := counts.Get([]byte(log)); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		if b.Get(key(id)) == nil {
			n++
		}
		if err := b.Put(key(id), value); err != nil {
			return err
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil && limit > 0 && n > uint64(limit); k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			n--
		}
		return counts.Put([]byte(log), binary.BigEndian.AppendUint64(nil, n))
	})
}

// After implements Store.
func (f *File) After(_ context.Context, log string, after int64, limit int) ([][]byte, error) {
	var out [][]byte
	err := f.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(logBucket(log))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		// Walk back from the newest: limit entries cost limit steps, not
		// the whole log.
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if int64(binary.BigEndian.Uint64(k)) <= after || (limit > 0 && len(out) == limit) {
				break
			}
			out = append(out, slices.Clone(v))
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}

// Before implements Store.
func (f *File) Before(_ context.Context, log string, before int64, limit int) ([][]byte, bool, error) {
	var out [][]byte
	more := false
	err := f.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(logBucket(log))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.Seek(key(before))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil; k, v = c.Prev() {
			if len(out) == limit {
				more = true
				break
			}
			out = append(out, slices.Clone(v))
		}
		return nil
	})
	slices.Reverse(out)
	return out, more, err
}

// Close implements Store.
func (f *File) Close() error { return f.db.Close() }
