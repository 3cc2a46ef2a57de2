// Package controller holds the sample's controllers: ImServiceController
// answers the chat's WebSocket and TCP nodes (sample/im/login, send,
// logout), ImUiController renders the page, ImBenchController runs the load
// tool. Rules and state live in the service package.
package controller

import (
	"dce/app/dce"
	"dce/project/sample/service"
)

// ImServiceController answers the chat's nodes for the chat of one server.
type ImServiceController struct {
	server *service.ImWebsocketServer
}

// NewImServiceController serves the chat that server holds once started.
func NewImServiceController(server *service.ImWebsocketServer) *ImServiceController {
	return &ImServiceController{server: server}
}

// Actions are the controller's actions, by the names nodes.yaml uses.
func (ctl *ImServiceController) Actions() map[string]dce.Action {
	return map[string]dce.Action{
		"login":   ctl.login,
		"send":    ctl.send,
		"logout":  ctl.logout,
		"history": ctl.history,
	}
}

// im finds the chat: it exists once ImWebsocketServer has started.
func (ctl *ImServiceController) im(c *dce.Context) (*service.ImWebsocketService, error) {
	s := ctl.server.Chat()
	if s == nil || c.Conn == nil {
		return nil, dce.Fail(503, "the chat runs only in ImWebsocketServer (websocket.service)")
	}
	return s, nil
}

// login: sample/im/login;{"nickname":"Drunk","brief":"Never drink but always Drunk ~"}
func (ctl *ImServiceController) login(c *dce.Context) error {
	var in struct {
		Nickname string `json:"nickname"`
		Brief    string `json:"brief"`
		Presence string `json:"presence"` // "delta": joins and leaves instead of whole lists
		History  int    `json:"history"`  // only the last N messages; 0: the whole history
	}
	if err := c.Bind(&in); err != nil {
		return err
	}
	if in.Presence != "" && in.Presence != "delta" && in.Presence != "list" {
		return dce.Fail(400, "presence: want \"delta\" or \"list\", got %q", in.Presence)
	}
	s, err := ctl.im(c)
	if err != nil {
		return err
	}
	m, err := s.Login(c.Conn, in.Nickname, in.Brief, service.LoginOptions{Delta: in.Presence == "delta", History: in.History})
	if err != nil {
		return err
	}
	c.Assign("id", m.ID)
	c.Assign("nickname", m.Nickname)
	c.Assign("brief", m.Brief)
	return nil
}

// send: sample/im/send;{"message":"hi"}
func (ctl *ImServiceController) send(c *dce.Context) error {
	var in struct {
		Message string `json:"message"`
	}
	if err := c.Bind(&in); err != nil {
		return err
	}
	s, err := ctl.im(c)
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
func (ctl *ImServiceController) logout(c *dce.Context) error {
	s, err := ctl.im(c)
	if err != nil {
		return err
	}
	s.Logout(c.Conn)
	return nil
}

// history: sample/im/history:7;{"before_id":120,"limit":100} answers
// {"data":{"messages":[...],"more":true}}: up to limit (default 100, at
// most service.HistoryPage) messages older than before_id, ascending, and
// whether older ones are stored.
func (ctl *ImServiceController) history(c *dce.Context) error {
	var in struct {
		BeforeID int64 `json:"before_id"`
		Limit    int   `json:"limit"`
	}
	if err := c.Bind(&in); err != nil {
		return err
	}
	switch {
	case in.BeforeID <= 0:
		return dce.Fail(400, "before_id: want the id of the oldest message you have")
	case in.Limit < 0 || in.Limit > service.HistoryPage:
		return dce.Fail(400, "limit: want 1 to %d", service.HistoryPage)
	case in.Limit == 0:
		in.Limit = 100
	}
	s, err := ctl.im(c)
	if err != nil {
		return err
	}
	if _, ok := c.Hub.Sessions().Member(c.Conn.FD()); !ok {
		return dce.Fail(401, "log in first")
	}
	msgs, more, err := s.Before(in.BeforeID, in.Limit)
	if err != nil {
		return err
	}
	c.Assign("messages", msgs)
	c.Assign("more", more)
	return nil
}
