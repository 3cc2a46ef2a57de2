// Package render turns a request's result into output: status data as JSON,
// raw text, or a template from project/NAME/template/ (html/template for
// .html and .htm files, text/template for others) inside an optional layout.
//
// Templates see .Data (assigned values), .Extra (the node's extra), .Path,
// .Args and .Node; a layout also sees .Content, the rendered page.
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	htmltemplate "html/template"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	texttemplate "text/template"

	"dce/app/dce"
	"dce/app/node"
)

// Renderer renders nodes and caches parsed templates until Reset.
type Renderer struct {
	root  string
	mu    sync.Mutex
	cache map[string]executor
}

type executor interface {
	Execute(w io.Writer, data any) error
}

// New returns a renderer for the projects under root.
func New(root string) *Renderer {
	return &Renderer{root: root, cache: map[string]executor{}}
}

// Reset forgets parsed templates (reload).
func (r *Renderer) Reset() {
	r.mu.Lock()
	r.cache = map[string]executor{}
	r.mu.Unlock()
}

// View is what a template sees.
type View struct {
	Data    map[string]any
	Extra   map[string]any
	Path    string
	Args    map[string][]string
	Node    *node.Node
	Nonce   string // CSP nonce: <script nonce="{{.Nonce}}">
	Content any    // the page, in a layout: htmltemplate.HTML for HTML layouts
}

// ContentType returns the MIME type of a node's output.
func ContentType(n *node.Node) string {
	switch {
	case n.Render == node.RenderJSON:
		return "application/json; charset=utf-8"
	case isHTML(n.Render):
		return "text/html; charset=utf-8"
	}
	return "text/plain; charset=utf-8"
}

func isHTML(file string) bool {
	ext := strings.ToLower(filepath.Ext(file))
	return ext == ".html" || ext == ".htm"
}

// JSON writes status data; indent is for humans (the command line).
func JSON(w io.Writer, s dce.Status, indent bool) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(s)
}

// Render writes the output of c's node to w. nonce is the page's CSP nonce
// (HTTP), given to templates as .Nonce.
func (r *Renderer) Render(w io.Writer, c *dce.Context, indentJSON bool, nonce string) error {
	n := c.Node
	switch {
	case n.Render == node.RenderJSON:
		return JSON(w, c.Result(), indentJSON)
	case n.Render == node.RenderRaw:
		_, err := io.WriteString(w, c.Body())
		return err
	}
	view := View{Data: c.Result().Data, Extra: n.Extra, Path: c.Path, Args: c.Args, Node: n, Nonce: nonce}
	if view.Data == nil {
		view.Data = map[string]any{}
	}
	page, err := r.template(n.Project, n.Render)
	if err != nil {
		return err
	}
	if n.Layout == "" {
		return page.Execute(w, view)
	}
	layout, err := r.template(n.Project, n.Layout)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, view); err != nil {
		return err
	}
	view.Content = buf.String()
	if isHTML(n.Layout) && isHTML(n.Render) {
		view.Content = htmltemplate.HTML(buf.String()) // already escaped by html/template
	}
	return layout.Execute(w, view)
}

func (r *Renderer) template(project, file string) (executor, error) {
	key := project + "/" + file
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.cache[key]; ok {
		return t, nil
	}
	path := filepath.Join(r.root, "project", project, "template", file)
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t executor
	if isHTML(file) {
		t, err = htmltemplate.New(file).Parse(string(src))
	} else {
		t, err = texttemplate.New(file).Parse(string(src))
	}
	if err != nil {
		return nil, err
	}
	r.cache[key] = t
	return t, nil
}

// Check parses every template of the projects (every file under
// project/NAME/template/) and returns one error per file that does not
// parse, naming the file and line: `./dce check` reports them.
func (r *Renderer) Check(projects []string) []error {
	var errs []error
	for _, p := range projects {
		dir := filepath.Join(r.root, "project", p, "template")
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			file, _ := filepath.Rel(dir, path)
			if _, err := r.template(p, filepath.ToSlash(file)); err != nil {
				rel, _ := filepath.Rel(r.root, path)
				errs = append(errs, fmt.Errorf("%s: %w", rel, err))
			}
			return nil
		})
	}
	return errs
}
