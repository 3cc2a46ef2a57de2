package service

import (
	"dce/app/dce"
	"dce/app/kv"
	"sync/atomic"
)

// ImWebsocketServer is the sample's server type, selected with
// `websocket.service: ImWebsocketServer` in common/config/websocket.yaml. As
// in the original, it exists for two hooks: create the chat's stores before
// the server starts, and log a connection out when it closes (before the
// engine drops its session mappings, so the logout still finds them).
//
// On a cluster it also opens the shared store (members and history in
// Redis), hears the other nodes' presence, and closes the store at stop.
type ImWebsocketServer struct {
	env      dce.Env
	settings Settings
	shared   kv.Store
	im       atomic.Pointer[ImWebsocketService] // set by BeforeStart, before any request
}

// NewImWebsocketServer prepares a server type whose chat starts with
// settings.
func NewImWebsocketServer(env dce.Env, settings Settings) *ImWebsocketServer {
	return &ImWebsocketServer{env: env, settings: settings}
}

// Hooks are what the engine calls when websocket.service selects it.
func (s *ImWebsocketServer) Hooks() *dce.Server {
	return &dce.Server{BeforeStart: s.BeforeStart, OnClose: s.OnClose, OnPresence: s.OnPresence, OnPublish: s.OnPublish, AfterStop: s.AfterStop}
}

// BeforeStart creates the member and message stores: in memory, or on a
// cluster in Redis.
func (s *ImWebsocketServer) BeforeStart(hub dce.Hub) error {
	shared, err := openShared(s.env)
	if err != nil {
		return err
	}
	s.shared = shared
	im := New(hub, s.settings)
	im.shared = shared
	s.im.Store(im)
	if shared != nil { // the members other nodes already have online
		online := hub.Sessions().Online()
		changes := make(map[int64]int, len(online))
		for _, id := range online {
			changes[id] = hub.Sessions().Places(id)
		}
		im.Remote(changes)
	}
	return nil
}

// OnPresence hears the other nodes' logins and logouts (a cluster).
func (s *ImWebsocketServer) OnPresence(_ dce.Hub, remote map[int64]int) {
	if im := s.im.Load(); im != nil {
		im.Remote(remote)
	}
}

// OnPublish delivers other nodes' messages (a cluster).
func (s *ImWebsocketServer) OnPublish(_ dce.Hub, topic string, m *dce.Message) {
	if im := s.im.Load(); im != nil {
		im.Published(topic, m)
	}
}

// AfterStop closes the shared store.
func (s *ImWebsocketServer) AfterStop() {
	if s.shared != nil {
		_ = s.shared.Close()
	}
}

// OnClose logs the closing connection out.
func (s *ImWebsocketServer) OnClose(c dce.Conn) {
	if im := s.im.Load(); im != nil {
		im.Logout(c)
	}
}

// Chat is the running chat, or nil before BeforeStart (a command, or a
// server that did not select ImWebsocketServer).
func (s *ImWebsocketServer) Chat() *ImWebsocketService { return s.im.Load() }

// Reload applies a reload's settings to the running chat.
func (s *ImWebsocketServer) Reload(settings Settings) {
	if im := s.im.Load(); im != nil {
		im.SetLimits(settings)
	}
}
