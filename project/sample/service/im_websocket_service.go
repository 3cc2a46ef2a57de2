// Package service holds the chat's state and rules: ImWebsocketService (the
// member and message stores, login, send, logout and the pushes) and
// ImWebsocketServer (the custom server that creates the stores before the
// server starts and logs a connection out when it closes).
package service

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"dce/app/dce"
	"dce/app/kv"
)

// Settings are the sample's limits, from project/sample/config/config.yaml
// (key im) or DCE_IM_MEMBERS_MAX / DCE_IM_HISTORY_MAX.
type Settings struct {
	MembersMax int `mapstructure:"members_max"`
	HistoryMax int `mapstructure:"history_max"`
}

// DefaultSettings are the limits when nothing sets them.
func DefaultSettings() Settings { return Settings{MembersMax: 100000, HistoryMax: 1024} }

// Field limits, in characters.
const (
	NicknameMax = 48
	BriefMax    = 255
	MessageMax  = 1024
)

// Pushes. setUserList and setMessageList are what the original page
// expects; updateUserList carries presence changes to clients that asked
// for them at login ("presence":"delta").
const (
	PathUserList    = "setUserList"
	PathUserChanges = "updateUserList"
	PathMessageList = "setMessageList"
)

// HistoryPage is the most messages one history request returns.
const HistoryPage = 500

// The online list reaches a newcomer at once, with its login. Everyone
// else learns of a change with the next coalesced push:
//
//   - clients of the original page get the whole list, at most once per
//     listInterval, which grows with the square of the room (one push costs
//     members² entries: 10,000 lists of 600 KB at 10,000 members): 50 ms up
//     to 700 members, 100 ms at 1,000, 1 s at 3,200, at most 10 s from 10,000;
//   - delta clients get only the joins and leaves, at most once per
//     deltaInterval, which grows with the room (one push costs one entry
//     per change per member): 100 ms up to 1,000 members, 1 s at 10,000.
//
// A change in a quiet room goes out at once.
func listInterval(members int) time.Duration {
	n := time.Duration(members)
	return min(max(n*n*100, 50*time.Millisecond), 10*time.Second)
}

func deltaInterval(members int) time.Duration {
	return min(max(time.Duration(members)*100*time.Microsecond, 50*time.Millisecond), time.Second)
}

// Member is a registered nickname. Its id is the number of the connection
// that registered it.
type Member struct {
	ID       int64  `json:"id"`
	Nickname string `json:"nickname"`
	Brief    string `json:"brief"`
}

// Message is one chat message, as pushed.
type Message struct {
	ID         int64  `json:"id"`
	Mid        int64  `json:"mid"`
	Message    string `json:"message"`
	CreateTime string `json:"create_time"`
	Nickname   string `json:"nickname"`
}

// LoginOptions are what a client may ask for at login, beyond the
// original page's nickname and brief.
type LoginOptions struct {
	Delta   bool // "presence":"delta": joins and leaves instead of whole lists
	History int  // "history":N: only the last N messages (older ones on request); 0 all
}

// ImWebsocketService is the chat of one running server.
//
// On one node everything lives in this process, as in the original's
// shared-memory tables. On a cluster (cluster.redis) the members and the
// history live in Redis (shared, see cluster.go): byNick, byID and entry
// then cache what this node has met, history is unused, and messages go
// to every node's logged-in connections.
type ImWebsocketService struct {
	hub      dce.Hub
	sessions dce.Sessions
	shared   kv.Store // on a cluster; nil on one node

	mu         sync.Mutex // guards everything below; held while queueing pushes so they keep their order (the outermost lock: server.Hub lists the order)
	byNick     map[string]*Member
	byID       map[int64]*Member
	entry      map[int64][]byte // member id → its encoded list entry
	foreign    map[int64]bool   // on a cluster: ids online elsewhere that are not the chat's (another project's members)
	history    []Message        // ring of at most historyMax, oldest first from head
	head       int
	nextMsgID  int64
	own        map[uint64]bool   // the chat's logged-in connections (other projects share the sessions)
	ownList    []uint64          // own as a list, rebuilt when own changed since (ownFDs); shared, never modified
	delta      map[uint64]bool   // logged-in connections that get presence changes
	listVer    uint64            // bumped at each login, logout and disconnect
	sentVer    map[uint64]uint64 // whole-list connections: the version of the list each last got
	changes    map[int64]bool    // member → now online (true) or gone (false), since the last delta push
	snap       []byte            // the online list at the last delta push (changes holds what came since); shared, never modified
	wholeVer   uint64            // listVer at the last whole-list push
	lastWhole  time.Time         // last whole-list push
	lastDelta  time.Time         // last delta push
	pushTimer  *time.Timer       // the next push, when one is scheduled
	membersMax int
	historyMax int
}

// New creates the stores of one server (the original's shared-memory
// tables) with the configured limits.
func New(hub dce.Hub, settings Settings) *ImWebsocketService {
	s := &ImWebsocketService{
		hub:        hub,
		sessions:   hub.Sessions(),
		byNick:     map[string]*Member{},
		byID:       map[int64]*Member{},
		entry:      map[int64][]byte{},
		foreign:    map[int64]bool{},
		own:        map[uint64]bool{},
		delta:      map[uint64]bool{},
		sentVer:    map[uint64]uint64{},
		changes:    map[int64]bool{},
		snap:       []byte("[]"),
		membersMax: settings.MembersMax,
		historyMax: max(1, settings.HistoryMax),
	}
	return s
}

// SetLimits applies new limits (a reload): a smaller history keeps its
// newest messages; a smaller member limit refuses new nicknames only.
func (s *ImWebsocketService) SetLimits(settings Settings) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.membersMax = settings.MembersMax
	n := max(1, settings.HistoryMax)
	if n == s.historyMax {
		return
	}
	h := slices.Concat(s.history[s.head:], s.history[:s.head]) // oldest first
	if len(h) > n {
		h = h[len(h)-n:]
	}
	s.history, s.head, s.historyMax = h, 0, n
}

// Login logs conn in as nickname, registering the nickname on first use (a
// known nickname keeps its id and stored brief). The connection gets the
// online list and the history at once, one frame each; everyone else
// learns of the change with the next coalesced push.
func (s *ImWebsocketService) Login(conn dce.Conn, nickname, brief string, opt LoginOptions) (*Member, error) {
	nickname = strings.TrimSpace(nickname)
	brief = strings.TrimSpace(brief)
	if err := checkLogin(nickname, brief, opt); err != nil {
		return nil, err
	}
	var registered *Member
	if s.shared != nil { // before the lock: Redis round trips
		var err error
		if registered, err = s.register(conn, nickname, brief); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, known := s.byNick[nickname]
	switch {
	case registered != nil:
		m = registered
		s.remember(m)
	case !known:
		if len(s.byNick) >= s.membersMax {
			return nil, dce.Fail(400, "the room is full: %d members are registered (im.members_max)", s.membersMax)
		}
		m = &Member{ID: int64(conn.FD()), Nickname: nickname, Brief: brief}
		s.remember(m)
	}
	fd := conn.FD()
	if old, ok := s.sessions.Member(fd); ok && old == m.ID {
		return m, nil // already logged in as this member
	}
	if old, ok := s.sessions.Member(fd); ok { // switching members: the old one may leave
		if _, _, err := s.sessions.Logout(fd); err != nil {
			return nil, err // the session store is unavailable: a 503
		}
		s.left(old)
	}

	wasOnline := s.sessions.Places(m.ID) > 0
	if err := s.sessions.Login(fd, m.ID); err != nil {
		return nil, err // the session store is unavailable: a 503
	}
	s.own[fd], s.ownList = true, nil
	s.listVer++
	if !wasOnline {
		s.changes[m.ID] = true
	}
	var list []byte
	if opt.Delta {
		// A quiet room pushes now, and the snapshot then shows the newcomer
		// too. In a busy one the newcomer gets the snapshot of the last push
		// (shared, not copied: at most 1 s old at 10,000 members), and the
		// next push, which it is registered for, brings exactly what the
		// snapshot lacks, its own join included.
		s.sentVer[fd] = s.listVer // not a whole-list client: none for it now
		s.schedule(time.Now())
		delete(s.sentVer, fd)
		s.delta[fd] = true
		list = s.snap
	} else {
		delete(s.delta, fd)
		s.sentVer[fd] = s.listVer // it gets this version now
		list = s.listLocked()
	}
	// The newcomer first: its list and history, before any later message.
	if err := conn.Send(&dce.Message{Path: PathUserList, Body: list, Mode: dce.Latest}); err == nil {
		if msg, err := s.historyMessage(opt.History); err == nil {
			_ = conn.Send(msg)
		}
	} // else it closed meanwhile; its close hook logs it out
	s.schedule(time.Now())
	return m, nil
}

// checkLogin refuses what no login may carry.
func checkLogin(nickname, brief string, opt LoginOptions) error {
	switch {
	case nickname == "":
		return dce.Fail(400, "nickname is required")
	case utf8.RuneCountInString(nickname) > NicknameMax:
		return dce.Fail(400, "nickname is longer than %d characters", NicknameMax)
	case utf8.RuneCountInString(brief) > BriefMax:
		return dce.Fail(400, "brief is longer than %d characters", BriefMax)
	case opt.History < 0:
		return dce.Fail(400, "history: want the number of recent messages, got %d", opt.History)
	}
	return nil
}

// remember caches m and its encoded list entry (s.mu held).
func (s *ImWebsocketService) remember(m *Member) {
	if old := s.byID[m.ID]; old != nil && old.Nickname != m.Nickname {
		delete(s.byNick, old.Nickname)
	}
	s.byNick[m.Nickname] = m
	s.byID[m.ID] = m
	s.entry[m.ID], _ = json.Marshal(m) // three plain fields: cannot fail
}

// left records that member may have gone offline (s.mu held).
func (s *ImWebsocketService) left(member int64) {
	if s.sessions.Places(member) == 0 {
		s.changes[member] = false
	}
}

// Send stores a message from the member logged in on conn and pushes it to
// every logged-in connection, the sender included.
func (s *ImWebsocketService) Send(conn dce.Conn, text string) (*Message, error) {
	switch {
	case strings.TrimSpace(text) == "":
		return nil, dce.Fail(400, "message is empty")
	case utf8.RuneCountInString(text) > MessageMax:
		return nil, dce.Fail(400, "message is longer than %d characters", MessageMax)
	}
	id, ok := s.sessions.Member(conn.FD())
	if !ok {
		return nil, dce.Fail(401, "log in first")
	}
	now := time.Now().Format(time.DateTime)
	if s.shared != nil {
		return s.sendShared(id, text, now)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byID[id]
	if m == nil {
		return nil, dce.Fail(401, "log in first")
	}
	s.nextMsgID++
	msg := Message{ID: s.nextMsgID, Mid: m.ID, Message: text, CreateTime: now, Nickname: m.Nickname}
	if len(s.history) < s.historyMax {
		s.history = append(s.history, msg)
	} else { // full: the oldest makes room
		s.history[s.head] = msg
		s.head = (s.head + 1) % len(s.history)
	}
	push, err := dce.NewMessage(PathMessageList, []Message{msg}, dce.Merge)
	if err != nil {
		return nil, err
	}
	s.hub.Send(s.ownFDs(), push)
	return &msg, nil
}

// Logout takes conn out of the online list; everyone else gets the new list.
func (s *ImWebsocketService) Logout(conn dce.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fd := conn.FD()
	if !s.own[fd] {
		return // not logged in to the chat (perhaps to another project sharing the sessions)
	}
	delete(s.own, fd)
	s.ownList = nil
	delete(s.delta, fd)
	delete(s.sentVer, fd)
	if member, ok, _ := s.sessions.Logout(fd); ok { // the member leaves this server's list even if the store failed
		s.left(member)
		s.listVer++
		s.schedule(time.Now())
	}
}

// listLocked encodes the online list from the members' encoded entries:
// a room of 10,000 costs a copy, not 10,000 encodings.
func (s *ImWebsocketService) listLocked() []byte {
	ids := s.sessions.Online()
	n := 2
	for _, id := range ids {
		n += len(s.entry[id]) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for _, id := range ids {
		e := s.entry[id]
		if e == nil { // a member of another node not read yet: the next push has it
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, ']')
}

// recentLocked returns the last n stored messages (all when n is 0),
// ascending by id.
func (s *ImWebsocketService) recentLocked(n int) []Message {
	all := len(s.history)
	if n <= 0 || n > all {
		n = all
	}
	out := make([]Message, 0, n)
	for i := all - n; i < all; i++ {
		out = append(out, s.history[(s.head+i)%all])
	}
	return out
}

// Before returns up to limit stored messages older than id, ascending, and
// whether still older ones are stored. The page loads them when the reader
// scrolls up.
func (s *ImWebsocketService) Before(id int64, limit int) ([]Message, bool, error) {
	if s.shared != nil {
		return s.sharedBefore(id, limit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	all := len(s.history)
	if all == 0 {
		return []Message{}, false, nil
	}
	oldest := s.history[s.head].ID // ids are consecutive: the i-th oldest is oldest+i
	end := int(min(max(id-oldest, 0), int64(all)))
	start := max(0, end-limit)
	out := make([]Message, 0, end-start)
	for i := start; i < end; i++ {
		out = append(out, s.history[(s.head+i)%all])
	}
	return out, start > 0, nil
}

// schedule sends the pushes a login, logout or disconnect calls for: the
// whole list to the original page's clients (it expects one after each),
// the joins and leaves to the delta clients. Now in a quiet room, else when
// the interval has passed (s.mu held).
func (s *ImWebsocketService) schedule(now time.Time) {
	if s.pushTimer != nil {
		return // the scheduled push will carry this change
	}
	members := len(s.sessions.Online())
	var due time.Time
	if s.wholeVer != s.listVer {
		due = s.lastWhole.Add(listInterval(members))
	}
	if len(s.changes) > 0 {
		if d := s.lastDelta.Add(deltaInterval(members)); due.IsZero() || d.Before(due) {
			due = d
		}
	}
	if due.IsZero() {
		return
	}
	if !due.After(now) {
		s.pushLocked(now)
		return
	}
	s.pushTimer = time.AfterFunc(due.Sub(now), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.pushTimer = nil
		s.pushLocked(time.Now())
	})
}

// pushLocked sends what is due: the whole list to the original page's
// clients, the joins and leaves to the delta clients.
func (s *ImWebsocketService) pushLocked(now time.Time) {
	members := len(s.sessions.Online())
	online := s.ownFDs()
	if len(s.changes) > 0 && !now.Before(s.lastDelta.Add(deltaInterval(members))) {
		s.lastDelta = now
		s.pushChanges(online)
	}
	if s.wholeVer != s.listVer && !now.Before(s.lastWhole.Add(listInterval(members))) {
		s.lastWhole, s.wholeVer = now, s.listVer
		fds := make([]uint64, 0, len(online))
		for _, fd := range online {
			if !s.delta[fd] && s.sentVer[fd] != s.listVer {
				s.sentVer[fd] = s.listVer
				fds = append(fds, fd)
			}
		}
		if len(fds) > 0 {
			s.hub.Send(fds, &dce.Message{Path: PathUserList, Body: s.listLocked(), Mode: dce.Latest})
		}
	}
	if s.wholeVer != s.listVer || len(s.changes) > 0 {
		s.schedule(now)
	}
}

// pushChanges sends `updateUserList;{"join":[members],"leave":[ids]}` to
// the delta clients, and takes the snapshot that the newcomers until the
// next push get as their list.
func (s *ImWebsocketService) pushChanges(online []uint64) {
	ids := slices.Sorted(maps.Keys(s.changes))
	b := []byte(`{"join":[`)
	n := 0
	for _, id := range ids {
		if s.changes[id] && s.entry[id] != nil {
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, s.entry[id]...)
			n++
		}
	}
	b = append(b, `],"leave":[`...)
	n = 0
	for _, id := range ids {
		if !s.changes[id] {
			if n > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, id, 10)
			n++
		}
	}
	b = append(b, "]}"...)
	clear(s.changes)
	fds := make([]uint64, 0, len(s.delta))
	for _, fd := range online {
		if s.delta[fd] {
			fds = append(fds, fd)
		}
	}
	s.snap = s.listLocked()
	s.fanOut(fds, &dce.Message{Path: PathUserChanges, Body: b}, deltaInterval(len(online))/2)
}

// fanOutChunk is how many connections one step of a spread fan-out reaches.
const fanOutChunk = 1000

// fanOut sends m to fds spread over the given time, fanOutChunk at a time:
// a presence change to 10,000 members is then not one burst of 10,000
// writes that a newcomer's list and history would queue behind. The spread
// is shorter than the push interval, so two pushes never overtake.
func (s *ImWebsocketService) fanOut(fds []uint64, m *dce.Message, over time.Duration) {
	if len(fds) <= fanOutChunk {
		s.hub.Send(fds, m)
		return
	}
	steps := (len(fds) + fanOutChunk - 1) / fanOutChunk
	for i := 0; i < steps; i++ {
		chunk := fds[i*fanOutChunk : min(len(fds), (i+1)*fanOutChunk)]
		if i == 0 {
			s.hub.Send(chunk, m)
			continue
		}
		time.AfterFunc(over*time.Duration(i)/time.Duration(steps), func() { s.hub.Send(chunk, m) })
	}
}

// ownFDs lists the chat's logged-in connections (s.mu held). The list is
// built once per change of the set, not per login: a burst of 10,000
// logins costs one list per push, not 10,000 copies.
func (s *ImWebsocketService) ownFDs() []uint64 {
	if s.ownList == nil {
		s.ownList = make([]uint64, 0, len(s.own))
		for fd := range s.own {
			s.ownList = append(s.ownList, fd)
		}
	}
	return s.ownList
}
