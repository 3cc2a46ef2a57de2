package service

import (
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"

	"dce/app/dce"
	"dce/app/kv"
)

// SessionImServer is the sample's server type (websocket.service lists
// it beside the chat's ImWebsocketServer): it opens the members and
// history store before the server starts, updates the online list when a
// logged-in connection closes or another node's logins change, and closes
// the store at stop.
type SessionImServer struct {
	env      dce.Env
	settings Settings
	store    kv.Store
	im       atomic.Pointer[SessionImService]
}

// NewSessionImServer prepares the server type.
func NewSessionImServer(env dce.Env, settings Settings) *SessionImServer {
	return &SessionImServer{env: env, settings: settings}
}

// Hooks are what the engine calls when websocket.service selects it.
func (s *SessionImServer) Hooks() *dce.Server {
	return &dce.Server{BeforeStart: s.BeforeStart, OnOpen: s.OnOpen, OnClose: s.OnClose, OnPresence: s.OnPresence, OnPublish: s.OnPublish, AfterStop: s.AfterStop}
}

// BeforeStart opens the store: Redis on a cluster, else the configured
// file (runtime/session-im.db, or session-im-PORT.db for a server started
// with -port) or memory.
func (s *SessionImServer) BeforeStart(hub dce.Hub) error {
	cfg := s.env.Config
	var err error
	switch {
	case cfg.Cluster.Redis != "":
		s.store, err = kv.OpenRedis(cfg.Cluster.Redis, cfg.Redis.Prefix+"session:", s.env.Logger)
	case s.settings.Store == "file":
		name := "session-im.db"
		if cfg.Instance != "" {
			name = "session-im-" + cfg.Instance + ".db"
		}
		s.store, err = kv.OpenFile(filepath.Join(s.env.Root, "runtime", name))
	case s.settings.Store == "memory":
		s.store = kv.NewMemory()
	default:
		err = fmt.Errorf("session_im.store %q: want file or memory (a cluster uses its Redis)", s.settings.Store)
	}
	if err != nil {
		return err
	}
	s.im.Store(NewService(hub, s.store, s.settings))
	return nil
}

// OnOpen updates the online list when a connection opens logged in (a
// refresh, a second tab: one more place).
func (s *SessionImServer) OnOpen(c dce.Conn, _ *http.Request) error {
	if im := s.im.Load(); im != nil {
		im.Opened(c)
	}
	return nil
}

// OnClose updates the online list when a logged-in connection closes.
func (s *SessionImServer) OnClose(c dce.Conn) {
	if im := s.im.Load(); im != nil {
		im.Closed(c)
	}
}

// OnPresence updates the online list when other nodes' logins change.
func (s *SessionImServer) OnPresence(dce.Hub, map[int64]int) {
	if im := s.im.Load(); im != nil {
		im.listChanged()
	}
}

// OnPublish delivers other nodes' group messages (a cluster).
func (s *SessionImServer) OnPublish(_ dce.Hub, topic string, m *dce.Message) {
	if im := s.im.Load(); im != nil {
		im.Published(topic, m)
	}
}

// AfterStop closes the store.
func (s *SessionImServer) AfterStop() {
	if s.store != nil {
		_ = s.store.Close()
	}
}

// Chat is the running chat, or nil before BeforeStart.
func (s *SessionImServer) Chat() *SessionImService { return s.im.Load() }
