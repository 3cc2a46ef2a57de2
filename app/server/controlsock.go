package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Control file names in runtime/, for the default instance (the server of
// the configured port). Another instance (`./dce websocket start -port
// 20471`) has its own: dce-20471.sock, dce-20471.pid (ControlFiles).
const (
	SocketFile = "dce.sock"
	PIDFile    = "dce.pid"
)

// ControlFiles returns the socket and pid file names of an instance in
// runtime/: "" is the default one.
func ControlFiles(instance string) (sock, pid string) {
	if instance == "" {
		return SocketFile, PIDFile
	}
	return "dce-" + instance + ".sock", "dce-" + instance + ".pid"
}

// Instances lists the instances whose control socket is in runtimeDir
// ("" for the default one), whether or not they answer.
func Instances(runtimeDir string) []string {
	var out []string
	if _, err := os.Stat(filepath.Join(runtimeDir, SocketFile)); err == nil {
		out = append(out, "")
	}
	matches, _ := filepath.Glob(filepath.Join(runtimeDir, "dce-*.sock"))
	for _, m := range matches {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), "dce-"), ".sock"))
	}
	return out
}

// ErrNotRunning means no server answers on the control socket.
var ErrNotRunning = errors.New("no server is running")

// ErrRunning means another server already answers on the control socket.
var ErrRunning = errors.New("a server is already running")

// ListenControl opens runtime/dce.sock (mode 0600) and writes runtime/dce.pid.
// A socket left by a killed server is removed; a live one is ErrRunning.
// It serves "stop", "reload" and "status", one per connection, until the
// server shuts down, and removes both files then (and only then).
func (s *Server) ListenControl(runtimeDir string) error { return s.ListenControlAs(runtimeDir, "") }

// ListenControlAs is ListenControl for a named instance (ControlFiles).
func (s *Server) ListenControlAs(runtimeDir, instance string) error {
	if err := os.MkdirAll(runtimeDir, 0o755); err != nil {
		return err
	}
	sockName, pidName := ControlFiles(instance)
	sock := filepath.Join(runtimeDir, sockName)
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return ErrRunning
	}
	_ = os.Remove(sock) // stale, from a killed server
	lfd, err := listenUnix(sock)
	if err != nil {
		return err
	}
	pidFile := filepath.Join(runtimeDir, pidName)
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	served := make(chan struct{})
	s.goTracked(func() { // owns lfd: closes it once serveControl has returned
		<-s.stop
		// Wake the accept: a shut-down listener fails it; a last
		// connection makes sure.
		_ = syscall.Shutdown(lfd, syscall.SHUT_RDWR)
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
		}
		<-served
		syscall.Close(lfd)
	})
	s.goTracked(func() {
		defer close(served)
		defer os.Remove(pidFile)
		defer os.Remove(sock)
		s.serveControl(lfd)
	})
	return nil
}

// listenUnix opens a listening Unix socket at path, mode 0600, in blocking
// mode: serveControl accepts from it without the runtime's poller.
func listenUnix(path string) (int, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	old := syscall.Umask(0o177)
	err = syscall.Bind(fd, &syscall.SockaddrUnix{Name: path})
	syscall.Umask(old)
	if err == nil {
		err = os.Chmod(path, 0o600)
	}
	if err == nil {
		err = syscall.Listen(fd, 64)
	}
	if err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("control socket %s: %w", path, err)
	}
	return fd, nil
}

// serveControl answers control connections until the server stops.
//
// It must work when a connection flood has taken every file of the
// process. It accepts in blocking mode, on a goroutine of its own: a
// blocking accept takes its descriptor number before it waits for a peer,
// so once it has one, no other listener can take it. It keeps one
// descriptor in reserve; when accept fails for want of files it gives that
// one up and accepts again, which then waits with the freed number in hand.
// After a connection it keeps that connection's descriptor (shut down) as
// the new reserve when it had none.
func (s *Server) serveControl(lfd int) {
	spare := openSpare()
	defer func() { closeSpare(spare) }()
	log := shortageLog{log: s.log, name: "control socket"}
	for {
		fd, err := acceptCloexec(lfd)
		select {
		case <-s.stop:
			if err == nil {
				syscall.Close(fd)
			}
			return
		default:
		}
		if err != nil {
			switch {
			case errors.Is(err, syscall.EINTR), errors.Is(err, syscall.ECONNABORTED):
			case fdShortage(err) && spare >= 0:
				closeSpare(spare)
				spare = -1
			default:
				log.note(err)
				select {
				case <-time.After(100 * time.Millisecond):
				case <-s.stop:
					return
				}
			}
			continue
		}
		s.control(rawConn(fd))
		if spare < 0 {
			_ = syscall.Shutdown(fd, syscall.SHUT_RDWR)
			spare = fd
		} else {
			syscall.Close(fd)
		}
	}
}

func acceptCloexec(lfd int) (int, error) {
	fd, _, err := syscall.Accept4(lfd, syscall.SOCK_CLOEXEC)
	return fd, err
}

func openSpare() int {
	fd, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

func closeSpare(fd int) {
	if fd >= 0 {
		syscall.Close(fd)
	}
}

// rawConn is an accepted control connection on its blocking descriptor.
type rawConn int

func (c rawConn) Read(p []byte) (int, error) {
	n, err := syscall.Read(int(c), p)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return max(n, 0), err
}

func (c rawConn) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		n, err := syscall.Write(int(c), p[written:])
		if err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

// control answers one command. Peers of another user are refused.
func (s *Server) control(c rawConn) {
	tv := syscall.NsecToTimeval(int64(10 * time.Second))
	_ = syscall.SetsockoptTimeval(int(c), syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	_ = syscall.SetsockoptTimeval(int(c), syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	uid := -1
	if cred, err := syscall.GetsockoptUcred(int(c), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
		uid = int(cred.Uid)
	}
	if uid != os.Geteuid() {
		_, _ = fmt.Fprintf(c, "error: refused: the control socket belongs to another user\n")
		s.log.Warn("control socket: refused a peer of another user", "uid", uid)
		return
	}
	line, err := bufio.NewReader(io.LimitReader(c, 256)).ReadString('\n')
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

// Control sends a command to the server running from runtimeDir and
// returns its answer. ErrNotRunning when nothing listens.
func Control(runtimeDir, cmd string) (string, error) { return ControlAs(runtimeDir, "", cmd) }

// Answers reports whether a server listens on the instance's control socket.
func Answers(runtimeDir, instance string) bool {
	sock, _ := ControlFiles(instance)
	c, err := net.DialTimeout("unix", filepath.Join(runtimeDir, sock), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ControlAs is Control for a named instance (ControlFiles).
func ControlAs(runtimeDir, instance, cmd string) (string, error) {
	sock, _ := ControlFiles(instance)
	c, err := net.DialTimeout("unix", filepath.Join(runtimeDir, sock), 2*time.Second)
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
