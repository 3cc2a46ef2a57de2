// Package session is the session sample: the seed's "more complete" IM
// (SPEC §11). Guests see the group chat and who is online; a login lives in
// the session (cookie), so a refresh, a second tab or another node is
// logged in at once; members chat in the group or privately. Members and
// history are kept in a file (one node) or in Redis (a cluster).
package session

import (
	"dce/app/dce"
	"dce/project/session/controller"
	"dce/project/session/service"
)

func init() { dce.RegisterProject("session", "session_im", service.DefaultSettings(), New) }

// New builds the sample for env.
func New(env dce.Env, settings service.Settings) (*dce.Project[service.Settings], error) {
	server := service.NewSessionImServer(env, settings)
	return &dce.Project[service.Settings]{
		Controllers: map[string]map[string]dce.Action{
			"ImController": controller.NewImController(server).Actions(),
			"UiController": controller.UiController{}.Actions(),
		},
		Servers: map[string]*dce.Server{"SessionImServer": server.Hooks()},
	}, nil
}
