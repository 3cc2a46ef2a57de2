package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"dce/app/internal/projects"
	"dce/app/servertest"
	"dce/app/wait"
)

// TestProjectsCompiledIn fails when a project folder with Go code is not
// imported by app/projects.go (run ./dce or go generate ./app).
func TestProjectsCompiledIn(t *testing.T) {
	want, err := projects.Source("..")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("projects.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("app/projects.go is stale: run ./dce or go generate ./app\nhave:\n%s\nwant:\n%s", got, want)
	}
	pkgs, names, _ := projects.Scan("..")
	if len(pkgs) == 0 || !slices.Equal(slices.Sorted(slices.Values(compiled)), slices.Sorted(slices.Values(names))) {
		t.Errorf("compiled = %v; want %v", compiled, names)
	}
}

// TestEngineImportsNoProject keeps the engine free of project code: only
// this main package imports project/.
func TestEngineImportsNoProject(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || filepath.Dir(path) == "." {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			if strings.HasPrefix(strings.Trim(imp.Path.Value, `"`), "dce/project/") {
				t.Errorf("%s imports %s: the engine must not depend on a project", path, imp.Path.Value)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// copyApp copies the application (not runtime/) into a new folder, with the
// listeners of common/config/websocket.yaml moved to free loopback ports.
func copyApp(t *testing.T) (dir string, ports []int) {
	t.Helper()
	dir = t.TempDir()
	for _, name := range []string{"app", "project", "common", "www", "go.mod", "go.sum", "dce"} {
		src := filepath.Join("..", name)
		st, err := os.Stat(src)
		if err != nil {
			t.Fatal(err)
		}
		if !st.IsDir() {
			b, _ := os.ReadFile(src)
			if err := os.WriteFile(filepath.Join(dir, name), b, st.Mode()); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.CopyFS(filepath.Join(dir, name), os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		ports = append(ports, servertest.FreePort(t))
	}
	cfg := fmt.Sprintf(`websocket:
  host: 127.0.0.1
  port: %d
  service: ImWebsocketServer,SessionImServer
  enable_http: true
  extra_ports: [{host: 127.0.0.1, port: %d}]
  enable_tcp_ports:
    - {host: 127.0.0.1, port: %d, sock_type: tcp}
    - {host: 127.0.0.1, port: %d, sock_type: udp}
  shutdown_timeout: 3s
`, ports[0], ports[1], ports[2], ports[3])
	if err := os.WriteFile(filepath.Join(dir, "common/config/websocket.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, ports
}

// dce runs ./dce from another working folder, as users may.
func dce(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "dce"), args...)
	cmd.Dir = t.TempDir()
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DCE_") {
			env = append(env, kv)
		}
	}
	return env
}

// background starts cmd with its output collected, and kills it at the end
// of the test if it still runs.
func background(t *testing.T, cmd *exec.Cmd) *lockedBuffer {
	t.Helper()
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return log
}

// startServer runs `./dce websocket start` in the background.
func startServer(t *testing.T, dir string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "dce"), "websocket", "start")
	cmd.Env = cleanEnv()
	log := background(t, cmd)
	// The start log's last line comes once every listener is open (the
	// control socket answers earlier); the first run may build the binary.
	if !wait.Until(60*time.Second, func() bool { return strings.Contains(log.String(), "Connections: at most") }) {
		t.Fatalf("server did not start:\n%s", log.String())
	}
	return cmd, log
}

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitExit waits for cmd to end and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 0
	case <-time.After(20 * time.Second):
		t.Fatal("server did not exit")
		return -1
	}
}

// TestDceLauncher drives the real ./dce script and binary: listing, an
// added project with Go code, start → status → reload → stop, signals,
// and a start after kill -9.
func TestDceLauncher(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, ports := copyApp(t)

	out, code := dce(t, dir)
	if code != 0 || !strings.Contains(out, "Dce for Go") || !strings.Contains(out, "hello") || !strings.Contains(out, "websocket bench") {
		t.Fatalf("./dce: exit %d\n%s", code, out)
	}
	start := time.Now()
	if _, code := dce(t, dir, "routes"); code != 0 {
		t.Fatal("./dce routes failed")
	}
	t.Logf("a second ./dce run with no change took %v", time.Since(start))
	if out, code := dce(t, dir, "no", "such", "thing"); code != 2 || !strings.Contains(out, "no command") {
		t.Errorf("unknown command: exit %d %q; want 2", code, out)
	}

	// A new project folder with Go code is live on the next run.
	files := map[string]string{
		"project/extra/config/nodes.yaml": "- path: hi\n  name: Say hi from Go\n  methods: [cli]\n  controller: ExtraController->hi\n  render: raw\n",
		"project/extra/controller/extra.go": `package controller

import "dce/app/dce"

func init() {
	dce.Register("extra", "ExtraController", map[string]dce.Action{
		"hi": func(c *dce.Context) error { c.SetBody("hi from compiled Go\n"); return nil },
	})
}
`,
	}
	servertest.WriteFiles(t, dir, files)
	if out, code := dce(t, dir, "extra", "hi"); code != 0 || out != "hi from compiled Go\n" {
		t.Fatalf("./dce extra hi: exit %d %q", code, out)
	}

	// start → status → reload → stop
	if out, code := dce(t, dir, "websocket", "status"); code != 1 || !strings.Contains(out, "no server is running") {
		t.Errorf("status with no server: exit %d %q; want 1", code, out)
	}
	cmd, log := startServer(t, dir)
	if want := fmt.Sprintf("Websocket server started with: 127.0.0.1:%d, 127.0.0.1:%d.", ports[0], ports[1]); !strings.Contains(log.String(), want) {
		t.Errorf("start log lacks %q:\n%s", want, log.String())
	}
	ws, _, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://127.0.0.1:%d/", ports[0]), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`sample/im/login:1;{"nickname":"e2e"}`))
	if out, code := dce(t, dir, "websocket", "status"); code != 0 || !strings.Contains(out, `"websocket": 1`) {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	if out, code := dce(t, dir, "websocket", "reload"); code != 0 || !strings.Contains(out, "reloaded") {
		t.Errorf("reload: exit %d %q", code, out)
	}
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`:2;`)) // the connection survived the reload
	for {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after reload: %v", err)
		}
		if strings.HasPrefix(string(b), ":2;") {
			break
		}
	}
	// SIGHUP reloads, and the reload re-applies log.format: the reload's
	// own log line comes out as JSON.
	if err := os.WriteFile(filepath.Join(dir, "common/config/config.yaml"), []byte("log: {level: info, format: json}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, `"msg":"reloaded `)
	if out, code := dce(t, dir, "websocket", "stop"); code != 0 || !strings.Contains(out, "stopped") {
		t.Errorf("stop: exit %d %q", code, out)
	}
	if code := waitExit(t, cmd); code != 0 {
		t.Errorf("server exit code %d; want 0\n%s", code, log.String())
	}
	for {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := ws.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Errorf("client saw %v; want close 1001", err)
			}
			break
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "runtime", "dce.sock")); !os.IsNotExist(err) {
		t.Errorf("control socket left after stop: %v", err)
	}

	// kill -9 leaves a stale socket and pid file; the next start works.
	cmd, _ = startServer(t, dir)
	pid := serverPID(t, dir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cmd)
	if _, err := os.Stat(filepath.Join(dir, "runtime", "dce.sock")); err != nil {
		t.Errorf("kill -9 should leave the socket file behind (the next start must replace it): %v", err)
	}
	if out, code := dce(t, dir, "websocket", "status"); code != 1 {
		t.Errorf("status after kill -9: exit %d %q; want 1", code, out)
	}
	cmd, log = startServer(t, dir)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd); code != 0 {
		t.Errorf("exit after SIGTERM: %d\n%s", code, log.String())
	}
}

// waitLog waits until the server's output contains s.
func waitLog(t *testing.T, log *lockedBuffer, s string) {
	t.Helper()
	if !wait.Until(10*time.Second, func() bool { return strings.Contains(log.String(), s) }) {
		t.Fatalf("server log lacks %q:\n%s", s, log.String())
	}
}

func serverPID(t *testing.T, dir string) int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "runtime", "dce.pid"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// startLimited runs `./dce websocket start ARGS...` with an open-file
// limit of n and extra environment, and waits for its start log.
func startLimited(t *testing.T, dir string, n int, env []string, args ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	sh := append([]string{"-c", fmt.Sprintf(`ulimit -n %d && exec ./dce websocket start "$@"`, n), "dce"}, args...)
	cmd := exec.Command("sh", sh...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	log := background(t, cmd)
	waitLog(t, log, "Connections: at most")
	return cmd, log
}

// flood opens n raw WebSocket upgrades to addr and keeps them open.
func flood(t *testing.T, addr string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue // the backlog is full: that is the flood working
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	}
}

// TestOutOfFiles: a server whose process runs out of files stays in
// control: status answers, stop stops it (exit 0, its files removed); with
// max_connections following the file limit (the default) a flood is
// refused with 503 before the files run out.
func TestOutOfFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, ports := copyApp(t)
	if _, code := dce(t, dir, "routes"); code != 0 { // build before the limit applies
		t.Fatal("./dce routes failed")
	}
	main := fmt.Sprintf("127.0.0.1:%d", ports[0])

	// max_connections far above what 256 files allow: the files run out.
	cmd, log := startLimited(t, dir, 256, []string{"DCE_WEBSOCKET_MAX_CONNECTIONS=100000"})
	waitLog(t, log, "websocket.max_connections is 100000, but the open-file limit of 256")
	flood(t, main, 400)
	waitLog(t, log, "accept failed, retrying")
	began := time.Now()
	out, code := dce(t, dir, "websocket", "status")
	if code != 0 || !strings.Contains(out, `"connections"`) {
		t.Fatalf("status while out of files: exit %d\n%s\n%s", code, out, log.String())
	}
	t.Logf("status answered in %v while out of files", time.Since(began))
	if out, code := dce(t, dir, "websocket", "stop"); code != 0 || !strings.Contains(out, "stopped") {
		t.Errorf("stop while out of files: exit %d %q\n%s", code, out, log.String())
	}
	if code := waitExit(t, cmd); code != 0 {
		t.Errorf("server exit %d; want 0", code)
	}
	for _, f := range []string{"dce.sock", "dce.pid"} {
		if _, err := os.Stat(filepath.Join(dir, "runtime", f)); !os.IsNotExist(err) {
			t.Errorf("runtime/%s left after stop: %v", f, err)
		}
	}

	// The default: the limit follows the files, and the flood gets 503s.
	cmd, log = startLimited(t, dir, 256, nil)
	waitLog(t, log, "Connections: at most 144 (open-file limit 256)")
	flood(t, main, 400)
	var st struct {
		Connections map[string]int `json:"connections"`
		Refused     int            `json:"refused"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, code := dce(t, dir, "websocket", "status")
		if code != 0 {
			t.Fatalf("status during the flood: exit %d %s", code, out)
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		if st.Refused > 0 && st.Connections["total"] == 144 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v; want 144 connections and the rest refused\n%s", st, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(log.String(), "accept failed") {
		t.Errorf("the files ran out although max_connections follows the limit:\n%s", log.String())
	}
	if out, code := dce(t, dir, "websocket", "stop"); code != 0 {
		t.Errorf("stop: exit %d %q", code, out)
	}
	if code := waitExit(t, cmd); code != 0 {
		t.Errorf("server exit %d; want 0", code)
	}
}

// TestTwoServersOneFolder: `./dce websocket start -port P2` runs beside the
// default server from one checkout, its other listeners moved by the same
// distance; each chats, reports and stops on its own.
func TestTwoServersOneFolder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, ports := copyApp(t)
	if _, code := dce(t, dir, "routes"); code != 0 {
		t.Fatal("./dce routes failed")
	}
	second := ports[0] + 10
	one, log1 := startLimited(t, dir, 4096, nil)
	cmd, log2 := startLimited(t, dir, 4096, nil, "-port", strconv.Itoa(second))
	if want := fmt.Sprintf("Websocket server started with: 127.0.0.1:%d, 127.0.0.1:%d.", second, ports[1]+10); !strings.Contains(log2.String(), want) {
		t.Errorf("second server's start log lacks %q:\n%s", want, log2.String())
	}
	if want := fmt.Sprintf("TCP server started with: 127.0.0.1:%d.", ports[2]+10); !strings.Contains(log2.String(), want) {
		t.Errorf("second server's TCP port did not keep its distance:\n%s", log2.String())
	}
	// Chat on each.
	for _, p := range []int{ports[0], second} {
		ws, _, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://127.0.0.1:%d/", p), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		_ = ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`sample/im/login:1;{"nickname":"on%d"}`, p)))
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`sample/im/send:2;{"message":"hi"}`))
		for {
			_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, b, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("port %d: %v", p, err)
			}
			if strings.HasPrefix(string(b), "sample/im/send:2;") {
				if !strings.Contains(string(b), `"data"`) {
					t.Errorf("port %d: %s", p, b)
				}
				break
			}
		}
	}
	// Both running: -port reaches that one, no -port the default one.
	if out, code := dce(t, dir, "websocket", "status", "-port", strconv.Itoa(second)); code != 0 || !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d", second)) {
		t.Errorf("status -port %d: exit %d\n%s", second, code, out)
	}
	if out, code := dce(t, dir, "websocket", "stop"); code != 0 || !strings.Contains(out, "stopped") {
		t.Errorf("stop: exit %d %q\n%s", code, out, log1.String())
	}
	if code := waitExit(t, one); code != 0 {
		t.Errorf("default server exit %d", code)
	}
	// Only the other one runs: commands without -port reach it.
	if out, code := dce(t, dir, "websocket", "status"); code != 0 || !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d", second)) {
		t.Errorf("status with only the second server running: exit %d\n%s", code, out)
	}
	if out, code := dce(t, dir, "websocket", "stop", "-port", strconv.Itoa(second)); code != 0 || !strings.Contains(out, "stopped") {
		t.Errorf("stop -port %d: exit %d %q", second, code, out)
	}
	if code := waitExit(t, cmd); code != 0 {
		t.Errorf("second server exit %d", code)
	}
}
