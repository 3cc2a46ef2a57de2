package kv

import (
	"cmp"
	"context"
	"slices"
	"sync"
)

// Memory is a Store in this process's memory: one node, gone at exit.
type Memory struct {
	mu       sync.Mutex
	counters map[string]int64
	tables   map[string]map[string][]byte
	logs     map[string][]entry // ascending id
}

type entry struct {
	id    int64
	value []byte
}

// NewMemory returns an empty memory store.
func NewMemory() *Memory {
	return &Memory{counters: map[string]int64{}, tables: map[string]map[string][]byte{}, logs: map[string][]entry{}}
}

var _ Store = (*Memory)(nil)

// Next implements Store.
func (m *Memory) Next(_ context.Context, name string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counters[name]++
	return m.counters[name], nil
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, table, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.tables[table][key]
	return v, ok, nil
}

// Put implements Store.
func (m *Memory) Put(_ context.Context, table, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tables[table] == nil {
		m.tables[table] = map[string][]byte{}
	}
	m.tables[table][key] = slices.Clone(value)
	return nil
}

// PutNew implements Store.
func (m *Memory) PutNew(_ context.Context, table, key string, value []byte) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.tables[table][key]; ok {
		return v, false, nil
	}
	if m.tables[table] == nil {
		m.tables[table] = map[string][]byte{}
	}
	m.tables[table][key] = slices.Clone(value)
	return value, true, nil
}

// Append implements Store.
func (m *Memory) Append(_ context.Context, log string, id int64, value []byte, limit int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := append(m.logs[log], entry{id, slices.Clone(value)})
	if limit > 0 && len(l) > limit {
		l = slices.Delete(l, 0, len(l)-limit)
	}
	m.logs[log] = l
	return nil
}

// After implements Store.
func (m *Memory) After(_ context.Context, log string, after int64, limit int) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.logs[log]
	i, _ := slices.BinarySearchFunc(l, after+1, func(e entry, id int64) int { return cmpInt(e.id, id) })
	l = l[i:]
	if limit > 0 && len(l) > limit {
		l = l[len(l)-limit:]
	}
	return values(l), nil
}

// Before implements Store.
func (m *Memory) Before(_ context.Context, log string, before int64, limit int) ([][]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.logs[log]
	end, _ := slices.BinarySearchFunc(l, before, func(e entry, id int64) int { return cmpInt(e.id, id) })
	start := max(0, end-limit)
	return values(l[start:end]), start > 0, nil
}

// Close implements Store.
func (m *Memory) Close() error { return nil }

func values(l []entry) [][]byte {
	out := make([][]byte, len(l))
	for i, e := range l {
		out[i] = e.value
	}
	return out
}

func cmpInt(a, b int64) int { return cmp.Compare(a, b) }
