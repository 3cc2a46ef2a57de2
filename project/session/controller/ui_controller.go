package controller

import (
	"dce/app/dce"
	"dce/project/session/service"
)

// UiController renders the session chat's page.
type UiController struct{}

// Actions are the controller's actions, by the names nodes.yaml uses.
func (UiController) Actions() map[string]dce.Action {
	return map[string]dce.Action{"ui": ui}
}

// ui renders template/session/ui.html with the field limits, so the page
// checks what the server checks.
func ui(c *dce.Context) error {
	c.Assign("nickname_max", service.NicknameMax)
	c.Assign("brief_max", service.BriefMax)
	c.Assign("message_max", service.MessageMax)
	return nil
}
