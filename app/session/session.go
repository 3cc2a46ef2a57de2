// Package session keeps the session manager in memory: connections ↔
// sessions ↔ logged-in members. It implements dce.Sessions; a shared store
// (Redis) can implement the same interface when the server runs on several
// nodes.
package session

import (
	"slices"
	"sync"

	"dce/app/dce"
)

// Memory is the in-memory session manager. It is safe for concurrent use.
type Memory struct {
	mu       sync.RWMutex               // lock order 2 (server.Hub): taken under a project's lock, calls nothing while held
	sessions map[uint64]string          // fd → session id
	fds      map[string]map[uint64]bool // session id → fds
	members  map[string]int64           // session id → member
	conns    map[int64]map[uint64]bool  // member → logged-in fds
	online   []int64                    // members in conns, ascending; replaced, never modified, on change
	onlineFD []uint64                   // fds in conns, ascending; likewise
}

var _ dce.Sessions = (*Memory)(nil)

// NewMemory returns an empty session manager.
func NewMemory() *Memory {
	return &Memory{
		sessions: map[uint64]string{},
		fds:      map[string]map[uint64]bool{},
		members:  map[string]int64{},
		conns:    map[int64]map[uint64]bool{},
	}
}

// Open implements dce.Sessions.
func (m *Memory) Open(fd uint64, sid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[fd] = sid
	if m.fds[sid] == nil {
		m.fds[sid] = map[uint64]bool{}
	}
	m.fds[sid][fd] = true
	if member, ok := m.members[sid]; ok { // a session already logged in
		m.addConn(member, fd)
	}
}

// Close implements dce.Sessions.
func (m *Memory) Close(fd uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sid, ok := m.sessions[fd]
	if !ok {
		return
	}
	delete(m.sessions, fd)
	delete(m.fds[sid], fd)
	if member, ok := m.members[sid]; ok {
		m.removeConn(member, fd)
	}
	if len(m.fds[sid]) == 0 {
		delete(m.fds, sid)
		delete(m.members, sid)
	}
}

// Login implements dce.Sessions.
func (m *Memory) Login(fd uint64, member int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sid, ok := m.sessions[fd]
	if !ok {
		return
	}
	if old, ok := m.members[sid]; ok {
		for f := range m.fds[sid] {
			m.removeConn(old, f)
		}
	}
	m.members[sid] = member
	for f := range m.fds[sid] {
		m.addConn(member, f)
	}
}

// Logout implements dce.Sessions.
func (m *Memory) Logout(fd uint64) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sid, ok := m.sessions[fd]
	if !ok {
		return 0, false
	}
	member, ok := m.members[sid]
	if !ok {
		return 0, false
	}
	delete(m.members, sid)
	for f := range m.fds[sid] {
		m.removeConn(member, f)
	}
	return member, true
}

// Member implements dce.Sessions.
func (m *Memory) Member(fd uint64) (int64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	member, ok := m.members[m.sessions[fd]]
	return member, ok
}

// MemberConns implements dce.Sessions.
func (m *Memory) MemberConns(member int64) []uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]uint64, 0, len(m.conns[member]))
	for fd := range m.conns[member] {
		out = append(out, fd)
	}
	slices.Sort(out)
	return out
}

// Online implements dce.Sessions. The slice is kept sorted as members come
// and go (copied on change, never sorted again), so a room of thousands
// costs no sort per login.
func (m *Memory) Online() []int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.online
}

// OnlineConns implements dce.Sessions; kept like Online.
func (m *Memory) OnlineConns() []uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.onlineFD
}

func (m *Memory) addConn(member int64, fd uint64) {
	fds := m.conns[member]
	if fds == nil {
		fds = map[uint64]bool{}
		m.conns[member] = fds
		m.online = insertSorted(m.online, member)
	}
	if !fds[fd] {
		fds[fd] = true
		m.onlineFD = insertSorted(m.onlineFD, fd)
	}
}

func (m *Memory) removeConn(member int64, fd uint64) {
	fds := m.conns[member]
	if !fds[fd] {
		return
	}
	delete(fds, fd)
	m.onlineFD = removeSorted(m.onlineFD, fd)
	if len(fds) == 0 {
		delete(m.conns, member)
		m.online = removeSorted(m.online, member)
	}
}

// insertSorted returns a new sorted slice with v added: slices handed out
// earlier stay as they were.
func insertSorted[T int64 | uint64](s []T, v T) []T {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	out := make([]T, len(s)+1)
	copy(out, s[:i])
	out[i] = v
	copy(out[i+1:], s[i:])
	return out
}

// removeSorted returns a new sorted slice without v.
func removeSorted[T int64 | uint64](s []T, v T) []T {
	i, found := slices.BinarySearch(s, v)
	if !found {
		return s
	}
	out := make([]T, len(s)-1)
	copy(out, s[:i])
	copy(out[i:], s[i+1:])
	return out
}
