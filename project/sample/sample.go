// Package sample is the chat sample: New builds it for each server (and for
// each command) from its config section `im`: the chat's server type
// ImWebsocketServer and the controllers nodes.yaml names. Everything the
// chat keeps lives in what New returns.
package sample

import (
	"dce/app/dce"
	"dce/project/sample/controller"
	"dce/project/sample/service"
)

func init() { dce.RegisterProject("sample", "im", service.DefaultSettings(), New) }

// New builds the sample for env.
func New(env dce.Env, settings service.Settings) (*dce.Project[service.Settings], error) {
	chat := service.NewImWebsocketServer(env, settings)
	return &dce.Project[service.Settings]{
		Controllers: map[string]map[string]dce.Action{
			"ImServiceController": controller.NewImServiceController(chat).Actions(),
			"ImUiController":      controller.ImUiController{}.Actions(),
			"ImBenchController":   controller.NewImBenchController(env).Actions(),
			"ImChatController":    controller.NewImChatController(env).Actions(),
		},
		Servers: map[string]*dce.Server{"ImWebsocketServer": chat.Hooks()},
		Reload:  chat.Reload,
	}, nil
}
