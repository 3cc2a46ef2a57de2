package node

import (
	"strings"
	"testing"
)

const sampleNodes = `
- path: sample
  methods: [get]
  omissible_path: true
  controller: ImUiController->ui
  render: im/ui.html
  template_layout: layout.html
  extra: {title: Chat, theme: light}
- path: im
  methods: [websocket, tcp]
- path: im/login
  controller: ImServiceController->login
  extra: {theme: dark}
- path: sample/api/list
  render: raw
- path: api/list/item
- path: docs
  methods: [get, cli]
  omissible_path: true
- path: docs/guide
  methods: [get, cli]
`

func tree(t *testing.T) *Tree {
	t.Helper()
	tr, err := Parse(map[string]string{"sample": sampleNodes, "other": "- path: ping\n  methods: [udp, cli]\n"})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestTreeBuild(t *testing.T) {
	tr := tree(t)
	tests := []struct {
		path, methods, render, layout, controller string
		auto                                      bool
		extra                                     string
	}{
		{"sample", "get", "im/ui.html", "layout.html", "ImUiController->ui", false, "light"},
		{"sample/im", "websocket,tcp", "json", "layout.html", "", false, "light"},                                // render not inherited from a file
		{"sample/im/login", "websocket,tcp", "json", "layout.html", "ImServiceController->login", false, "dark"}, // methods inherited, extra merged
		{"sample/api", "get", "json", "layout.html", "", true, "light"},                                          // auto-created ancestor
		{"sample/api/list", "get", "raw", "layout.html", "", false, "light"},
		{"sample/api/list/item", "get", "raw", "layout.html", "", false, "light"}, // render inherited when not a file
		{"other", "get", "json", "", "", true, ""},
		{"other/ping", "udp,cli", "json", "", "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			n, ok := tr.Get(tt.path)
			if !ok {
				t.Fatalf("no node %s", tt.path)
			}
			got := []string{strings.Join(n.Methods, ","), n.Render, n.Layout, n.Controller}
			want := []string{tt.methods, tt.render, tt.layout, tt.controller}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("got methods|render|layout|controller %v; want %v", got, want)
			}
			if n.Auto() != tt.auto {
				t.Errorf("Auto() = %v; want %v", n.Auto(), tt.auto)
			}
			if theme, _ := n.Extra["theme"].(string); theme != tt.extra {
				t.Errorf("extra.theme = %q; want %q", theme, tt.extra)
			}
		})
	}
	if n, _ := tr.Get("sample/im/login"); n.Extra["title"] != "Chat" {
		t.Errorf("extra.title not inherited: %v", n.Extra)
	}
}

func TestExact(t *testing.T) {
	tr := tree(t)
	tests := []struct {
		path, transport string
		found, exists   bool
	}{
		{"sample/im/login", "websocket", true, true},
		{"sample/im/login", "tcp", true, true},
		{"sample/im/login", "udp", false, true}, // the node does not allow udp
		{"im/login", "websocket", false, false}, // socket paths are never shortened
		{"sample/api", "get", false, false},     // auto nodes are not routable
		{"sample/im/login/", "websocket", false, false},
		{"other/ping", "udp", true, true},
	}
	for _, tt := range tests {
		n, exists := tr.Exact(tt.path, tt.transport)
		if (n != nil) != tt.found || exists != tt.exists {
			t.Errorf("Exact(%q, %s) = %v, %v; want found %v, exists %v", tt.path, tt.transport, n, exists, tt.found, tt.exists)
		}
	}
}

func TestFind(t *testing.T) {
	tr := tree(t)
	tests := []struct {
		path, method, want string
		exists             bool
	}{
		{"/", "get", "sample", true}, // omissible sample
		{"", "get", "sample", true},
		{"/sample", "get", "sample", true},
		{"/api/list", "get", "sample/api/list", true}, // sample omitted
		{"/sample/api/list", "get", "sample/api/list", true},
		{"/api/list/item", "get", "sample/api/list/item", true},
		{"/guide", "cli", "sample/docs/guide", true}, // two omissible levels
		{"/docs/guide", "get", "sample/docs/guide", true},
		{"/api", "get", "", false},      // auto node
		{"/api/list", "post", "", true}, // exists for another method
		{"/im/login", "get", "", true},  // websocket-only node
		{"/nothing", "get", "", false},
		{"/other/ping", "cli", "other/ping", true},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			n, exists := tr.Find(tt.path, tt.method)
			got := ""
			if n != nil {
				got = n.Path
			}
			if got != tt.want || exists != tt.exists {
				t.Errorf("Find(%q, %s) = %q, %v; want %q, %v", tt.path, tt.method, got, exists, tt.want, tt.exists)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"- path: a\n  method: [get]\n", "field method not found"},
		{"- path: a\n  methods: [fetch]\n", `method "fetch" is not one of`},
		{"- methods: [get]\n", "path is required"},
		{"- path: a/../b\n", "segments must be non-empty"},
		{"- path: a\n  controller: Nope\n", "want Controller->action"},
		{"- path: a\n- path: proj/a\n", "path proj/a is already defined at project/proj/config/nodes.yaml:1"},
		{"- path: a\n  render: ../../etc/passwd.html\n", "must be relative"},
		{"path: a\n", "want a list of nodes"},
	}
	for _, tt := range tests {
		_, err := Parse(map[string]string{"proj": tt.yaml})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v; want it to mention %q", tt.yaml, err, tt.want)
		}
	}
	// Every problem is reported, with its line.
	_, err := Parse(map[string]string{"proj": "- path: a\n  methods: [x]\n- path: b\n  controller: y\n"})
	if err == nil || !strings.Contains(err.Error(), "nodes.yaml:1") || !strings.Contains(err.Error(), "nodes.yaml:3") {
		t.Errorf("error %v; want both problems with their lines", err)
	}
}

// FuzzFind: any path and method match without panicking, and a match
// always allows the method.
func FuzzFind(f *testing.F) {
	tr, err := Parse(map[string]string{"sample": sampleNodes})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/", "/api/list", "sample/im/login", "//a//b/", "/docs/guide/x", "\x00/\xff"} {
		f.Add(s, "get")
		f.Add(s, "websocket")
	}
	f.Fuzz(func(t *testing.T, path, method string) {
		if n, _ := tr.Find(path, method); n != nil && (!n.Allows(method) || n.Auto()) {
			t.Fatalf("Find(%q, %q) = %s, which does not allow it", path, method, n.Path)
		}
		if n, _ := tr.Exact(path, method); n != nil && (n.Path != path || !n.Allows(method)) {
			t.Fatalf("Exact(%q, %q) = %s", path, method, n.Path)
		}
	})
}

func BenchmarkExact(b *testing.B) {
	tr, _ := Parse(map[string]string{"sample": sampleNodes})
	for b.Loop() {
		tr.Exact("sample/im/login", "websocket")
	}
}

func BenchmarkFind(b *testing.B) {
	tr, _ := Parse(map[string]string{"sample": sampleNodes})
	for b.Loop() {
		tr.Find("/api/list/item", "get")
	}
}
