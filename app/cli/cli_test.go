package cli

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"dce/app/dce"
	"dce/app/node"
	"dce/app/servertest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func init() {
	dce.Register("alpha", "AlphaController", map[string]dce.Action{
		"home": func(c *dce.Context) error { c.Assign("who", "alpha"); return nil },
		"greet": func(c *dce.Context) error {
			name, ok := c.Arg("name")
			if !ok {
				name = "nobody"
			}
			c.Assign("greeting", "hello "+name)
			return nil
		},
		"fail": func(c *dce.Context) error { return dce.Fail(400, "this always fails") },
	})
}

func run(t *testing.T, root string, argv ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(argv, Env{Root: root, Stdout: &out, Stderr: &errb, LookupEnv: func(string) (string, bool) { return "", false }})
	return code, out.String(), errb.String()
}

func TestCommands(t *testing.T) {
	root := filepath.Join("testdata", "root")
	tests := []struct {
		argv     []string
		code     int
		stdout   []string
		stderr   string
		noStdout bool
	}{
		{nil, 0, []string{dce.Product + " " + dce.Version, "websocket start", "routes", "alpha greet", "Greet someone", "beta info", "Beta facts from config"}, "", false},
		{[]string{"greet", "-name", "Ada"}, 0, []string{`"greeting": "hello Ada"`}, "", false}, // alpha is omissible
		{[]string{"alpha", "greet"}, 0, []string{`"greeting": "hello nobody"`}, "", false},
		{[]string{"beta", "info"}, 0, []string{`"answer": 42`}, "", false}, // a project with no Go code
		{[]string{"alpha"}, 0, []string{"home of alpha"}, "", false},       // a template
		{[]string{"fail"}, 1, []string{`"code": 400`, `"message": "this always fails"`}, "", false},
		{[]string{"no", "such", "thing"}, 2, nil, `no command "no such thing"`, true},
		{[]string{"alpha", "chat", "say"}, 2, nil, "is not a command", true},
		{[]string{"x", "-k", "v", "stray"}, 2, nil, "unexpected word", true},
		{[]string{"websocket", "status"}, 1, nil, "no server is running", true},
		{[]string{"websocket", "stop"}, 1, nil, "no server is running", true},
		{[]string{"check"}, 0, []string{"ok: 2 projects"}, "", false},
		{[]string{"check", "-port", "20470"}, 0, []string{"ok: 2 projects"}, "", false},
		{[]string{"websocket", "start", "-prot", "20470"}, 2, nil, "unknown option -prot (known: -api_host -api_password -api_port -host -port)", true},
		{[]string{"websocket", "status", "-json"}, 2, nil, "unknown option -json (known: -port)", true},
		{[]string{"websocket", "start", "-help"}, 0, []string{"./dce websocket start -api_host -api_password -api_port -host -port", "Start the WebSocket server"}, "", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.argv, " "), func(t *testing.T) {
			code, out, errs := run(t, root, tt.argv...)
			if code != tt.code {
				t.Errorf("exit %d; want %d (stdout %q, stderr %q)", code, tt.code, out, errs)
			}
			for _, w := range tt.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout %q lacks %q", out, w)
				}
			}
			if tt.stderr != "" && !strings.Contains(errs, tt.stderr) {
				t.Errorf("stderr %q lacks %q", errs, tt.stderr)
			}
			if tt.noStdout && out != "" {
				t.Errorf("stdout %q; want nothing", out)
			}
		})
	}
}

// TestRoutesGolden keeps the route table of the test projects in a golden
// file; go test ./app/cli -update rewrites it.
func TestRoutesGolden(t *testing.T) {
	code, out, errs := run(t, filepath.Join("testdata", "root"), "routes")
	if code != 0 {
		t.Fatalf("routes: exit %d: %s", code, errs)
	}
	golden := filepath.Join("testdata", "routes.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./app/cli -update)", err)
	}
	if out != string(want) {
		t.Errorf("route table changed:\n%s\nwant:\n%s", out, want)
	}
}

// writeRoot copies the test root and adds files.
func writeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "root"))); err != nil {
		t.Fatal(err)
	}
	servertest.WriteFiles(t, dir, files)
	return dir
}

func TestStartupErrorsExit2(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		argv  []string
		want  []string
	}{
		{"unresolved controllers are all listed with their files", map[string]string{
			"project/gamma/config/nodes.yaml": "- path: a\n  controller: Missing->x\n- path: b\n  controller: AlphaController->home\n",
		}, []string{"websocket", "start"}, []string{
			"project/gamma/config/nodes.yaml:1: node gamma/a: controller Missing is not registered by project gamma",
			"project/gamma/config/nodes.yaml:3: node gamma/b: controller AlphaController is not registered by project gamma",
		}},
		{"invalid configuration", map[string]string{"common/config/websocket.yaml": "websocket: {port: 70000}\n"},
			[]string{"websocket", "start"}, []string{"common/config/websocket.yaml: websocket.port: a port between 1 and 65535"}},
		{"unknown service", map[string]string{"common/config/websocket.yaml": "websocket: {service: NoSuchServer, port: 0}\n"},
			[]string{"check"}, []string{`no server registered as "NoSuchServer"`}},
		{"missing template", map[string]string{"project/gamma/config/nodes.yaml": "- path: a\n  render: nope.html\n"},
			[]string{"check"}, []string{"template nope.html not found in project/gamma/template/"}},
		{"invalid option", nil, []string{"check", "-port", "x"}, []string{`option -port: websocket.port: an integer, got "x"`}},
		{"template syntax error", map[string]string{"project/gamma/config/nodes.yaml": "- path: a\n  render: ok.html\n", "project/gamma/template/ok.html": "<p>{{.Data}}</p>\n", "project/gamma/template/bad/page.html": "<p>\n{{end}}\n</p>\n"},
			[]string{"check"}, []string{"project/gamma/template/bad/page.html", "bad/page.html:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := run(t, writeRoot(t, tt.files), tt.argv...)
			if code != ExitUsage {
				t.Errorf("exit %d; want %d", code, ExitUsage)
			}
			for _, w := range tt.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr\n%s\nlacks %q", errs, w)
				}
			}
		})
	}
}

// TestAddProjectByFolder: a new folder with only config/nodes.yaml and a
// template is live on the next run, with no other file touched.
func TestAddProjectByFolder(t *testing.T) {
	root := writeRoot(t, map[string]string{
		"project/newbie/config/nodes.yaml": "- path: hi\n  name: Say hi\n  methods: [cli, get]\n  render: hi.txt\n  extra: {who: newbie}\n",
		"project/newbie/template/hi.txt":   "hi from {{.Extra.who}}\n",
	})
	code, out, errs := run(t, root)
	if code != 0 || !strings.Contains(out, "newbie hi") || !strings.Contains(out, "Say hi") {
		t.Fatalf("listing (exit %d) lacks the new project's command:\n%s%s", code, out, errs)
	}
	code, out, errs = run(t, root, "newbie", "hi")
	if code != 0 || out != "hi from newbie\n" {
		t.Errorf("newbie hi: exit %d, %q %q; want \"hi from newbie\"", code, out, errs)
	}
}

func TestRouteTableListsEveryNode(t *testing.T) {
	tr, err := node.Load(filepath.Join("testdata", "root"), []string{"alpha", "beta"})
	if err != nil {
		t.Fatal(err)
	}
	table := RouteTable(tr)
	for _, n := range tr.Nodes() {
		if !strings.Contains(table, n.Path) {
			t.Errorf("route table lacks %s", n.Path)
		}
	}
}

// TestUnknownEnvironmentWarns: a DCE_* variable that matches no key is
// named, with the nearest known key, instead of being silently ignored.
func TestUnknownEnvironmentWarns(t *testing.T) {
	var out, errb bytes.Buffer
	env := map[string]string{"DCE_WEBSOCKET_PROT": "20470", "DCE_WEBSOCKET_PORT": "20471", "DCE_ROOT": "/x"}
	code := Main([]string{"check"}, Env{
		Root: filepath.Join("testdata", "root"), Stdout: &out, Stderr: &errb,
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Environ: func() []string {
			var kv []string
			for k, v := range env {
				kv = append(kv, k+"="+v)
			}
			return kv
		},
	})
	if code != ExitOK {
		t.Fatalf("check: exit %d\n%s", code, errb.String())
	}
	want := "environment variable DCE_WEBSOCKET_PROT matches no configuration key: ignored (did you mean DCE_WEBSOCKET_PORT?)"
	if !strings.Contains(errb.String(), want) {
		t.Errorf("stderr %q; want %q", errb.String(), want)
	}
	if strings.Count(errb.String(), "warning") != 1 {
		t.Errorf("stderr %q; want one warning (a known key and DCE_ROOT are not warned about)", errb.String())
	}
}

// TestStopTellsTheTruth: when the server says "stopping" but its process
// is still alive after shutdown_timeout and a margin, stop exits 1 and
// says so instead of printing "stopped".
func TestStopTellsTheTruth(t *testing.T) {
	root := writeRoot(t, map[string]string{"common/config/websocket.yaml": "websocket: {shutdown_timeout: 100ms}\n"})
	rt := filepath.Join(root, "runtime")
	if err := os.MkdirAll(rt, 0o755); err != nil {
		t.Fatal(err)
	}
	// A stand-in server: answers every control command with "stopping",
	// and a live process (ours) in the pid file.
	ln, err := net.Listen("unix", filepath.Join(rt, "dce.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte("stopping\n"))
			c.Close()
		}
	}()
	if err := os.WriteFile(filepath.Join(rt, "dce.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, root, "websocket", "stop")
	if code != ExitFailed || strings.Contains(out, "stopped") || !strings.Contains(errs, "still running") {
		t.Errorf("stop of a server that stays alive: exit %d, stdout %q, stderr %q; want exit 1 saying it is still running", code, out, errs)
	}
}

// TestRedisDownAtStartExits1: `websocket start` with the redis session store
// and no Redis answering stops at once, exit 1, naming the URL.
func TestRedisDownAtStartExits1(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing answers there now
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	root := writeRoot(t, map[string]string{"common/config/websocket.yaml": "websocket: {port: 0, host: 127.0.0.1}\nsession: {store: redis}\nredis: {url: \"" + url + "\"}\n"})
	code, _, errs := run(t, root, "websocket", "start")
	if code != ExitFailed || !strings.Contains(errs, fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Errorf("exit %d, stderr %q; want 1 and the URL", code, errs)
	}
}
