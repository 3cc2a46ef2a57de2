// Package server runs the WebSocket server of `./dce websocket start`: HTTP
// and WebSocket on the main port and every extra port, TCP (one message per
// line) and UDP (one per datagram) listeners, all routed through the same
// node tree and controllers; the optional server-to-server API; and the
// control socket behind `websocket stop|reload|status`.
//
//	s, err := server.New(server.Options{Root: root, Projects: names, Config: cfg, Logger: log})
//	if err := s.Start(); err != nil { ... }
//	defer s.Shutdown(context.Background())
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"dce/app/cluster"
	"dce/app/config"
	"dce/app/dce"
	"dce/app/router"
	"dce/app/session"
)

// Options configure a Server.
type Options struct {
	Root     string         // application root: www/ and project/ are below it
	Projects []string       // the project folders to serve
	Config   *config.Config // validated configuration
	Logger   *slog.Logger   // nil discards
	Sessions dce.Sessions   // nil: a manager on the store session.store names
	Reload   func() (*config.Config, error)
	Reloaded func(*config.Config) // after a reload: apply what the server does not own (log level, format)
}

// Server is one running WebSocket server.
type Server struct {
	root     string
	log      *slog.Logger
	cfg      atomic.Pointer[config.Config]
	router   atomic.Pointer[router.Router]
	projects []string
	metrics  *metrics
	store    session.Store // the session store the server opened; nil when given one
	built    *dce.Projects // the projects, constructed once for this server
	hub      *Hub
	hooks    []*dce.Server // the server types websocket.service selects, in its order
	codec    dce.Codec
	text     bool
	upgrader websocket.Upgrader
	reloadFn func() (*config.Config, error)
	reloaded func(*config.Config)

	files        uint64 // the open-file limit
	limitWarning string // max_connections above what files allow, said at start

	started  time.Time
	https    []*http.Server
	httpAddr []string
	sockAddr []string
	tcpLns   []net.Listener
	udpConns []*net.UDPConn
	api      *http.Server
	apiAddr  string

	metricsSrv  *http.Server
	metricsAddr string

	mu       sync.Mutex // guards stopping and wg.Add
	stopping bool
	wg       sync.WaitGroup // connection readers and listener loops
	stop     chan struct{}  // closed by Shutdown: background loops end
	done     chan struct{}  // closed when Shutdown has finished
	once     sync.Once
}

// New prepares a server: it builds the projects (their constructors get
// this server's hub), resolves the nodes' controllers and selects the
// server types of websocket.service, but opens nothing.
func New(o Options) (_ *Server, err error) {
	if o.Config == nil {
		return nil, errors.New("server.New: Config is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var owned session.Store // the store this server opened, closed with it
	if o.Sessions == nil {
		m, err := session.FromConfig(o.Config, o.Logger)
		if err != nil {
			return nil, err
		}
		o.Sessions, owned = m, m.Store()
		defer func() {
			if err != nil {
				owned.Close()
			}
		}()
	}
	s := &Server{
		root:     o.Root,
		projects: o.Projects,
		log:      o.Logger,
		reloaded: o.Reloaded,
		reloadFn: o.Reload,
		codec:    dce.TextCodec{},
		store:    owned,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.cfg.Store(o.Config)
	s.files = fileLimit()
	lim, warn := s.inForce(o.Config.Websocket)
	s.limitWarning = warn
	s.hub = newHub(lim, o.Sessions, o.Logger)
	built, err := dce.Build(o.Projects, dce.Env{Root: o.Root, Config: o.Config, Hub: s.hub, Sessions: s.hub.sessions, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	s.built = built
	rt, err := router.New(o.Root, o.Projects, built)
	if err != nil {
		return nil, err
	}
	if o.Config.Websocket.Metrics != "" { // without metrics, requests are not timed
		s.metrics = newMetrics()
		rt.Observer = s.metrics
	}
	s.router.Store(rt)
	if s.hooks, err = built.Servers(o.Config.Websocket.Service); err != nil {
		return nil, fmt.Errorf("websocket.service: %w", err)
	}
	for _, h := range s.hooks {
		if h.Codec != nil {
			s.codec = h.Codec
			break
		}
	}
	_, s.text = s.codec.(dce.TextCodec)
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   512,
		WriteBufferPool:  &sync.Pool{}, // gorilla writes only control frames: hold no buffer
		CheckOrigin:      s.checkOrigin,
	}
	return s, nil
}

// Hub returns the connection hub.
func (s *Server) Hub() *Hub { return s.hub }

// Config returns the configuration in force.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// HTTPAddrs returns the bound WebSocket/HTTP addresses, main port first.
func (s *Server) HTTPAddrs() []string { return s.httpAddr }

// SockAddrs returns the bound TCP and UDP addresses, in config order, as
// "tcp://host:port" and "udp://host:port".
func (s *Server) SockAddrs() []string { return s.sockAddr }

// APIAddr returns the bound server-to-server API address, or "".
func (s *Server) APIAddr() string { return s.apiAddr }

// Done is closed when the server has shut down.
func (s *Server) Done() <-chan struct{} { return s.done }

// Start runs the before-start hook, opens every listener and serves in the
// background. When a listener fails, those already open are closed.
func (s *Server) Start() (err error) {
	cfg := s.cfg.Load().Websocket
	if cc := s.cfg.Load().Cluster; cc.Redis != "" {
		node := cc.Node
		if node == "" {
			host, _ := os.Hostname()
			node = host + ":" + strconv.Itoa(cfg.Port)
		}
		s.hub.onPublish = s.published // before Join: deliveries may start at once
		c, err := cluster.Join(cluster.Options{
			URL: cc.Redis, Prefix: s.cfg.Load().Redis.Prefix, Node: node, DeadAfter: cc.DeadAfter,
			Log: s.log, Deliver: s.hub.deliver, Presence: s.remotePresence,
		})
		if err != nil {
			return err
		}
		s.hub.bus = c
		if m, ok := s.hub.sessions.(*session.Manager); ok {
			m.Cluster(c.SetPlaces)
		}
		s.log.Info("Joined the cluster as node " + node + " (cluster.redis).")
	}
	for _, h := range s.hooks {
		if h.BeforeStart == nil {
			continue
		}
		if err := h.BeforeStart(s.hub); err != nil {
			return fmt.Errorf("before start: %w", err)
		}
	}
	defer func() {
		if err != nil {
			s.closeListeners()
		}
	}()
	gate := &httpGate{hub: s.hub} // shared by the WebSocket ports: one count of files
	for _, a := range cfg.Addrs() {
		ln, err := net.Listen("tcp", net.JoinHostPort(a.Host, strconv.Itoa(a.Port)))
		if err != nil {
			return fmt.Errorf("websocket listener: %w", err)
		}
		hs := &http.Server{
			Handler:           s.httpHandler(),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
			ConnState:         gate.connState,
		}
		s.https = append(s.https, hs)
		s.httpAddr = append(s.httpAddr, shown(a.Host, ln.Addr()))
		pl := patient(ln, s.stop, s.log, "websocket "+ln.Addr().String())
		pl.gate = gate
		s.goTracked(func() { _ = hs.Serve(pl) })
	}
	for _, a := range cfg.EnableTCPPorts {
		addr := net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
		if a.SockType == "udp" {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return fmt.Errorf("udp listener: %w", err)
			}
			pc, err := net.ListenUDP("udp", ua)
			if err != nil {
				return fmt.Errorf("udp listener: %w", err)
			}
			s.udpConns = append(s.udpConns, pc)
			s.sockAddr = append(s.sockAddr, "udp://"+shown(a.Host, pc.LocalAddr()))
			s.goTracked(func() { s.serveUDP(pc) })
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("tcp listener: %w", err)
		}
		s.tcpLns = append(s.tcpLns, ln)
		s.sockAddr = append(s.sockAddr, "tcp://"+shown(a.Host, ln.Addr()))
		pl := patient(ln, s.stop, s.log, "tcp "+ln.Addr().String())
		s.goTracked(func() { s.acceptTCP(pl) })
	}
	if cfg.APIPort != 0 {
		if err := s.startAPI(cfg); err != nil {
			return err
		}
	}
	if cfg.Metrics != "" {
		if err := s.startMetrics(cfg.Metrics); err != nil {
			return err
		}
	}
	s.started = time.Now()
	s.goTracked(func() { s.hub.keepalive(s.stop) })
	s.log.Info("Websocket server started with: " + strings.Join(s.httpAddr, ", ") + ".")
	for _, a := range s.sockAddr {
		kind, addr, _ := strings.Cut(a, "://")
		s.log.Info(strings.ToUpper(kind) + " server started with: " + addr + ".")
	}
	if s.apiAddr != "" {
		s.log.Info("API server started with: " + s.apiAddr + ".")
	}
	if s.metricsAddr != "" {
		s.log.Info("Metrics on http://" + s.metricsAddr + "/metrics (/healthz, /readyz).")
	}
	s.log.Info(s.limitsLine())
	if s.limitWarning != "" {
		s.log.Warn(s.limitWarning)
	}
	if !cfg.EnableHTTP {
		s.log.Info("HTTP pages are off (websocket.enable_http: false): the ports answer WebSocket upgrades only")
	}
	return nil
}

// shown is host:port as configured, with the bound port (port 0 picks one).
func shown(host string, addr net.Addr) string {
	_, port, _ := net.SplitHostPort(addr.String())
	return net.JoinHostPort(host, port)
}

// goTracked runs f in a goroutine that Shutdown waits for; it reports false
// (and does not run f) once shutdown has begun.
func (s *Server) goTracked(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// closeListeners closes every listener at once (a failed start).
func (s *Server) closeListeners() {
	for _, hs := range s.https {
		_ = hs.Close()
	}
	if s.api != nil {
		_ = s.api.Close()
	}
	if s.metricsSrv != nil {
		_ = s.metricsSrv.Close()
	}
	s.closeSockets()
}

// closeSockets closes the TCP and UDP listeners.
func (s *Server) closeSockets() {
	for _, ln := range s.tcpLns {
		_ = ln.Close()
	}
	for _, pc := range s.udpConns {
		_ = pc.Close()
	}
}

// Shutdown stops gracefully: it stops accepting, sends what is queued,
// closes every WebSocket with 1001 (going away) and every TCP connection,
// and waits for them until ctx ends; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.stopping = true
		s.mu.Unlock()
		close(s.stop)
		// HTTP stops accepting at once and lets requests in flight finish
		// (bounded by ctx); hijacked WebSockets are closed below.
		var httpDone sync.WaitGroup
		for _, hs := range append(slices.Clip(s.https), s.api) {
			if hs == nil {
				continue
			}
			httpDone.Add(1)
			go func() {
				defer httpDone.Done()
				if hs.Shutdown(ctx) != nil {
					_ = hs.Close()
				}
			}()
		}
		s.closeSockets()
		for _, c := range s.hub.snapshot() {
			c.out.Close(websocket.CloseGoingAway, "server shutting down")
		}
		httpDone.Wait()
		waited := make(chan struct{})
		go func() { s.wg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
			err = ctx.Err()
			for _, c := range s.hub.snapshot() {
				c.out.Drop("shutdown timeout")
			}
			<-waited
		}
		for _, h := range s.hooks {
			if h.AfterStop != nil {
				h.AfterStop()
			}
		}
		if s.hub.bus != nil { // the others see this node gone at once
			s.hub.bus.Close()
		}
		if s.metricsSrv != nil { // the last to go: /readyz says "stopping" until the end
			_ = s.metricsSrv.Close()
		}
		if s.store != nil {
			if cerr := s.store.Close(); cerr != nil {
				s.log.Warn("session store close", "err", cerr.Error())
			}
		}
		s.log.Info("Websocket server stopped")
		close(s.done)
	})
	return err
}

// Reload re-reads nodes, templates and the reloadable configuration (log
// level and access log, limits, allowed origins) without dropping a
// connection. Listener changes need a restart and are reported.
func (s *Server) Reload() (string, error) {
	if s.reloadFn == nil {
		return "", errors.New("this server cannot reload")
	}
	cfg, err := s.reloadFn()
	if err != nil {
		return "", err
	}
	rt, err := router.New(s.root, s.projects, s.built)
	if err != nil {
		return "", err
	}
	if s.metrics != nil {
		rt.Observer = s.metrics
	}
	old := s.cfg.Load()
	s.router.Store(rt)
	s.cfg.Store(cfg)
	s.built.Reload(cfg)
	lim, warn := s.inForce(cfg.Websocket)
	s.hub.lim.Store(&lim)
	if warn != "" {
		s.log.Warn(warn)
	}
	if s.reloaded != nil {
		s.reloaded(cfg)
	}
	msg := fmt.Sprintf("reloaded %d nodes", len(rt.Tree.Nodes()))
	if !sameListeners(old.Websocket, cfg.Websocket) {
		msg += "; listener changes (host, ports, service, api) take effect after a restart"
	}
	s.log.Info(msg)
	return msg, nil
}

func sameListeners(a, b config.Websocket) bool {
	return fmt.Sprint(a.Addrs(), a.EnableTCPPorts, a.Service, a.APIHost, a.APIPort, a.APIPassword) ==
		fmt.Sprint(b.Addrs(), b.EnableTCPPorts, b.Service, b.APIHost, b.APIPort, b.APIPassword)
}

// inForce is the websocket section as the server applies it: with the
// connection limit that the open-file limit allows when max_connections is 0.
func (s *Server) inForce(w config.Websocket) (config.Websocket, string) {
	var warn string
	w.MaxConnections, warn = connectionLimit(w.MaxConnections, s.files)
	return w, warn
}

// limitsLine says the connection limits in force, for the start log.
func (s *Server) limitsLine() string {
	lim := s.hub.limits()
	line := fmt.Sprintf("Connections: at most %d (open-file limit %d)", lim.MaxConnections, s.files)
	if lim.MaxConnsPerIP > 0 {
		line += fmt.Sprintf(", %d per address", lim.MaxConnsPerIP)
	}
	if lim.ConnectRate > 0 {
		line += fmt.Sprintf(", %g new per second per address", lim.ConnectRate)
	}
	if (lim.MaxConnsPerIP > 0 || lim.ConnectRate > 0) && len(lim.PerIPExempt) > 0 {
		line += " (exempt: " + strings.Join(lim.PerIPExempt, ", ") + ")"
	}
	return line + "."
}

// access reports whether access logging is on.
func (s *Server) access() bool { return s.cfg.Load().Log.Access }

// remotePresence applies other nodes' presence changes: the session
// manager counts them, then each server type hears of them.
func (s *Server) remotePresence(changes map[int64]int) {
	if m, ok := s.hub.sessions.(*session.Manager); ok {
		m.SetRemote(changes)
	}
	for _, h := range s.hooks {
		if h.OnPresence != nil {
			h.OnPresence(s.hub, changes)
		}
	}
}

// published hands another node's Hub.Publish to every server type.
func (s *Server) published(topic string, m *dce.Message) {
	for _, h := range s.hooks {
		if h.OnPublish != nil {
			h.OnPublish(s.hub, topic, m)
		}
	}
}
