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

// userListWindow bounds how often the online list is pushed: changes in a
// burst (many logins) travel as one push of the newest list, at most this
// long after the change.
const userListWindow = 50 * time.Millisecond

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
	lastPush   time.Time
	pushTimer  *time.Timer
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
	s.listChanged()
	// The newcomer gets the list now, then the history, before any later message.
	s.sentVer[conn.FD()] = s.listVer
	if msg, err := dce.NewMessage(PathUserList, s.onlineLocked(), dce.Latest); err == nil {
		_ = conn.Send(msg)
	}
	if msg, err := dce.NewMessage(PathMessageList, s.historyLocked(), dce.Merge); err == nil {
		_ = conn.Send(msg)
	}
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
	s.hub.Send(s.sessions.OnlineConns(), push)
	return &msg, nil
}

// Logout takes conn out of the online list; everyone else gets the new list.
func (s *ImWebsocketService) Logout(conn dce.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sentVer, conn.FD())
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

// listChanged schedules the online list push: at once when none went out
// within the window, else once at the end of the window (coalescing a burst).
func (s *ImWebsocketService) listChanged() {
	s.listVer++
	if s.pushTimer != nil {
		return // a push is already scheduled and will carry this change
	}
	wait := userListWindow - time.Since(s.lastPush)
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
// does not have it yet.
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
	if len(fds) == 0 {
		return
	}
	msg, err := dce.NewMessage(PathUserList, s.onlineLocked(), dce.Latest)
	if err != nil {
		return
	}
	s.hub.Send(fds, msg)
}
