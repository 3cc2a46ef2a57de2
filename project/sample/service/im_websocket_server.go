package service

import "dce/app/dce"

// ImWebsocketServer is the sample's server type, selected with
// `websocket.service: ImWebsocketServer` in common/config/websocket.yaml. As
// in the original, it exists for two hooks: create the chat's stores before
// the server starts, and log a connection out when it closes (before the
// engine drops its session mappings, so the logout still finds them).
type ImWebsocketServer struct {
	settings Settings
	im       *ImWebsocketService // set by BeforeStart, before any request
}

// NewImWebsocketServer prepares a server type whose chat starts with
// settings.
func NewImWebsocketServer(settings Settings) *ImWebsocketServer {
	return &ImWebsocketServer{settings: settings}
}

// Hooks are what the engine calls when websocket.service selects it.
func (s *ImWebsocketServer) Hooks() *dce.Server {
	return &dce.Server{BeforeStart: s.BeforeStart, OnClose: s.OnClose}
}

// BeforeStart creates the member and message stores.
func (s *ImWebsocketServer) BeforeStart(hub dce.Hub) error {
	s.im = New(hub, s.settings)
	return nil
}

// OnClose logs the closing connection out.
func (s *ImWebsocketServer) OnClose(c dce.Conn) {
	s.im.Logout(c)
}

// Chat is the running chat, or nil before BeforeStart (a command, or a
// server that did not select ImWebsocketServer).
func (s *ImWebsocketServer) Chat() *ImWebsocketService { return s.im }

// Reload applies a reload's settings to the running chat.
func (s *ImWebsocketServer) Reload(settings Settings) {
	if s.im != nil {
		s.im.SetLimits(settings)
	}
}
