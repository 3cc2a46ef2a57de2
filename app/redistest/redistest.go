// Package redistest runs a private redis-server for fault tests: on a free
// loopback port of its own, without persistence, stopped (by its PID) and
// started again on the same port when the test says so.
package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Server is one private redis-server.
type Server struct {
	t    testing.TB
	Port int
	cmd  *exec.Cmd
	dir  string // with persistence: its append-only file's folder
}

// Start runs a redis-server on a free port, without persistence, skipping
// the test when none is installed; it is stopped at the end of the test.
func Start(t testing.TB) *Server { t.Helper(); return start(t, "") }

// StartPersistent is Start with an append-only file (fsync at every
// write), as a production Redis keeps its data: a restart finds it again.
func StartPersistent(t testing.TB) *Server { t.Helper(); return start(t, t.TempDir()) }

func start(t testing.TB, dir string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, Port: ln.Addr().(*net.TCPAddr).Port, dir: dir}
	ln.Close()
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// Stop kills the server (an outage: no goodbye to its clients).
func (s *Server) Stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart starts the server again on its port, empty, and waits until it
// accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	args := []string{"--port", fmt.Sprint(s.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}
	if s.dir != "" {
		args = append(args[:len(args)-1], "yes", "--appendfsync", "always", "--dir", s.dir)
	}
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	for range 250 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatal("redis-server did not start")
}

// Machine returns the URL of the machine's Redis (127.0.0.1:6379), which
// tests share under key prefixes of their own. Without it the test skips,
// except where DCE_TEST_REDIS=require (CI), where it fails.
func Machine(t testing.TB) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:6379", time.Second)
	if err != nil {
		if os.Getenv("DCE_TEST_REDIS") == "require" {
			t.Fatalf("the machine's Redis is required (DCE_TEST_REDIS=require): %v", err)
		}
		t.Skipf("no Redis at 127.0.0.1:6379 (start one, or CI's .ci/run does): %v", err)
	}
	c.Close()
	return "redis://127.0.0.1:6379/0"
}
