// Package servertest starts real servers on random loopback ports for tests,
// and speaks the wire protocol as clients do: WebSocket frames, TCP lines,
// UDP datagrams. Projects use it to test their nodes end to end.
//
//	s := servertest.Start(t, root, []string{"sample"}, nil)
//	c := servertest.DialWS(t, s.HTTPAddrs()[0])
//	c.Send(`sample/im/login:1;{"nickname":"a"}`)
//	c.ExpectPrefix("setUserList;")
package servertest

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"dce/app/config"
	"dce/app/server"
)

// Timeout bounds every wait of a test client.
const Timeout = 5 * time.Second

// Start loads the configuration and nodes of projects under root, binds
// every listener to 127.0.0.1 with a free port, applies mutate, and starts
// the server. It shuts down at the end of the test.
func Start(t testing.TB, root string, projects []string, mutate func(*config.Config)) *server.Server {
	t.Helper()
	return StartEnv(t, root, projects, nil, mutate)
}

// StartEnv is Start with environment variables (DCE_IM_MEMBERS_MAX=2);
// the process environment is never read.
func StartEnv(t testing.TB, root string, projects []string, env map[string]string, mutate func(*config.Config)) *server.Server {
	t.Helper()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	// load reads the files as a real start and reload do, then moves every
	// listener to loopback (a free port each) and applies mutate.
	apiPort := 0
	load := func() (*config.Config, error) {
		cfg, err := config.Load(config.Source{Root: root, Projects: projects, Env: lookup})
		if err != nil {
			return nil, err
		}
		w := &cfg.Websocket
		w.Host, w.Port = "127.0.0.1", 0
		for i := range w.ExtraPorts {
			w.ExtraPorts[i] = config.Addr{Host: "127.0.0.1"}
		}
		for i := range w.EnableTCPPorts {
			w.EnableTCPPorts[i].Host, w.EnableTCPPorts[i].Port = "127.0.0.1", 0
		}
		if w.APIPort != 0 { // the API's port 0 would turn it off: a free one
			if apiPort == 0 {
				apiPort = FreePort(t)
			}
			w.APIHost, w.APIPort = "127.0.0.1", apiPort
		}
		// Test servers share the checkout's runtime/ folder: a file store
		// there would be one lock for every test process. A test that wants
		// one sets it (with a root of its own) in mutate.
		cfg.Session.Store = "memory"
		if mutate != nil {
			mutate(cfg)
		}
		if w.Metrics != "" { // a port of its own, like the API's
			w.Metrics = "127.0.0.1:0"
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("DCE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := server.New(server.Options{Root: root, Projects: projects, Config: cfg, Logger: log, Reload: load})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Sock returns the address of the first TCP or UDP listener ("tcp"/"udp").
func Sock(t testing.TB, s *server.Server, kind string) string {
	t.Helper()
	for _, a := range s.SockAddrs() {
		if strings.HasPrefix(a, kind+"://") {
			return strings.TrimPrefix(a, kind+"://")
		}
	}
	t.Fatalf("no %s listener in %v", kind, s.SockAddrs())
	return ""
}

// WS is a WebSocket test client.
type WS struct {
	t    testing.TB
	Conn *websocket.Conn
}

// DialWS connects to addr ("127.0.0.1:port") with optional headers.
func DialWS(t testing.TB, addr string, header ...http.Header) *WS {
	t.Helper()
	return DialWSPath(t, addr, "/", header...)
}

// DialWSPath connects to a path ("/?dcesid=…") of addr.
func DialWSPath(t testing.TB, addr, path string, header ...http.Header) *WS {
	t.Helper()
	var h http.Header
	if len(header) > 0 {
		h = header[0]
	}
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+path, h)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &WS{t: t, Conn: c}
}

// DialWSNarrow connects like DialWS with a 4 KiB receive buffer, so the
// kernel cannot soak up what a client that never reads is sent: the server
// sees it as slow after a few frames, whatever the machine's TCP tuning.
func DialWSNarrow(t testing.TB, addr string) *WS {
	t.Helper()
	d := *websocket.DefaultDialer
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	d.NetDialContext = nd.DialContext
	c, _, err := d.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &WS{t: t, Conn: c}
}

// Send writes one text frame.
func (c *WS) Send(frame string) {
	c.t.Helper()
	if err := c.Conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		c.t.Fatalf("send %q: %v", frame, err)
	}
}

// Read returns the next text frame, failing the test after Timeout.
func (c *WS) Read() string {
	c.t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(Timeout))
	_, b, err := c.Conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return string(b)
}

// ReadErr returns the next frame or the error that ended the connection.
func (c *WS) ReadErr(timeout time.Duration) (string, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	_, b, err := c.Conn.ReadMessage()
	return string(b), err
}

// Expect reads one frame and requires it to equal want.
func (c *WS) Expect(want string) {
	c.t.Helper()
	if got := c.Read(); got != want {
		c.t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// ExpectPrefix reads one frame, requires the prefix, and returns the frame.
func (c *WS) ExpectPrefix(prefix string) string {
	c.t.Helper()
	got := c.Read()
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("got %s\nwant a frame starting with %s", got, prefix)
	}
	return got
}

// CloseCode waits for the connection to end and returns the close code
// (websocket.CloseAbnormalClosure when there was no close frame).
func (c *WS) CloseCode() int {
	c.t.Helper()
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		_ = c.Conn.SetReadDeadline(deadline)
		_, _, err := c.Conn.ReadMessage()
		if err == nil {
			continue
		}
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		return websocket.CloseAbnormalClosure
	}
	c.t.Fatal("connection still open")
	return 0
}

// TCP is a line-protocol test client.
type TCP struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// DialTCP connects to a TCP listener.
func DialTCP(t testing.TB, addr string) *TCP {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &TCP{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// Send writes one line (the newline is added).
func (c *TCP) Send(line string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(line + "\n")); err != nil {
		c.t.Fatal(err)
	}
}

// Write writes raw bytes.
func (c *TCP) Write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// Read returns the next line without its newline.
func (c *TCP) Read() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(Timeout))
	line, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read line: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

// Expect reads one line and requires it to equal want.
func (c *TCP) Expect(want string) {
	c.t.Helper()
	if got := c.Read(); got != want {
		c.t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// ExpectPrefix reads one line and requires the prefix.
func (c *TCP) ExpectPrefix(prefix string) string {
	c.t.Helper()
	got := c.Read()
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("got %s\nwant a line starting with %s", got, prefix)
	}
	return got
}

// Close closes the connection.
func (c *TCP) Close() { c.nc.Close() }

// UDP sends one datagram and returns the reply.
func UDP(t testing.TB, addr, datagram string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(datagram)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(Timeout))
	buf := make([]byte, 70000)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp reply to %q: %v", datagram, err)
	}
	return string(buf[:n])
}

// Root writes files (path → content) into a new application root.
func Root(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	WriteFiles(t, dir, files)
	return dir
}

// WriteFiles writes files (path → content) under dir, creating folders.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
