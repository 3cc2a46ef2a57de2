// Package service holds the session sample's rules and state:
// SessionImService (members, history per view, the online list and the
// pushes) and SessionImServer (the server type that opens the store and
// hears closes and other nodes).
package service

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"dce/app/dce"
	"dce/app/kv"
)

// Settings are the sample's, from project/session/config/config.yaml (key
// session_im) or DCE_SESSION_IM_HISTORY_MAX / DCE_SESSION_IM_STORE.
type Settings struct {
	HistoryMax int    `mapstructure:"history_max"`
	Store      string `mapstructure:"store"`
}

// DefaultSettings are the settings when nothing sets them.
func DefaultSettings() Settings { return Settings{HistoryMax: 500, Store: "file"} }

// Field limits, in characters (the original's).
const (
	NicknameMax = 16
	BriefMax    = 128
	MessageMax  = 1024
)

// Paths: the pushes reuse the request paths; the client dispatches on them.
const (
	PathSigner = "session/im/signer"
	PathList   = "session/im/login"
	PathLoad   = "session/im/load"
)

// Keys in the store (kv): tables, counters, logs.
const (
	tableNick   = "session:nick"   // nickname → member
	tableMember = "session:member" // mid → member
	counterMid  = "session:member"
	counterMsg  = "session:message"
	logGroup    = "session:group"
)

// Member is a registered nickname.
type Member struct {
	Mid      int64  `json:"mid"`
	Nickname string `json:"nickname"`
	Brief    string `json:"brief"`
}

// Entry is one member of the online list.
type Entry struct {
	Member
	LoginPlaces int `json:"loginPlaces"`
}

// Message is one chat message, as pushed and stored.
type Message struct {
	ID         int64  `json:"id"`
	Mid        int64  `json:"mid"`
	TargetMid  int64  `json:"target_mid"`
	Message    string `json:"message"`
	CreateTime string `json:"create_time"`
	Nickname   string `json:"nickname"`
}

// memberBase keeps this sample's members apart from the chat sample's in
// the engine's session manager, which both share (one server, one
// browser): member mid is logged in there as memberBase+mid. The chat's
// ids (connection numbers, or its own counter) never reach it.
const memberBase int64 = 1 << 48

// signedIn returns the member (this sample's id) logged in on fd.
func (s *SessionImService) signedIn(fd uint64) (int64, bool) {
	id, ok := s.sessions.Member(fd)
	if !ok || id <= memberBase {
		return 0, false
	}
	return id - memberBase, true
}

// The online list reaches a page at once when it opens (its signer). The
// others hear of a change with the next coalesced push (SPEC §12):
//
//   - pages of the original protocol get the whole list, at most once per
//     wholeGap, which grows with the square of the room (one push costs
//     members² entries): 100 ms up to 1,000 members, 1 s at 3,200, at most
//     10 s;
//   - pages that asked for deltas (`session/im/signer;{"presence":"delta"}`,
//     as ours does) get `session/im/presence;{"join":[entries],"leave":[mids]}`
//     at most once per deltaGap: 100 ms up to 1,000 members, 1 s at 10,000.
func wholeGap(members int) time.Duration {
	n := time.Duration(members)
	return min(max(n*n*100, 100*time.Millisecond), 10*time.Second)
}

func deltaGap(members int) time.Duration {
	return min(max(time.Duration(members)*100*time.Microsecond, 100*time.Millisecond), time.Second)
}

// PathPresence carries the online list's changes to delta pages.
const PathPresence = "session/im/presence"

// SessionImService is the session chat of one running server.
type SessionImService struct {
	hub        dce.Hub
	sessions   dce.Sessions
	store      kv.Store
	historyMax int

	mu        sync.Mutex        // guards below; never held across a store call
	conns     map[uint64]bool   // this node's connections of this sample (guests too): they get its pushes
	connList  []uint64          // conns as a list, rebuilt when conns changed (own); shared, never modified
	members   map[int64]*Member // the members this node has met
	delta     map[uint64]bool   // the connections that get changes, not whole lists
	listTimer *time.Timer       // the next online-list push, when one is due
	timerAt   time.Time         // when listTimer fires
	wholeDue  bool              // the list changed since the last whole push
	deltaDue  bool              // the list changed since the last delta push
	lastWhole time.Time
	lastDelta time.Time
	shown     map[int64]Entry // the list at the last delta push
	snap      []byte          // shown, encoded: what a delta page gets at its signer; shared, never modified
	pushing   sync.Mutex      // one push at a time, in order
}

// NewService runs the chat on hub with store.
func NewService(hub dce.Hub, store kv.Store, settings Settings) *SessionImService {
	return &SessionImService{hub: hub, sessions: hub.Sessions(), store: store, historyMax: max(1, settings.HistoryMax), members: map[int64]*Member{}, conns: map[uint64]bool{}, delta: map[uint64]bool{}, shown: map[int64]Entry{}, snap: []byte("[]")}
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*time.Second)
}

// Member finds a member by id: met before, or read from the store.
func (s *SessionImService) Member(mid int64) (*Member, error) {
	s.mu.Lock()
	m := s.members[mid]
	s.mu.Unlock()
	if m != nil {
		return m, nil
	}
	c, cancel := ctx()
	defer cancel()
	b, ok, err := s.store.Get(c, tableMember, strconv.FormatInt(mid, 10))
	if err != nil || !ok {
		return nil, err
	}
	if m, err = decodeMember(b); err != nil {
		return nil, err
	}
	s.remember(m)
	return m, nil
}

func (s *SessionImService) remember(m *Member) {
	s.mu.Lock()
	s.members[m.Mid] = m
	s.mu.Unlock()
}

func decodeMember(b []byte) (*Member, error) {
	var m Member
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Join counts conn as one of this sample's connections: it gets the group
// messages and the online list from now on. Every action calls it: the
// page's first frame is its signer.
func (s *SessionImService) Join(conn dce.Conn) {
	s.mu.Lock()
	if !s.conns[conn.FD()] {
		s.conns[conn.FD()], s.connList = true, nil
	}
	s.mu.Unlock()
}

// own lists this node's connections of this sample: built once per change
// of the set, not for every group message.
func (s *SessionImService) own() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.connList == nil {
		s.connList = make([]uint64, 0, len(s.conns))
		for fd := range s.conns {
			s.connList = append(s.connList, fd)
		}
	}
	return s.connList
}

// topicGroup carries group messages to the other nodes.
const topicGroup = "session/im"

// Published delivers another node's group message here.
func (s *SessionImService) Published(topic string, m *dce.Message) {
	if topic == topicGroup {
		s.hub.Send(s.own(), m)
	}
}

// Signer pushes to conn who its session is logged in as (null for a
// guest), then the online list. With delta, later changes of the list
// come as session/im/presence pushes instead of whole lists.
func (s *SessionImService) Signer(conn dce.Conn, delta bool) error {
	var signer *Member
	if mid, ok := s.signedIn(conn.FD()); ok {
		m, err := s.Member(mid)
		if err != nil {
			return err
		}
		signer = m
	}
	// In order with the pushes: this page gets the list as of the last
	// push, and every push after it.
	s.pushing.Lock()
	defer s.pushing.Unlock()
	s.mu.Lock()
	if delta {
		s.delta[conn.FD()] = true
	} else {
		delete(s.delta, conn.FD())
	}
	snap := s.snap
	s.mu.Unlock()
	if err := conn.Push(PathSigner, signer); err != nil {
		return nil // closed meanwhile
	}
	if !delta { // the original page: the list as it is now
		entries, err := s.entries()
		if err != nil {
			return err
		}
		snap, _ = json.Marshal(entries)
	}
	// A delta page gets the list of the last delta push, shared, not built
	// again for every newcomer (a room of 10,000 is 800 KB); the next push
	// brings what it lacks, at most deltaGap later.
	return conn.Send(&dce.Message{Path: PathList, Body: snap, Mode: dce.Latest})
}

// Login logs the session of conn in as nickname, registering it on first
// use; a known nickname keeps its id and takes the new brief. Every
// connection of the member hears its signer; everyone the new list.
func (s *SessionImService) Login(conn dce.Conn, nickname, brief string) (*Member, error) {
	nickname, brief = strings.TrimSpace(nickname), strings.TrimSpace(brief)
	switch {
	case nickname == "":
		return nil, dce.Fail(400, "nickname is required")
	case utf8.RuneCountInString(nickname) > NicknameMax:
		return nil, dce.Fail(400, "nickname is longer than %d characters", NicknameMax)
	case utf8.RuneCountInString(brief) > BriefMax:
		return nil, dce.Fail(400, "brief is longer than %d characters", BriefMax)
	}
	m, err := s.register(nickname, brief)
	if err != nil {
		return nil, err
	}
	fd := conn.FD()
	if err := s.sessions.Login(fd, memberBase+m.Mid); err != nil {
		return nil, err // the session store is unavailable: a 503
	}
	if _, err := s.hub.PushMember(memberBase+m.Mid, PathSigner, m); err != nil {
		return nil, err
	}
	s.listChanged()
	return m, nil
}

// register finds or registers nickname; a changed brief is stored.
func (s *SessionImService) register(nickname, brief string) (*Member, error) {
	c, cancel := ctx()
	defer cancel()
	b, ok, err := s.store.Get(c, tableNick, nickname)
	if err != nil {
		return nil, err
	}
	var m *Member
	if ok {
		if m, err = decodeMember(b); err != nil {
			return nil, err
		}
	} else {
		mid, err := s.store.Next(c, counterMid)
		if err != nil {
			return nil, err
		}
		b, _ := json.Marshal(&Member{Mid: mid, Nickname: nickname, Brief: brief})
		stored, _, err := s.store.PutNew(c, tableNick, nickname, b)
		if err != nil {
			return nil, err
		}
		if m, err = decodeMember(stored); err != nil {
			return nil, err
		}
		if m.Mid == mid { // ours: findable by id too
			if err := s.store.Put(c, tableMember, strconv.FormatInt(mid, 10), stored); err != nil {
				return nil, err
			}
		}
	}
	if m.Brief != brief { // a known nickname updates its brief
		m = &Member{Mid: m.Mid, Nickname: m.Nickname, Brief: brief}
		b, _ := json.Marshal(m)
		if err := s.store.Put(c, tableNick, nickname, b); err != nil {
			return nil, err
		}
		if err := s.store.Put(c, tableMember, strconv.FormatInt(m.Mid, 10), b); err != nil {
			return nil, err
		}
	}
	s.remember(m)
	return m, nil
}

// Logout ends the login of conn's session only; that session's
// connections here hear `signer;null`.
func (s *SessionImService) Logout(conn dce.Conn) error {
	fd := conn.FD()
	mid, ok := s.signedIn(fd)
	if !ok {
		return nil
	}
	sid := s.sessions.SessionOf(fd)
	var same []uint64
	for _, c := range s.sessions.MemberConns(memberBase + mid) {
		if s.sessions.SessionOf(c) == sid {
			same = append(same, c)
		}
	}
	if _, _, err := s.sessions.Logout(fd); err != nil {
		return err
	}
	s.hub.Send(same, &dce.Message{Path: PathSigner, Body: []byte("null")})
	s.listChanged()
	return nil
}

// Opened hears that conn opened: if its session is logged in, the
// member has one more place.
func (s *SessionImService) Opened(conn dce.Conn) {
	if _, ok := s.signedIn(conn.FD()); ok {
		s.listChanged()
	}
}

// Closed hears that conn closed: it leaves; if it was logged in, the
// list changes.
func (s *SessionImService) Closed(conn dce.Conn) {
	s.mu.Lock()
	delete(s.conns, conn.FD())
	delete(s.delta, conn.FD())
	s.connList = nil
	s.mu.Unlock()
	if _, ok := s.signedIn(conn.FD()); ok {
		s.listChanged()
	}
}

// view is the log of a conversation: the group, or a pair.
func view(mid, target int64) string {
	if target == 0 {
		return logGroup
	}
	a, b := min(mid, target), max(mid, target)
	return "session:pair:" + strconv.FormatInt(a, 10) + ":" + strconv.FormatInt(b, 10)
}

// Send stores a message of the member logged in on conn, to the group
// (target 0: every connection of this sample, guests included, on every
// node) or to
// target (every connection of both members, on every node).
func (s *SessionImService) Send(conn dce.Conn, target int64, text string) (*Message, error) {
	switch {
	case strings.TrimSpace(text) == "":
		return nil, dce.Fail(400, "message is empty")
	case utf8.RuneCountInString(text) > MessageMax:
		return nil, dce.Fail(400, "message is longer than %d characters", MessageMax)
	case target < 0:
		return nil, dce.Fail(400, "target_mid: want 0 (the group) or a member id")
	}
	mid, ok := s.signedIn(conn.FD())
	if !ok {
		return nil, dce.Fail(401, "log in first")
	}
	me, err := s.Member(mid)
	if err != nil || me == nil {
		return nil, dce.Fail(401, "log in first")
	}
	if target != 0 {
		if t, err := s.Member(target); err != nil {
			return nil, err
		} else if t == nil {
			return nil, dce.Fail(404, "no member %d", target)
		}
	}
	c, cancel := ctx()
	defer cancel()
	id, err := s.store.Next(c, counterMsg)
	if err != nil {
		return nil, err
	}
	msg := Message{ID: id, Mid: mid, TargetMid: target, Message: text, CreateTime: time.Now().Format(time.DateTime), Nickname: me.Nickname}
	b, _ := json.Marshal(msg)
	if err := s.store.Append(c, view(mid, target), id, b, s.historyMax); err != nil {
		return nil, err
	}
	push := &dce.Message{Path: PathLoad, Body: append(append([]byte{'['}, b...), ']'), Mode: dce.Merge}
	if target == 0 {
		s.hub.Send(s.own(), push)
		if err := s.hub.Publish(topicGroup, push); err != nil {
			s.hub.Logger().Warn("session chat: a message reached this node only", "id", id, "err", err.Error())
		}
		return &msg, nil
	}
	if _, err := s.hub.PushMember(memberBase+mid, PathLoad, json.RawMessage(push.Body)); err != nil {
		return nil, err
	}
	if target != mid {
		if _, err := s.hub.PushMember(memberBase+target, PathLoad, json.RawMessage(push.Body)); err != nil {
			return nil, err
		}
	}
	return &msg, nil
}

// Load pushes to conn the history of one view (ascending id): only the
// messages after afterID when it is set. A private view needs a login.
func (s *SessionImService) Load(conn dce.Conn, target, afterID int64) (int, error) {
	if target < 0 || afterID < 0 {
		return 0, dce.Fail(400, "target_mid and after_id: want 0 or more")
	}
	var mid int64
	if target != 0 {
		var ok bool
		if mid, ok = s.signedIn(conn.FD()); !ok {
			return 0, dce.Fail(401, "log in first")
		}
	}
	c, cancel := ctx()
	defer cancel()
	raw, err := s.store.After(c, view(mid, target), afterID, s.historyMax)
	if err != nil {
		return 0, err
	}
	_ = conn.Send(&dce.Message{Path: PathLoad, Body: kv.JSONArray(raw), Mode: dce.Merge})
	return len(raw), nil
}

// entries is the online list: every member logged in anywhere, with its
// login places.
func (s *SessionImService) entries() ([]Entry, error) {
	online := s.sessions.Online() // ascending: this sample's members are at the end
	i, _ := slices.BinarySearch(online, memberBase+1)
	out := make([]Entry, 0, len(online)-i)
	for _, id := range online[i:] {
		m, err := s.Member(id - memberBase)
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		out = append(out, Entry{Member: *m, LoginPlaces: s.sessions.Places(id)})
	}
	return out, nil
}

// listChanged schedules the pushes a change of the online list calls for,
// to this node's connections of the sample (each node pushes its own): at
// once in a quiet room (after a moment, so a closing connection's mappings
// are gone), else when the gap since the last push has passed.
func (s *SessionImService) listChanged() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wholeDue, s.deltaDue = true, true
	s.scheduleLocked()
}

func (s *SessionImService) scheduleLocked() {
	if !s.wholeDue && !s.deltaDue {
		return
	}
	n := len(s.shown)
	var due time.Time
	if s.wholeDue {
		due = s.lastWhole.Add(wholeGap(n))
	}
	if d := s.lastDelta.Add(deltaGap(n)); s.deltaDue && (due.IsZero() || d.Before(due)) {
		due = d
	}
	if s.listTimer != nil {
		if !due.Before(s.timerAt) {
			return // the timer set will carry this change
		}
		s.listTimer.Stop() // a delta due before the whole list the timer waits for
	}
	s.timerAt = due
	s.listTimer = time.AfterFunc(max(10*time.Millisecond, time.Until(due)), s.pushList)
}

// pushList sends what is due: the whole list to the original protocol's
// pages, the changes since the last delta push to the delta pages.
func (s *SessionImService) pushList() {
	s.pushing.Lock()
	defer s.pushing.Unlock()
	s.mu.Lock()
	s.listTimer = nil
	s.mu.Unlock()
	entries, err := s.entries()
	if err != nil {
		s.hub.Logger().Warn("session chat: online list not sent", "err", err.Error())
		s.mu.Lock()
		s.scheduleLocked()
		s.mu.Unlock()
		return
	}
	list, _ := json.Marshal(entries)
	now := time.Now()
	s.mu.Lock()
	n := len(entries)
	sendWhole := s.wholeDue && !now.Before(s.lastWhole.Add(wholeGap(n)))
	sendDelta := s.deltaDue && !now.Before(s.lastDelta.Add(deltaGap(n)))
	var whole, delta []uint64
	for fd := range s.conns {
		switch {
		case s.delta[fd] && sendDelta:
			delta = append(delta, fd)
		case !s.delta[fd] && sendWhole:
			whole = append(whole, fd)
		}
	}
	var changes []byte
	if sendDelta {
		changes = s.diffLocked(entries)
		s.snap = list
		s.deltaDue, s.lastDelta = false, now
	}
	if sendWhole {
		s.wholeDue, s.lastWhole = false, now
	}
	s.scheduleLocked() // what is still due
	s.mu.Unlock()
	if len(whole) > 0 {
		s.hub.Send(whole, &dce.Message{Path: PathList, Body: list, Mode: dce.Latest})
	}
	if len(delta) > 0 && changes != nil {
		s.hub.Send(delta, &dce.Message{Path: PathPresence, Body: changes})
	}
}

// diffLocked encodes what changed since the last delta push —
// {"join":[entries new or changed],"leave":[mids gone]} — and remembers
// entries as shown; nil when nothing changed.
func (s *SessionImService) diffLocked(entries []Entry) []byte {
	now := make(map[int64]Entry, len(entries))
	join := []Entry{}
	for _, e := range entries {
		now[e.Mid] = e
		if s.shown[e.Mid] != e {
			join = append(join, e)
		}
	}
	leave := []int64{}
	for mid := range s.shown {
		if _, ok := now[mid]; !ok {
			leave = append(leave, mid)
		}
	}
	s.shown = now
	if len(join) == 0 && len(leave) == 0 {
		return nil
	}
	slices.Sort(leave)
	b, _ := json.Marshal(struct {
		Join  []Entry `json:"join"`
		Leave []int64 `json:"leave"`
	}{join, leave})
	return b
}
