// Package service holds the chat's state and rules: ImWebsocketService (the
// member and message stores, login, send, logout and the pushes) and
// ImWebsocketServer (the custom server that creates the stores before the
// server starts and logs a connection out when it closes).
package service

import (
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"dce/app/config"
	"dce/app/dce"
)

// Settings are the sample's limits, from project/sample/config/config.yaml
// (key im) or DCE_IM_MEMBERS_MAX / DCE_IM_HISTORY_MAX.
var Settings = struct {
	MembersMax int `mapstructure:"members_max"`
	HistoryMax int `mapstructure:"history_max"`
}{MembersMax: 100000, HistoryMax: 1024}

func init() { config.Register("sample", "im", &Settings) }

// Field limits, in characters.
const (
	NicknameMax = 48
	BriefMax    = 255
	MessageMax  = 1024
)

// Pushes, as the original page expects them.
const (
	PathUserList    = "setUserList"
	PathMessageList = "setMessageList"
)

// The online list is pushed at most once per listInterval: a change in a
// quiet room goes out at once, changes in a burst (many logins) ride along
// with the next push. One push costs members² entries (10,000 members:
// 10,000 lists of 600 KB each), so the interval grows with the square of
// the room: 50 ms up to 700 members, 100 ms at 1,000, 1 s at 3,200, and at
// most 10 s from 10,000.
func listInterval(members int) time.Duration {
	n := time.Duration(members)
	return min(max(n*n*100, 50*time.Millisecond), 10*time.Second)
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

// ImWebsocketService is the chat of one running server.
type ImWebsocketService struct {
	hub      dce.Hub
	sessions dce.Sessions

	mu         sync.Mutex // guards everything below; held while queueing pushes so they keep their order
	byNick     map[string]*Member
	byID       map[int64]*Member
	history    []Message // ring of at most HistoryMax, oldest first from head
	head       int
	nextMsgID  int64
	listVer    uint64            // bumped on each change of the online list
	sentVer    map[uint64]uint64 // fd → version of the list it last got
	pending    map[uint64]bool   // logged in, waiting for the list and the history
	lastPush   time.Time
	pushTimer  *time.Timer // the next push, when one is scheduled
	membersMax int
	historyMax int
}

var (
	servicesMu sync.Mutex
	services   = map[dce.Hub]*ImWebsocketService{}
)

// New creates the stores of one server (the original's shared-memory
// tables) with the configured limits.
func New(hub dce.Hub) *ImWebsocketService {
	s := &ImWebsocketService{
		hub:        hub,
		sessions:   hub.Sessions(),
		byNick:     map[string]*Member{},
		byID:       map[int64]*Member{},
		sentVer:    map[uint64]uint64{},
		pending:    map[uint64]bool{},
		membersMax: Settings.MembersMax,
		historyMax: max(1, Settings.HistoryMax),
	}
	servicesMu.Lock()
	services[hub] = s
	servicesMu.Unlock()
	return s
}

// Of returns the chat of the server behind hub, or nil when the server was
// not started as ImWebsocketServer.
func Of(hub dce.Hub) *ImWebsocketService {
	servicesMu.Lock()
	defer servicesMu.Unlock()
	return services[hub]
}

// Login logs conn in as nickname, registering the nickname on first use (a
// known nickname keeps its id and stored brief). The connection then gets
// the online list and the whole history; everyone else gets the new list.
func (s *ImWebsocketService) Login(conn dce.Conn, nickname, brief string) (*Member, error) {
	nickname = strings.TrimSpace(nickname)
	brief = strings.TrimSpace(brief)
	switch {
	case nickname == "":
		return nil, dce.Fail(400, "nickname is required")
	case utf8.RuneCountInString(nickname) > NicknameMax:
		return nil, dce.Fail(400, "nickname is longer than %d characters", NicknameMax)
	case utf8.RuneCountInString(brief) > BriefMax:
		return nil, dce.Fail(400, "brief is longer than %d characters", BriefMax)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, known := s.byNick[nickname]
	if !known {
		if len(s.byNick) >= s.membersMax {
			return nil, dce.Fail(400, "the room is full: %d members are registered (im.members_max)", s.membersMax)
		}
		m = &Member{ID: int64(conn.FD()), Nickname: nickname, Brief: brief}
		s.byNick[nickname] = m
		s.byID[m.ID] = m
	}
	if old, ok := s.sessions.Member(conn.FD()); ok && old == m.ID {
		return m, nil // already logged in as this member
	}
	s.sessions.Login(conn.FD(), m.ID)
	// The newcomer gets the list, then the history, with the next list push
	// (at once unless a burst of logins is going on); messages sent before
	// that reach it through the history.
	s.pending[conn.FD()] = true
	s.listChanged()
	return m, nil
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
	to := s.sessions.OnlineConns()
	if len(s.pending) > 0 {
		ready := make([]uint64, 0, len(to))
		for _, fd := range to {
			if !s.pending[fd] {
				ready = append(ready, fd)
			}
		}
		to = ready
	}
	s.hub.Send(to, push)
	return &msg, nil
}

// Logout takes conn out of the online list; everyone else gets the new list.
func (s *ImWebsocketService) Logout(conn dce.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sentVer, conn.FD())
	delete(s.pending, conn.FD())
	if _, ok := s.sessions.Logout(conn.FD()); ok {
		s.listChanged()
	}
}

// Online returns the online members, ascending by id.
func (s *ImWebsocketService) Online() []Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.onlineLocked()
}

func (s *ImWebsocketService) onlineLocked() []Member {
	ids := s.sessions.Online()
	out := make([]Member, 0, len(ids))
	for _, id := range ids {
		if m := s.byID[id]; m != nil {
			out = append(out, *m)
		}
	}
	return out
}

// History returns the stored messages, ascending by id.
func (s *ImWebsocketService) History() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.historyLocked()
}

func (s *ImWebsocketService) historyLocked() []Message {
	out := make([]Message, 0, len(s.history))
	out = append(out, s.history[s.head:]...)
	return append(out, s.history[:s.head]...)
}

// listChanged pushes the online list now, or schedules the next push.
func (s *ImWebsocketService) listChanged() {
	s.listVer++
	if s.pushTimer != nil {
		return // the scheduled push will carry this change
	}
	wait := listInterval(len(s.sessions.Online())) - time.Since(s.lastPush)
	if wait <= 0 {
		s.pushListLocked()
		return
	}
	s.pushTimer = time.AfterFunc(wait, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.pushTimer = nil
		s.pushListLocked()
	})
}

// pushListLocked sends the current list to each logged-in connection that
// does not have it yet, then the history to the newcomers.
func (s *ImWebsocketService) pushListLocked() {
	s.lastPush = time.Now()
	online := s.sessions.OnlineConns()
	fds := make([]uint64, 0, len(online))
	for _, fd := range online {
		if s.sentVer[fd] != s.listVer {
			s.sentVer[fd] = s.listVer
			fds = append(fds, fd)
		}
	}
	if len(fds) > 0 {
		if msg, err := dce.NewMessage(PathUserList, s.onlineLocked(), dce.Latest); err == nil {
			s.hub.Send(fds, msg)
		}
	}
	if len(s.pending) == 0 {
		return
	}
	newcomers := make([]uint64, 0, len(s.pending))
	for fd := range s.pending {
		newcomers = append(newcomers, fd)
	}
	clear(s.pending)
	if msg, err := dce.NewMessage(PathMessageList, s.historyLocked(), dce.Merge); err == nil {
		s.hub.Send(newcomers, msg)
	}
}
