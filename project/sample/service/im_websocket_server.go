package service

import "dce/app/dce"

// ImWebsocketServer is the sample's custom server, selected with
// `websocket.service: ImWebsocketServer` in common/config/websocket.yaml. As
// in the original, it exists for two hooks: create the chat's stores before
// the server starts, and log a connection out when it closes (before the
// engine drops its session mappings, so the logout still finds them).
type ImWebsocketServer struct {
	im *ImWebsocketService
}

func init() {
	dce.RegisterServer("ImWebsocketServer", func() any { return &ImWebsocketServer{} })
}

var (
	_ dce.BeforeStarter = (*ImWebsocketServer)(nil)
	_ dce.OnCloser      = (*ImWebsocketServer)(nil)
)

// BeforeStart creates the member and message stores.
func (s *ImWebsocketServer) BeforeStart(hub dce.Hub) error {
	s.im = New(hub)
	return nil
}

// OnClose logs the closing connection out.
func (s *ImWebsocketServer) OnClose(c dce.Conn) {
	s.im.Logout(c)
}
