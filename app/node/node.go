// Package node reads the nodes of every project (project/NAME/config/nodes.yaml)
// into one tree and matches request paths against it.
//
// A node file is a YAML list:
//
//   - path: im            # becomes sample/im; sample is created when missing
//     methods: [websocket, tcp]
//   - path: im/login      # inherits websocket and tcp
//     controller: ImServiceController->login
//
// HTTP and CLI paths match segment by segment, trying omissible children;
// WebSocket, TCP and UDP paths match exactly.
package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Methods a node may allow. "cli" is the command line; websocket, tcp and
// udp are the socket transports; the rest are HTTP methods.
var Methods = []string{"get", "post", "put", "patch", "delete", "options", "head", "cli", "websocket", "tcp", "udp"}

// Renders that are not template files.
const (
	RenderJSON = "json"
	RenderRaw  = "raw"
)

// Node is one resolved node: inherited properties are filled in.
type Node struct {
	Path       string         // full path: "sample/im/login"
	Project    string         // "sample"
	Name       string         // label for listings
	Methods    []string       // allowed methods and transports
	Controller string         // "ImServiceController->login"; empty renders the node's extra
	Render     string         // json, raw or a template file under project/NAME/template/
	Layout     string         // layout template, inherited
	Omissible  bool           // the segment may be left out of HTTP and CLI paths
	Extra      map[string]any // free data for the controller, merged over the parent's
	Source     string         // "project/sample/config/nodes.yaml:12", or "" when auto-created
	Children   []*Node        // in declaration order
	Parent     *Node          // nil for a project's root node

	segment         string
	explicitMethods bool
	explicitRender  bool
}

// Auto reports whether the node was created only as a missing ancestor.
// Auto nodes are never matched.
func (n *Node) Auto() bool { return n.Source == "" }

// Allows reports whether the node accepts method (a transport or HTTP method).
func (n *Node) Allows(method string) bool { return slices.Contains(n.Methods, method) }

// IsTemplate reports whether the render is a template file.
func (n *Node) IsTemplate() bool { return IsTemplate(n.Render) }

// IsTemplate reports whether a render value names a template file.
func IsTemplate(render string) bool {
	return render != RenderJSON && render != RenderRaw && render != ""
}

// spec is one entry of nodes.yaml as written.
type spec struct {
	Path           string         `yaml:"path"`
	Methods        []string       `yaml:"methods"`
	Name           string         `yaml:"name"`
	Controller     string         `yaml:"controller"`
	Render         string         `yaml:"render"`
	TemplateLayout string         `yaml:"template_layout"`
	OmissiblePath  bool           `yaml:"omissible_path"`
	Extra          map[string]any `yaml:"extra"`
}

// Tree is every node of every project.
type Tree struct {
	Roots  []*Node          // project root nodes, in project order
	byPath map[string]*Node // every node by full path
	order  []*Node          // every node, depth first
}

// Errors lists every problem found in node files.
type Errors []string

func (e Errors) Error() string { return "invalid nodes:\n  " + strings.Join(e, "\n  ") }

// Load reads project/NAME/config/nodes.yaml of each project under root. A
// project without the file has only its (empty) root node. Template files
// named by render and template_layout must exist.
func Load(root string, projects []string) (*Tree, error) {
	t := &Tree{byPath: map[string]*Node{}}
	var errs Errors
	for _, p := range projects {
		file := filepath.Join("project", p, "config", "nodes.yaml")
		data, err := os.ReadFile(filepath.Join(root, file))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Sprintf("%s: %v", file, err))
			continue
		}
		errs = append(errs, t.add(p, file, data)...)
	}
	t.resolve()
	for _, n := range t.order {
		for _, tpl := range []string{n.Render, n.Layout} {
			if !IsTemplate(tpl) || (tpl == n.Layout && !n.IsTemplate()) {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, "project", n.Project, "template", tpl)); err != nil {
				errs = append(errs, fmt.Sprintf("%s: node %s: template %s not found in project/%s/template/", n.Source, n.Path, tpl, n.Project))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return t, nil
}

// Parse builds a tree from node files given as project name → YAML, for
// tests and tools; templates are not checked.
func Parse(files map[string]string) (*Tree, error) {
	t := &Tree{byPath: map[string]*Node{}}
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	slices.Sort(names)
	var errs Errors
	for _, p := range names {
		errs = append(errs, t.add(p, "project/"+p+"/config/nodes.yaml", []byte(files[p]))...)
	}
	t.resolve()
	if len(errs) > 0 {
		return nil, errs
	}
	return t, nil
}

func (t *Tree) add(project, file string, data []byte) Errors {
	t.ensure(project, project) // every project has a root node
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var errs Errors
	var specs []spec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&specs); err != nil {
		return Errors{fmt.Sprintf("%s: %v (want a list of nodes with keys path, methods, name, controller, render, template_layout, omissible_path, extra)", file, strings.TrimPrefix(err.Error(), "yaml: "))}
	}
	var doc yaml.Node
	_ = yaml.Unmarshal(data, &doc)
	lines := make([]int, len(specs))
	if len(doc.Content) == 1 {
		for i, item := range doc.Content[0].Content {
			if i < len(lines) {
				lines[i] = item.Line
			}
		}
	}
	for i, s := range specs {
		where := fmt.Sprintf("%s:%d", file, lines[i])
		if err := s.check(); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		path := strings.Trim(s.Path, "/")
		if path != project && !strings.HasPrefix(path, project+"/") {
			path = project + "/" + path
		}
		n := t.ensure(project, path)
		if !n.Auto() {
			errs = append(errs, fmt.Sprintf("%s: path %s is already defined at %s", where, path, n.Source))
			continue
		}
		n.Source = where
		n.Name = s.Name
		n.Controller = strings.TrimSpace(s.Controller)
		n.Render = s.Render
		n.explicitRender = s.Render != ""
		n.Layout = s.TemplateLayout
		n.Omissible = s.OmissiblePath
		n.Extra = s.Extra
		if s.Methods != nil {
			n.Methods = lower(s.Methods)
			n.explicitMethods = true
		}
	}
	return errs
}

func (s spec) check() error {
	p := strings.Trim(s.Path, "/")
	if p == "" {
		return errors.New("path is required")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, ";: \t") {
			return fmt.Errorf("path %q: segments must be non-empty and hold no . .. ; : or spaces", s.Path)
		}
	}
	for _, m := range s.Methods {
		if !slices.Contains(Methods, strings.ToLower(m)) {
			return fmt.Errorf("path %s: method %q is not one of %s", p, m, strings.Join(Methods, " "))
		}
	}
	if s.Controller != "" {
		if c, a, ok := strings.Cut(s.Controller, "->"); !ok || strings.TrimSpace(c) == "" || strings.TrimSpace(a) == "" {
			return fmt.Errorf("path %s: controller %q: want Controller->action", p, s.Controller)
		}
	}
	for _, tpl := range []string{s.Render, s.TemplateLayout} {
		if IsTemplate(tpl) && (filepath.IsAbs(tpl) || slices.Contains(strings.Split(filepath.ToSlash(tpl), "/"), "..")) {
			return fmt.Errorf("path %s: template %q must be relative to the project's template folder", p, tpl)
		}
	}
	return nil
}

// ensure returns the node at path, creating it and its missing ancestors.
func (t *Tree) ensure(project, path string) *Node {
	if n, ok := t.byPath[path]; ok {
		return n
	}
	n := &Node{Path: path, Project: project}
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		n.segment = path[i+1:]
		n.Parent = t.ensure(project, path[:i])
		n.Parent.Children = append(n.Parent.Children, n)
	} else {
		n.segment = path
		t.Roots = append(t.Roots, n)
	}
	t.byPath[path] = n
	return n
}

// resolve fills inherited properties top-down.
func (t *Tree) resolve() {
	t.order = t.order[:0]
	var walk func(n *Node)
	walk = func(n *Node) {
		p := n.Parent
		if !n.explicitMethods {
			n.Methods = []string{"get"}
			if p != nil {
				n.Methods = p.Methods
			}
		}
		if !n.explicitRender {
			n.Render = RenderJSON
			if p != nil && !p.IsTemplate() {
				n.Render = p.Render
			}
		}
		if n.Layout == "" && p != nil {
			n.Layout = p.Layout
		}
		if p != nil && len(p.Extra) > 0 {
			merged := make(map[string]any, len(p.Extra)+len(n.Extra))
			for k, v := range p.Extra {
				merged[k] = v
			}
			for k, v := range n.Extra {
				merged[k] = v
			}
			n.Extra = merged
		}
		t.order = append(t.order, n)
		for _, c := range n.Children {
			walk(c)
		}
	}
	for _, r := range t.Roots {
		walk(r)
	}
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

// Nodes returns every node, depth first in declaration order.
func (t *Tree) Nodes() []*Node { return t.order }

// Get returns the node at a full path, auto-created nodes included.
func (t *Tree) Get(path string) (*Node, bool) {
	n, ok := t.byPath[path]
	return n, ok
}

// Exact matches a socket path (WebSocket, TCP, UDP): the whole path, and the
// node must allow the transport. It reports whether the path exists at all.
func (t *Tree) Exact(path, transport string) (n *Node, exists bool) {
	n, ok := t.byPath[path]
	if !ok || n.Auto() {
		return nil, false
	}
	if !n.Allows(transport) {
		return nil, true
	}
	return n, true
}

// Find matches an HTTP or CLI path segment by segment; an omissible node's
// segment may be left out. An exact segment wins over skipping an omissible
// one; earlier projects and nodes win over later ones. It reports whether
// the path exists for some other method.
func (t *Tree) Find(path, method string) (n *Node, exists bool) {
	segs := split(path)
	if n := find(t.Roots, segs, func(n *Node) bool { return n.Allows(method) }); n != nil {
		return n, true
	}
	return nil, find(t.Roots, segs, func(*Node) bool { return true }) != nil
}

func split(path string) []string {
	var segs []string
	for _, s := range strings.Split(path, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	return segs
}

// find walks the tree; ok says whether a node's methods fit.
func find(children []*Node, segs []string, ok func(*Node) bool) *Node {
	routable := func(n *Node) bool { return !n.Auto() && ok(n) }
	if len(segs) > 0 {
		for _, c := range children {
			if c.segment != segs[0] {
				continue
			}
			if len(segs) == 1 && routable(c) {
				return c
			}
			if n := find(c.Children, segs[1:], ok); n != nil {
				return n
			}
		}
	}
	for _, c := range children {
		if !c.Omissible {
			continue
		}
		if len(segs) == 0 && routable(c) {
			return c
		}
		if n := find(c.Children, segs, ok); n != nil {
			return n
		}
	}
	return nil
}
