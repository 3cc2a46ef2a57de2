// Package dce is the vocabulary projects use: projects and their
// constructors, controllers and their actions, the request context, the hub
// that pushes to connections, sessions, and the hooks of a server type.
//
// A project registers a constructor (RegisterProject, in project.go) that
// returns its controllers and server types; a controller that keeps no
// state can also be registered alone:
//
//	func init() {
//		dce.Register("hello", "HelloController", map[string]dce.Action{
//			"greet": greet,
//		})
//	}
//
//	func greet(c *dce.Context) error {
//		var in struct{ Name string `json:"name"` }
//		if err := c.Bind(&in); err != nil {
//			return err // a 400 reply in response mode
//		}
//		if in.Name == "" {
//			return dce.Fail(400, "name is required")
//		}
//		c.Assign("hello", in.Name)
//		return nil
//	}
//
// and points a node at it in project/hello/config/nodes.yaml:
// `controller: HelloController->greet`.
package dce

import (
	"fmt"
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

// The registries, filled by init functions and read-only afterwards.
var (
	mu          sync.RWMutex
	controllers = map[string]map[string]Action{} // "project/Controller" → actions
)

// Register adds a named controller with its actions to a project: the
// shorthand for controllers that keep no state (a project with state
// returns its controllers from its constructor, RegisterProject). It panics
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
