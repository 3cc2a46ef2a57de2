// Package controller holds the session sample's controllers: ImController
// answers session/im/signer, login, logout, send and load (WebSocket and
// TCP); UiController renders the page. Rules and state live in service.
package controller

import (
	"dce/app/dce"
	"dce/project/session/service"
)

// ImController answers the chat's nodes.
type ImController struct {
	server *service.SessionImServer
}

// NewImController serves the chat that server holds once started.
func NewImController(server *service.SessionImServer) *ImController {
	return &ImController{server: server}
}

// Actions are the controller's actions, by the names nodes.yaml uses.
func (ctl *ImController) Actions() map[string]dce.Action {
	return map[string]dce.Action{
		"signer": ctl.signer,
		"login":  ctl.login,
		"logout": ctl.logout,
		"send":   ctl.send,
		"load":   ctl.load,
	}
}

func (ctl *ImController) im(c *dce.Context) (*service.SessionImService, error) {
	s := ctl.server.Chat()
	if s == nil || c.Conn == nil {
		return nil, dce.Fail(503, "the session chat runs only in SessionImServer (websocket.service)")
	}
	s.Join(c.Conn)
	return s, nil
}

// signer: session/im/signer;"" → pushes signer, then the online list.
// Our page sends session/im/signer;{"presence":"delta"}: later changes of
// the list come as joins and leaves (session/im/presence).
func (ctl *ImController) signer(c *dce.Context) error {
	var in struct {
		Presence string `json:"presence"`
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
	return s.Signer(c.Conn, in.Presence == "delta")
}

// login: session/im/login;{"nickname":"Drunk","brief":"Welcome to Dce"}
func (ctl *ImController) login(c *dce.Context) error {
	var in struct {
		Nickname string `json:"nickname"`
		Brief    string `json:"brief"`
	}
	if err := c.Bind(&in); err != nil {
		return err
	}
	s, err := ctl.im(c)
	if err != nil {
		return err
	}
	m, err := s.Login(c.Conn, in.Nickname, in.Brief)
	if err != nil {
		return err
	}
	c.Assign("mid", m.Mid)
	c.Assign("nickname", m.Nickname)
	c.Assign("brief", m.Brief)
	return nil
}

// logout: session/im/logout;""
func (ctl *ImController) logout(c *dce.Context) error {
	s, err := ctl.im(c)
	if err != nil {
		return err
	}
	return s.Logout(c.Conn)
}

// send: session/im/send;{"target_mid":0,"message":"hi"}
func (ctl *ImController) send(c *dce.Context) error {
	var in struct {
		TargetMid int64  `json:"target_mid"`
		Message   string `json:"message"`
	}
	if err := c.Bind(&in); err != nil {
		return err
	}
	s, err := ctl.im(c)
	if err != nil {
		return err
	}
	m, err := s.Send(c.Conn, in.TargetMid, in.Message)
	if err != nil {
		return err
	}
	c.Assign("id", m.ID)
	return nil
}

// load: session/im/load;{"target_mid":2,"after_id":7}
func (ctl *ImController) load(c *dce.Context) error {
	var in struct {
		TargetMid int64 `json:"target_mid"`
		AfterID   int64 `json:"after_id"`
	}
	if err := c.Bind(&in); err != nil {
		return err
	}
	s, err := ctl.im(c)
	if err != nil {
		return err
	}
	n, err := s.Load(c.Conn, in.TargetMid, in.AfterID)
	if err != nil {
		return err
	}
	c.Assign("count", n)
	return nil
}
