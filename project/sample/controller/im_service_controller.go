// Package controller holds the sample's controllers: ImServiceController
// answers the chat's WebSocket and TCP nodes (sample/im/login, send,
// logout), ImUiController renders the page, ImBenchController runs the load
// tool. Rules and state live in the service package.
package controller

import (
	"dce/app/dce"
	"dce/project/sample/service"
)

func init() {
	dce.Register("sample", "ImServiceController", map[string]dce.Action{
		"login":  login,
		"send":   send,
		"logout": logout,
	})
}

// im finds the chat of the running server.
func im(c *dce.Context) (*service.ImWebsocketService, error) {
	s := service.Of(c.Hub)
	if s == nil || c.Conn == nil {
		return nil, dce.Fail(503, "the chat runs only in ImWebsocketServer (websocket.service)")
	}
	return s, nil
}

// login: sample/im/login;{"nickname":"Drunk","brief":"Never drink but always Drunk ~"}
func login(c *dce.Context) error {
	var in struct {
		Nickname string `json:"nickname"`
		Brief    string `json:"brief"`
	}
	if err := c.Bind(&in); err != nil {
		return err
	}
	s, err := im(c)
	if err != nil {
		return err
	}
	m, err := s.Login(c.Conn, in.Nickname, in.Brief)
	if err != nil {
		return err
	}
	c.Assign("id", m.ID)
	c.Assign("nickname", m.Nickname)
	c.Assign("brief", m.Brief)
	return nil
}

// send: sample/im/send;{"message":"hi"}
func send(c *dce.Context) error {
	var in struct {
		Message string `json:"message"`
	}
	if err := c.Bind(&in); err != nil {
		return err
	}
	s, err := im(c)
	if err != nil {
		return err
	}
	m, err := s.Send(c.Conn, in.Message)
	if err != nil {
		return err
	}
	c.Assign("id", m.ID)
	return nil
}

// logout: sample/im/logout;undefined
func logout(c *dce.Context) error {
	s, err := im(c)
	if err != nil {
		return err
	}
	s.Logout(c.Conn)
	return nil
}
