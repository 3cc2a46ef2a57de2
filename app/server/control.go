package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"

	"dce/app/config"
	"dce/app/dce"
)

// Status is the live state printed by `./dce websocket status`.
type Status struct {
	PID           int               `json:"pid"`
	StartTime     string            `json:"start_time"`
	Uptime        string            `json:"uptime"`
	UptimeSeconds float64           `json:"uptime_seconds"`
	Listeners     []string          `json:"listeners"`
	Connections   map[string]int    `json:"connections"`
	Accepted      uint64            `json:"accepted"`
	Closed        uint64            `json:"closed"`
	Refused       uint64            `json:"refused"`
	DroppedSlow   uint64            `json:"dropped_slow"`
	Requests      uint64            `json:"requests"`
	Pushes        uint64            `json:"pushes"`
	Goroutines    int               `json:"goroutines"`
	OpenFiles     int               `json:"open_files"`
	Memory        map[string]uint64 `json:"memory"`
	CPUSeconds    float64           `json:"cpu_seconds"`
	RateLimit     float64           `json:"rate_limit"` // messages per second per connection in force; 0 is off
}

// Status collects the live counters.
func (s *Server) Status() Status {
	conns := map[string]int{"websocket": 0, "tcp": 0, "total": 0}
	for _, c := range s.hub.snapshot() {
		conns[c.transport]++
		conns["total"]++
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	up := time.Since(s.started)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	return Status{
		PID:           os.Getpid(),
		StartTime:     s.started.Format(time.RFC3339),
		Uptime:        up.Round(time.Second).String(),
		UptimeSeconds: up.Seconds(),
		Listeners:     append(append([]string{}, s.httpAddr...), s.sockAddr...),
		Connections:   conns,
		Accepted:      s.hub.stats.accepted.Load(),
		Closed:        s.hub.stats.closed.Load(),
		Refused:       s.hub.stats.refused.Load(),
		DroppedSlow:   s.hub.stats.slow.Load(),
		Requests:      s.hub.stats.requests.Load(),
		Pushes:        s.hub.stats.pushes.Load(),
		Goroutines:    runtime.NumGoroutine(),
		OpenFiles:     openFiles(),
		Memory: map[string]uint64{
			"rss_bytes":        rss(),
			"heap_alloc_bytes": ms.HeapAlloc,
			"heap_sys_bytes":   ms.HeapSys,
			"stack_bytes":      ms.StackSys,
			"sys_bytes":        ms.Sys,
		},
		CPUSeconds: cpu,
		RateLimit:  s.hub.limits().RateLimit,
	}
}

// openFiles counts this process's file descriptors (-1 where /proc is missing).
func openFiles() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

// rss reads the resident set size from /proc (0 elsewhere).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// Control file names in runtime/.
const (
	SocketFile = "dce.sock"
	PIDFile    = "dce.pid"
)

// ErrNotRunning means no server answers on the control socket.
var ErrNotRunning = errors.New("no server is running")

// ErrRunning means another server already answers on the control socket.
var ErrRunning = errors.New("a server is already running")

// ListenControl opens runtime/dce.sock (mode 0600) and writes runtime/dce.pid.
// A socket left by a killed server is removed; a live one is ErrRunning.
// It serves "stop", "reload" and "status", one per connection, until the
// server shuts down, and removes both files then.
func (s *Server) ListenControl(runtimeDir string) error {
	if err := os.MkdirAll(runtimeDir, 0o755); err != nil {
		return err
	}
	sock := filepath.Join(runtimeDir, SocketFile)
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return ErrRunning
	}
	_ = os.Remove(sock) // stale, from a killed server
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", sock)
	syscall.Umask(old)
	if err != nil {
		return err
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return err
	}
	pidFile := filepath.Join(runtimeDir, PIDFile)
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	s.goTracked(func() {
		<-s.stop
		ln.Close()
	})
	s.goTracked(func() {
		defer os.Remove(pidFile)
		defer os.Remove(sock)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.control(c.(*net.UnixConn))
		}
	})
	return nil
}

// control answers one command. Peers of another user are refused.
func (s *Server) control(c *net.UnixConn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if uid, err := peerUID(c); err != nil || uid != os.Geteuid() {
		_, _ = fmt.Fprintf(c, "error: refused: the control socket belongs to another user\n")
		s.log.Warn("control socket: refused a peer of another user", "uid", uid)
		return
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	switch cmd := strings.TrimSpace(line); cmd {
	case "status":
		b, _ := json.MarshalIndent(s.Status(), "", "  ")
		_, _ = c.Write(append(b, '\n'))
	case "reload":
		msg, err := s.Reload()
		if err != nil {
			_, _ = fmt.Fprintf(c, "error: reload failed, the old nodes stay in force:\n%v\n", err)
			return
		}
		_, _ = fmt.Fprintln(c, msg)
	case "stop":
		_, _ = fmt.Fprintln(c, "stopping")
		go func() { // Shutdown waits for this goroutine's caller
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Load().Websocket.ShutdownTimeout)
			defer cancel()
			_ = s.Shutdown(ctx)
		}()
	default:
		_, _ = fmt.Fprintf(c, "error: unknown command %q (stop, reload, status)\n", cmd)
	}
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	uid := -1
	var serr error
	err = raw.Control(func(fd uintptr) {
		cred, e := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
		if e != nil {
			serr = e
			return
		}
		uid = int(cred.Uid)
	})
	if err != nil {
		return -1, err
	}
	return uid, serr
}

// Control sends a command to the server running from runtimeDir and
// returns its answer. ErrNotRunning when nothing listens.
func Control(runtimeDir, cmd string) (string, error) {
	c, err := net.DialTimeout("unix", filepath.Join(runtimeDir, SocketFile), 2*time.Second)
	if err != nil {
		return "", ErrNotRunning
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintln(c, cmd); err != nil {
		return "", err
	}
	var sb strings.Builder
	_, err = bufio.NewReader(c).WriteTo(&sb)
	out := sb.String()
	if strings.HasPrefix(out, "error: ") {
		return "", errors.New(strings.TrimSpace(strings.TrimPrefix(out, "error: ")))
	}
	return out, err
}

// startAPI opens the server-to-server API: HTTP with the password as a
// bearer token, compared in constant time.
//
//	POST /push   {"fds":[1,2]|"all":true|"member":3, "path":"x", "data":...}
//	GET  /conns  the live connections
//	GET  /status the counters of `websocket status`
func (s *Server) startAPI(cfg config.Websocket) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.APIHost, strconv.Itoa(cfg.APIPort)))
	if err != nil {
		return fmt.Errorf("api listener: %w", err)
	}
	want := sha256.Sum256([]byte(cfg.APIPassword))
	r := chi.NewRouter()
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got := sha256.Sum256([]byte(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				writeJSON(w, http.StatusUnauthorized, dce.FailStatus(401, "wrong or missing password (Authorization: Bearer PASSWORD)"))
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	r.Post("/push", s.apiPush)
	r.Get("/conns", func(w http.ResponseWriter, r *http.Request) {
		var list []map[string]any
		for _, c := range s.hub.Conns() {
			list = append(list, map[string]any{"fd": c.FD(), "transport": c.Transport(), "remote": c.RemoteAddr()})
		}
		writeJSON(w, 200, dce.Status{Data: map[string]any{"conns": list}})
	})
	r.Get("/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.Status()) })
	s.api = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	s.apiAddr = shown(cfg.APIHost, ln.Addr())
	s.goTracked(func() { _ = s.api.Serve(ln) })
	return nil
}

func (s *Server) apiPush(w http.ResponseWriter, r *http.Request) {
	var in struct {
		FDs    []uint64        `json:"fds"`
		All    bool            `json:"all"`
		Member *int64          `json:"member"`
		Path   string          `json:"path"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&in); err != nil {
		writeJSON(w, 400, dce.FailStatus(400, "want JSON {fds|all|member, path, data}: "+err.Error()))
		return
	}
	data := in.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	var text string
	if json.Unmarshal(data, &text) == nil {
		data = json.RawMessage(text) // a JSON string travels as is
	}
	m := &dce.Message{Path: in.Path, Body: data}
	var n int
	switch {
	case in.All:
		n = s.hub.SendAll(m)
	case in.Member != nil:
		n = s.hub.Send(s.hub.sessions.MemberConns(*in.Member), m)
	default:
		n = s.hub.Send(in.FDs, m)
	}
	writeJSON(w, 200, dce.Status{Data: map[string]any{"queued": n}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
