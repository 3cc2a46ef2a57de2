// Package router joins the node tree to the registered controllers and runs
// one request on any transport: the single handler every transport calls.
package router

import (
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"strings"

	"dce/app/dce"
	"dce/app/node"
	"dce/app/render"
)

// Router is an immutable snapshot of nodes, actions and templates; reload
// builds a new one.
type Router struct {
	Tree     *node.Tree
	Renderer *render.Renderer
	actions  map[*node.Node]dce.Action
}

// Errors lists every unresolved controller with the node file it came from.
type Errors []string

func (e Errors) Error() string { return "unresolved controllers:\n  " + strings.Join(e, "\n  ") }

// New loads the nodes of projects under root and resolves every controller.
// All problems are reported at once.
func New(root string, projects []string) (*Router, error) {
	tree, err := node.Load(root, projects)
	if err != nil {
		return nil, err
	}
	return FromTree(tree, render.New(root))
}

// FromTree resolves the controllers of an already loaded tree.
func FromTree(tree *node.Tree, r *render.Renderer) (*Router, error) {
	rt := &Router{Tree: tree, Renderer: r, actions: map[*node.Node]dce.Action{}}
	var errs Errors
	for _, n := range tree.Nodes() {
		if n.Controller == "" {
			continue
		}
		a, err := dce.Lookup(n.Project, n.Controller)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: node %s: %v", n.Source, n.Path, err))
			continue
		}
		rt.actions[n] = a
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rt, nil
}

// InternalMessage is all a client learns of an unexpected error.
const InternalMessage = "internal server error"

// Call runs the node's action and leaves its status data in c. An expected
// failure (*dce.Error) becomes that status; an unexpected error or a panic
// becomes a 500 with a generic message, and is returned (with the stack for
// a panic) for the log only.
func (rt *Router) Call(c *dce.Context) (internal error) {
	a := rt.actions[c.Node]
	if a == nil {
		if len(c.Node.Extra) > 0 && !c.Node.IsTemplate() {
			data := maps.Clone(c.Node.Extra)
			for k, v := range data {
				c.Assign(k, v)
			}
		}
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			c.SetResult(dce.FailStatus(500, InternalMessage))
			internal = fmt.Errorf("panic in %s (%s): %v\n%s", c.Node.Path, c.Node.Controller, p, debug.Stack())
		}
	}()
	err := a(c)
	var de *dce.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &de):
		c.SetResult(dce.FailStatus(de.Code, de.Message))
		return nil
	default:
		c.SetResult(dce.FailStatus(500, InternalMessage))
		return fmt.Errorf("%s (%s): %w", c.Node.Path, c.Node.Controller, err)
	}
}
