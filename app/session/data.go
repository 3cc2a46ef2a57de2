package session

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Get decodes the value of key in session sid into v; ok is false when the
// session or the key does not exist. Use renews the session's ttl.
func (m *Manager) Get(sid, key string, v any) (bool, error) {
	c, cancel := ctx()
	defer cancel()
	rec, found, err := m.store.Load(c, sid, m.ttl)
	if err != nil || !found {
		return false, err
	}
	raw, ok := rec.Data[key]
	if !ok {
		return false, nil
	}
	return true, json.Unmarshal(raw, v)
}

// Set stores value (as JSON) under key in session sid, creating the
// session in the store when it holds nothing yet.
func (m *Manager) Set(sid, key string, value any) error {
	return m.update(sid, func(r *Record) error {
		b, err := json.Marshal(value)
		if err != nil {
			return fmt.Errorf("session value %s: %w", key, err)
		}
		if r.Data == nil {
			r.Data = map[string]json.RawMessage{}
		}
		r.Data[key] = b
		return nil
	})
}

// Delete removes key from session sid.
func (m *Manager) Delete(sid, key string) error {
	return m.update(sid, func(r *Record) error { delete(r.Data, key); return nil })
}

func (m *Manager) update(sid string, f func(*Record) error) error {
	c, cancel := ctx()
	defer cancel()
	rec, _, err := m.store.Load(c, sid, m.ttl)
	if err != nil {
		return err
	}
	if err := f(&rec); err != nil {
		return err
	}
	if err := m.store.Save(c, sid, rec, m.ttl); err != nil {
		return err
	}
	m.mu.Lock()
	if _, live := m.fds[sid]; live {
		m.saved[sid] = true
	}
	m.mu.Unlock()
	return nil
}

// Destroy ends session sid: its connections are logged out (they stay
// open, on an empty session) and the store forgets it.
func (m *Manager) Destroy(sid string) error {
	c, cancel := ctx()
	defer cancel()
	rec, found, err := m.store.Load(c, sid, m.ttl)
	if err != nil {
		return err
	}
	if err := m.store.Delete(c, sid); err != nil {
		return err
	}
	if found && rec.Member != 0 {
		_ = m.store.RemoveMember(c, rec.Member, sid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if member, ok := m.members[sid]; ok {
		delete(m.members, sid)
		for f := range m.fds[sid] {
			m.removeConn(member, f)
		}
	}
	delete(m.saved, sid)
	return nil
}

// Renew gives session sid a new id with the same data and login, and
// returns it (after a login, against fixation): the old id is forgotten,
// and the session's connections move to the new one. The caller hands the
// new id to the client (a cookie).
func (m *Manager) Renew(sid string) (string, error) {
	c, cancel := ctx()
	defer cancel()
	rec, _, err := m.store.Load(c, sid, m.ttl)
	if err != nil {
		return "", err
	}
	m.mu.RLock()
	if member, ok := m.members[sid]; ok && !m.kept[sid] { // its login lived in memory only
		rec.Member = member
	}
	m.mu.RUnlock()
	id := NewID()
	if err := m.store.Save(c, id, rec, m.ttl); err != nil {
		return "", err
	}
	if rec.Member != 0 {
		if err := m.store.AddMember(c, rec.Member, id, m.ttl); err != nil {
			return "", err
		}
		_ = m.store.RemoveMember(c, rec.Member, sid)
	}
	_ = m.store.Delete(c, sid)
	m.mu.Lock()
	defer m.mu.Unlock()
	if fds, live := m.fds[sid]; live {
		for f := range fds {
			m.sessions[f] = id
		}
		m.fds[id] = fds
		delete(m.fds, sid)
		if member, ok := m.members[sid]; ok {
			m.members[id] = member
			delete(m.members, sid)
		}
		m.kept[id], m.saved[id] = true, true
		delete(m.kept, sid)
		delete(m.saved, sid)
	}
	return id, nil
}

// SetSession writes key = value into every live session of member (every
// browser and device it is logged in on); sessions that expired or were
// logged out meanwhile are pruned from the member's index.
func (m *Manager) SetSession(member int64, key string, value any) error {
	c, cancel := ctx()
	defer cancel()
	ids, err := m.store.MemberSessions(c, member)
	if err != nil {
		return err
	}
	m.mu.RLock()
	var local []string // this node's sessions of member whose login lives in memory only
	for fd := range m.conns[member] {
		if sid := m.sessions[fd]; !m.kept[sid] && !slices.Contains(local, sid) {
			local = append(local, sid)
		}
	}
	m.mu.RUnlock()
	for _, id := range local {
		if err := m.Set(id, key, value); err != nil {
			return err
		}
	}
	for _, id := range ids {
		rec, found, err := m.store.Load(c, id, m.ttl)
		if err != nil {
			return err
		}
		if !found || rec.Member != member {
			_ = m.store.RemoveMember(c, member, id)
			continue
		}
		if err := m.Set(id, key, value); err != nil {
			return err
		}
	}
	return nil
}
