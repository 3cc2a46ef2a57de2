// Package dce is the vocabulary projects use: controllers and their actions,
// the request context, the hub that pushes to connections, sessions, and the
// hooks of a custom server.
//
// A project registers its controllers from an init function:
//
//	func init() {
//		dce.Register("sample", "ImServiceController", map[string]dce.Action{
//			"login": login,
//		})
//	}
//
//	func login(c *dce.Context) error {
//		var in struct{ Nickname string `json:"nickname"` }
//		if err := c.Bind(&in); err != nil {
//			return err // a 400 reply in response mode
//		}
//		if in.Nickname == "" {
//			return dce.Fail(400, "nickname is required")
//		}
//		c.Assign("nickname", in.Nickname)
//		return nil
//	}
//
// and points a node at it in project/sample/config/nodes.yaml:
// `controller: ImServiceController->login`.
package dce

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Product name and version, shown by `./dce`.
const (
	Product = "Dce for Go"
	Version = "0.1.0"
)

// Action handles one request. A returned *Error becomes its status reply;
// any other error (or a panic) a 500 with a generic message.
type Action func(c *Context) error

var (
	mu          sync.RWMutex
	controllers = map[string]map[string]Action{} // "project/Controller" → actions
	servers     = map[string]func() any{}
)

// Register adds a named controller with its actions to a project. It panics
// on an empty name, a nil action or a second registration: wiring mistakes
// show at start-up.
func Register(project, controller string, actions map[string]Action) {
	if project == "" || controller == "" || len(actions) == 0 {
		panic(fmt.Sprintf("dce.Register(%q, %q): project, controller and at least one action are required", project, controller))
	}
	for name, a := range actions {
		if name == "" || a == nil {
			panic(fmt.Sprintf("dce.Register(%q, %q): action %q is empty or nil", project, controller, name))
		}
	}
	key := project + "/" + controller
	mu.Lock()
	defer mu.Unlock()
	if _, dup := controllers[key]; dup {
		panic(fmt.Sprintf("dce.Register: controller %s of project %s is registered twice", controller, project))
	}
	controllers[key] = actions
}

// Lookup resolves "Controller->action" among a project's controllers.
func Lookup(project, ref string) (Action, error) {
	name, action, ok := strings.Cut(ref, "->")
	name, action = strings.TrimSpace(name), strings.TrimSpace(action)
	if !ok || name == "" || action == "" {
		return nil, fmt.Errorf("controller %q: want Controller->action", ref)
	}
	mu.RLock()
	defer mu.RUnlock()
	actions, ok := controllers[project+"/"+name]
	if !ok {
		return nil, fmt.Errorf("controller %s is not registered by project %s", name, project)
	}
	a, ok := actions[action]
	if !ok {
		names := make([]string, 0, len(actions))
		for n := range actions {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("controller %s has no action %s (it has %s)", name, action, strings.Join(names, ", "))
	}
	return a, nil
}

// RegisterServer makes a custom server type selectable with
// `websocket.service: NAME`. newServer returns a value implementing any of
// the hook interfaces (BeforeStarter, OnOpener, OnConnecter, OnCloser,
// CodecProvider). It panics on an empty or duplicate name.
func RegisterServer(name string, newServer func() any) {
	if name == "" || newServer == nil {
		panic("dce.RegisterServer: a name and a constructor are required")
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := servers[name]; dup {
		panic(fmt.Sprintf("dce.RegisterServer: server %s is registered twice", name))
	}
	servers[name] = newServer
}

// NewServer constructs the registered server called name.
func NewServer(name string) (any, error) {
	mu.RLock()
	defer mu.RUnlock()
	f, ok := servers[name]
	if !ok {
		names := make([]string, 0, len(servers))
		for n := range servers {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("no server registered as %q (registered: %s)", name, strings.Join(names, ", "))
	}
	return f(), nil
}
