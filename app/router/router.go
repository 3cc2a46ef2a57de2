// Package router joins the node tree to the projects' controllers and runs
// one request on any transport: Serve is the single pipeline every
// transport calls (WebSocket, TCP, UDP, HTTP, the command line), each with
// a Writer of its own.
package router

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"dce/app/dce"
	"dce/app/node"
	"dce/app/render"
)

// Router is an immutable snapshot of nodes, actions and templates; reload
// builds a new one.
type Router struct {
	Tree     *node.Tree
	Renderer *render.Renderer
	// Observer, when set (before the router is used), hears of every
	// request Serve runs (metrics).
	Observer Observer
	actions  map[*node.Node]dce.Action
}

// Observer hears of each request: its node's path ("" when none matched),
// the status code it answered (200 for a success) and how long it took.
type Observer interface {
	Served(node string, code int, d time.Duration)
}

// Errors lists every unresolved controller with the node file it came from.
type Errors []string

func (e Errors) Error() string { return "unresolved controllers:\n  " + strings.Join(e, "\n  ") }

// New loads the nodes of projects under root and resolves every controller
// among the built projects ps. All problems are reported at once.
func New(root string, projects []string, ps *dce.Projects) (*Router, error) {
	tree, err := node.Load(root, projects)
	if err != nil {
		return nil, err
	}
	return FromTree(tree, render.New(root), ps)
}

// FromTree resolves the controllers of an already loaded tree.
func FromTree(tree *node.Tree, r *render.Renderer, ps *dce.Projects) (*Router, error) {
	rt := &Router{Tree: tree, Renderer: r, actions: map[*node.Node]dce.Action{}}
	var errs Errors
	for _, n := range tree.Nodes() {
		if n.Controller == "" {
			continue
		}
		a, err := ps.Lookup(n.Project, n.Controller)
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

// Request is one request as its transport decoded it.
type Request struct {
	Path   string // as requested, without leading or trailing slashes for HTTP
	Method string // dce.WebSocket, TCP, UDP, CLI or a lower-case HTTP method
	ID     int64  // socket transports: the request ID, valid when HasID
	HasID  bool
	Data   any    // the decoded payload, never nil
	Raw    string // the payload as received
	Args   map[string][]string
	Conn   dce.Conn      // nil for HTTP and the command line
	Hub    dce.Hub       // nil for the command line
	HTTP   *http.Request // HTTP only
	// Session is the request's session id ("" for none).
	Session string
	Logger  *slog.Logger
}

// Writer is how a transport answers. Serve calls exactly one of NoNode,
// Finish, or (through the action's Context.Reply) Reply one or more times.
type Writer interface {
	// Reply sends an action's explicit answer (Context.Reply).
	dce.Replier
	// NoNode answers a path without a node for the method; exists tells
	// that the path has one for other methods.
	NoNode(path string, exists bool)
	// Finish answers what the action left in c when it did not Reply:
	// its status data, or its rendered page.
	Finish(rt *Router, c *dce.Context)
}

// socket reports a transport whose paths are matched exactly (no
// omissible segments): the hot path of every message.
func socket(method string) bool {
	return method == dce.WebSocket || method == dce.TCP || method == dce.UDP
}

// Find returns the node serving path for method: exact for socket
// transports, segment by segment for HTTP and the command line (HEAD falls
// back to GET).
func (rt *Router) Find(path, method string) (n *node.Node, exists bool) {
	if socket(method) {
		return rt.Tree.Exact(path, method)
	}
	n, exists = rt.Tree.Find(path, method)
	if n == nil && method == "head" {
		n, exists = rt.Tree.Find(path, "get")
	}
	return n, exists
}

// Serve runs one request through the pipeline: node, action, answer. The
// error returned is an internal failure for the transport's log; the
// client has had a 500 with InternalMessage.
func (rt *Router) Serve(w Writer, r *Request) error {
	var began time.Time
	if rt.Observer != nil {
		began = time.Now()
	}
	n, exists := rt.Find(r.Path, r.Method)
	if n == nil {
		w.NoNode(r.Path, exists)
		if rt.Observer != nil {
			rt.Observer.Served("", 404, time.Since(began))
		}
		return nil
	}
	c := dce.NewContext(w)
	c.Node, c.Path, c.Method = n, r.Path, r.Method
	c.ID, c.HasID, c.Data, c.Raw, c.Args = r.ID, r.HasID, r.Data, r.Raw, r.Args
	c.Conn, c.Hub, c.HTTP, c.Logger = r.Conn, r.Hub, r.HTTP, r.Logger
	c.UseSession(r.Session)
	err := rt.Call(c)
	if !c.Replied() {
		w.Finish(rt, c)
	}
	if rt.Observer != nil {
		code := 200
		if st := c.Result(); st.Status != nil && !*st.Status && st.Code != 0 {
			code = st.Code
		}
		rt.Observer.Served(n.Path, code, time.Since(began))
	}
	return err
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
