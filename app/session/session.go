// Package session is the session manager (SPEC §9): session ids from
// cookies, headers and query parameters; connections ↔ sessions ↔ logged-in
// members; session data with a sliding ttl; and the stores that keep what
// outlives a connection — memory, a bbolt file, Redis.
package session

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"dce/app/dce"
)

// Manager is the session manager of SPEC §9: connections ↔ sessions ↔
// members. Which connections are open, and on which session, lives here
// in memory; what must outlive a connection — a session's login and data —
// lives in its Store. Member, MemberConns, Online and OnlineConns (every
// push and broadcast) read memory only; Open of a presented session,
// Login, Logout and the data calls reach the store.
//
// A session whose id no client presented (a WebSocket or TCP connection
// without a cookie: the chat's per-connection sessions) cannot be presented
// later by anyone, so its login lives in memory only, as the simple sample
// always had it: logging it in and out costs no store call. Only its data,
// if it gets any, goes to the store, and is deleted when its last
// connection closes. A presented or renewed session is kept in the store
// until its ttl runs out.
type Manager struct {
	store Store
	ttl   time.Duration
	log   *slog.Logger

	mu       sync.RWMutex               // lock order 2 (server.Hub): taken under a project's lock, calls nothing while held
	sessions map[uint64]string          // fd → session id
	fds      map[string]map[uint64]bool // session id → fds
	members  map[string]int64           // session id → member, for live sessions
	kept     map[string]bool            // live sessions to keep in the store after their last connection
	saved    map[string]bool            // live sessions the store holds something of
	conns    map[int64]map[uint64]bool  // member → logged-in fds
	remote   map[int64]int              // member → login places on the other nodes of a cluster
	online   []int64                    // members in conns or remote, ascending; replaced, never modified, on change
	onlineFD []uint64                   // fds in conns, ascending; likewise

	// placesChanged, when set (a cluster), hears every change of a
	// member's login places on this node. It is called with mu held, so
	// it must not wait or call back: cluster.SetPlaces only records.
	placesChanged func(member int64, places int)
}

var _ dce.Sessions = (*Manager)(nil)

// DefaultTTL is how long an unused session lives (session.ttl).
const DefaultTTL = time.Hour

// New returns a manager over store; ttl 0 is DefaultTTL.
func New(store Store, ttl time.Duration, log *slog.Logger) *Manager {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		store:    store,
		ttl:      ttl,
		log:      log,
		sessions: map[uint64]string{},
		fds:      map[string]map[uint64]bool{},
		members:  map[string]int64{},
		kept:     map[string]bool{},
		saved:    map[string]bool{},
		conns:    map[int64]map[uint64]bool{},
		remote:   map[int64]int{},
	}
}

// Cluster makes the manager a cluster node's: changes of this node's login
// places go to changed (cluster.SetPlaces); SetRemote brings the others'.
func (m *Manager) Cluster(changed func(member int64, places int)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.placesChanged = changed
	for member, fds := range m.conns {
		changed(member, len(fds))
	}
}

// SetRemote records members' login places on the other nodes: Online and
// Places count them; MemberConns and OnlineConns stay this node's.
func (m *Manager) SetRemote(changes map[int64]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for member, n := range changes {
		was := m.remote[member] > 0 || len(m.conns[member]) > 0
		if n > 0 {
			m.remote[member] = n
		} else {
			delete(m.remote, member)
		}
		switch is := n > 0 || len(m.conns[member]) > 0; {
		case is && !was:
			m.online = insertSorted(m.online, member)
		case was && !is:
			m.online = removeSorted(m.online, member)
		}
	}
}

// NewMemory returns a manager with a memory store.
func NewMemory() *Manager { return New(NewMemoryStore(), DefaultTTL, nil) }

// Store returns the manager's store.
func (m *Manager) Store() Store { return m.store }

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*time.Second)
}

// Open implements dce.Sessions. A presented session is looked up in the
// store: if it is logged in, so is the new connection (a refresh, a second
// tab, another node). A store that fails leaves the connection a guest.
func (m *Manager) Open(fd uint64, sid string, presented bool) {
	var rec Record
	var found bool
	if presented {
		c, cancel := ctx()
		var err error
		rec, found, err = m.store.Load(c, sid, m.ttl)
		cancel()
		if err != nil {
			m.log.Debug("session not loaded: the connection is a guest", "fd", fd, "err", err.Error())
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[fd] = sid
	if m.fds[sid] == nil {
		m.fds[sid] = map[uint64]bool{}
	}
	m.fds[sid][fd] = true
	if presented {
		m.kept[sid] = true
		if found {
			m.saved[sid] = true
		}
	}
	if _, live := m.members[sid]; !live && found && rec.Member != 0 {
		m.members[sid] = rec.Member
	}
	if member, ok := m.members[sid]; ok {
		m.addConn(member, fd)
	}
}

// Close implements dce.Sessions. The last connection of a session nobody
// presented takes its record with it.
func (m *Manager) Close(fd uint64) {
	m.mu.Lock()
	sid, ok := m.sessions[fd]
	if !ok {
		m.mu.Unlock()
		return
	}
	delete(m.sessions, fd)
	delete(m.fds[sid], fd)
	member, loggedIn := m.members[sid]
	if loggedIn {
		m.removeConn(member, fd)
	}
	forget := false
	if len(m.fds[sid]) == 0 {
		forget = m.saved[sid] && !m.kept[sid]
		delete(m.fds, sid)
		delete(m.members, sid)
		delete(m.kept, sid)
		delete(m.saved, sid)
	}
	m.mu.Unlock()
	if forget { // its data: nobody can present the id again
		c, cancel := ctx()
		defer cancel()
		_ = m.store.Delete(c, sid)
	}
}

// SessionOf implements dce.Sessions: the session id of fd ("" when closed).
func (m *Manager) SessionOf(fd uint64) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.sessions[fd]
}

// Login implements dce.Sessions: the session of fd — every connection on
// it, and any later one presenting it — is logged in as member. The store
// is written first: when it fails nothing changes.
func (m *Manager) Login(fd uint64, member int64) error {
	if member == 0 {
		return errors.New("session: member 0 is reserved for 'nobody'")
	}
	m.mu.RLock()
	sid := m.sessions[fd]
	kept := m.kept[sid]
	m.mu.RUnlock()
	if sid == "" {
		return dce.ErrClosed
	}
	if kept {
		if err := m.storeLogin(sid, member); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.fds[sid]; !ok {
		return dce.ErrClosed
	}
	if prev, ok := m.members[sid]; ok {
		for f := range m.fds[sid] {
			m.removeConn(prev, f)
		}
	}
	m.members[sid] = member
	for f := range m.fds[sid] {
		m.addConn(member, f)
	}
	return nil
}

// storeLogin records in the store that session sid is logged in as member.
func (m *Manager) storeLogin(sid string, member int64) error {
	c, cancel := ctx()
	defer cancel()
	rec, _, err := m.store.Load(c, sid, m.ttl)
	if err != nil {
		return err
	}
	old := rec.Member
	rec.Member = member
	if err := m.store.Save(c, sid, rec, m.ttl); err != nil {
		return err
	}
	if err := m.store.AddMember(c, member, sid, m.ttl); err != nil {
		return err
	}
	if old != 0 && old != member {
		_ = m.store.RemoveMember(c, old, sid)
	}
	return nil
}

// Logout implements dce.Sessions: the session of fd only (another browser
// of the member stays logged in).
func (m *Manager) Logout(fd uint64) (int64, bool, error) {
	m.mu.RLock()
	sid := m.sessions[fd]
	member, ok := m.members[sid]
	kept := m.kept[sid]
	m.mu.RUnlock()
	if !ok {
		return 0, false, nil
	}
	var err error
	if kept {
		c, cancel := ctx()
		defer cancel()
		var rec Record
		var found bool
		rec, found, err = m.store.Load(c, sid, m.ttl)
		if err == nil && found {
			rec.Member = 0
			err = m.store.Save(c, sid, rec, m.ttl)
		}
		if err == nil {
			err = m.store.RemoveMember(c, member, sid)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.members[sid] != member {
		return member, true, err // changed meanwhile
	}
	delete(m.members, sid)
	for f := range m.fds[sid] {
		m.removeConn(member, f)
	}
	return member, true, err
}

// Member implements dce.Sessions.
func (m *Manager) Member(fd uint64) (int64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	member, ok := m.members[m.sessions[fd]]
	return member, ok
}

// MemberConns implements dce.Sessions.
func (m *Manager) MemberConns(member int64) []uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]uint64, 0, len(m.conns[member]))
	for fd := range m.conns[member] {
		out = append(out, fd)
	}
	slices.Sort(out)
	return out
}

// Places implements dce.Sessions: how many connections are logged in as
// member (the original's loginPlaces), on every node of a cluster.
func (m *Manager) Places(member int64) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.conns[member]) + m.remote[member]
}

// Online implements dce.Sessions. The slice is kept sorted as members come
// and go (copied on change, never sorted again), so a room of thousands
// costs no sort per login.
func (m *Manager) Online() []int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.online
}

// OnlineConns implements dce.Sessions; kept like Online.
func (m *Manager) OnlineConns() []uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.onlineFD
}

func (m *Manager) addConn(member int64, fd uint64) {
	fds := m.conns[member]
	if fds == nil {
		fds = map[uint64]bool{}
		m.conns[member] = fds
		if m.remote[member] == 0 {
			m.online = insertSorted(m.online, member)
		}
	}
	if !fds[fd] {
		fds[fd] = true
		m.onlineFD = insertSorted(m.onlineFD, fd)
		if m.placesChanged != nil {
			m.placesChanged(member, len(fds))
		}
	}
}

func (m *Manager) removeConn(member int64, fd uint64) {
	fds := m.conns[member]
	if !fds[fd] {
		return
	}
	delete(fds, fd)
	m.onlineFD = removeSorted(m.onlineFD, fd)
	if len(fds) == 0 {
		delete(m.conns, member)
		if m.remote[member] == 0 {
			m.online = removeSorted(m.online, member)
		}
	}
	if m.placesChanged != nil {
		m.placesChanged(member, len(fds))
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
