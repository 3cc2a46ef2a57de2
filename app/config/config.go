// Package config loads the typed configuration of the engine and of the
// projects, through one viper instance.
//
// Order, later wins: built-in defaults < common/config/config.yaml <
// common/config/websocket.yaml < project/NAME/config/config.yaml (that
// project's own sections) < environment (DCE_WEBSOCKET_PORT=20470) <
// command-line options (-port 20460). Maps merge deeply; a list replaces the
// list below it. An unknown key, a wrong type or an impossible value is an
// error naming the file (or variable, or option), the key and what was
// expected.
//
// A project owns a configuration section by registering a pointer to a
// struct holding its defaults (dce.RegisterProject does it for the
// project's constructor); Load decodes it into Config.Sections, a new value
// at each load, and leaves the registered struct alone:
//
//	type Settings struct {
//		MembersMax int `mapstructure:"members_max"`
//	}
//
//	func init() { config.Register("sample", "im", &Settings{MembersMax: 100000}) }
package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"time"
)

// Config is the engine's own configuration.
type Config struct {
	Root      string    `mapstructure:"-"` // application root it was loaded from
	Warnings  []string  `mapstructure:"-"` // what Load noticed but accepted (unknown DCE_* variables)
	Instance  string    `mapstructure:"-"` // "" for the server of the files' port; else its port, naming its runtime files
	Log       Log       `mapstructure:"log"`
	Websocket Websocket `mapstructure:"websocket"`
	Debug     Debug     `mapstructure:"debug"`
	Session   Session   `mapstructure:"session"`
	Redis     Redis     `mapstructure:"redis"`
	Cluster   Cluster   `mapstructure:"cluster"`
	// Sections holds the registered project sections by key, each a
	// value of its registered struct type.
	Sections map[string]any `mapstructure:"-"`
}

// Session configures the session manager (SPEC §9).
type Session struct {
	Name       string        `mapstructure:"name"`        // cookie and query parameter carrying the id
	TTL        time.Duration `mapstructure:"ttl"`         // an unused session expires after it (sliding)
	AutoOpen   bool          `mapstructure:"auto_open"`   // a page request without a session gets the cookie
	CookiePath string        `mapstructure:"cookie_path"` // the cookie's Path
	Store      string        `mapstructure:"store"`       // memory, file (runtime/sessions.db) or redis
}

// Redis is the Redis the redis session store (and a cluster) uses.
type Redis struct {
	URL    string `mapstructure:"url"`    // redis://[:password@]host:port/db
	Prefix string `mapstructure:"prefix"` // of every key this server writes
}

// Cluster joins several servers on one Redis (SPEC §10); off when Redis is "".
type Cluster struct {
	Redis     string        `mapstructure:"redis"`      // redis://host:port/db; env DCE_CLUSTER_REDIS
	Node      string        `mapstructure:"node"`       // this node's name; "" is host name and port
	DeadAfter time.Duration `mapstructure:"dead_after"` // a node silent this long is dead
}

// Debug holds switches for measuring the server.
type Debug struct {
	Pprof string `mapstructure:"pprof"` // host:port serving net/http/pprof; "" is off
}

// Log configures the server's log/slog output.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info, warn or error
	Format string `mapstructure:"format"` // text or json
	Access bool   `mapstructure:"access"` // one line per connect, close, request and response
}

// SlogLevel is Level as a log/slog level (validated by Load).
func (l Log) SlogLevel() slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level))
	return level
}

// Websocket configures the server of `./dce websocket start`.
type Websocket struct {
	Host           string     `mapstructure:"host"`
	Port           int        `mapstructure:"port"`    // 0 picks a free port (tests)
	Service        string     `mapstructure:"service"` // registered server name; "" is the base server
	EnableHTTP     bool       `mapstructure:"enable_http"`
	ExtraPorts     []Addr     `mapstructure:"extra_ports"`
	EnableTCPPorts []SockAddr `mapstructure:"enable_tcp_ports"`
	APIHost        string     `mapstructure:"api_host"`
	APIPort        int        `mapstructure:"api_port"` // 0: no server-to-server API
	APIPassword    string     `mapstructure:"api_password"`
	AllowedOrigins []string   `mapstructure:"allowed_origins"` // besides the request's own host; "*" allows all
	Metrics        string     `mapstructure:"metrics"`         // host:port serving /metrics, /healthz, /readyz; "" is off

	MaxFrameBytes   int           `mapstructure:"max_frame_bytes"`        // WebSocket frame, TCP line, UDP datagram
	SendQueue       int           `mapstructure:"send_queue"`             // messages queued per connection before it is dropped
	MaxConnections  int           `mapstructure:"max_connections"`        // over it, new connections are refused; 0 follows the open-file limit
	MaxConnsPerIP   int           `mapstructure:"max_connections_per_ip"` // connections one source address may hold; 0: no limit
	ConnectRate     float64       `mapstructure:"connect_rate_per_ip"`    // new connections per second per source address (burst: twice that); 0: no limit
	PerIPExempt     []string      `mapstructure:"per_ip_exempt"`          // networks (CIDR) the two per-address limits skip
	RateLimit       float64       `mapstructure:"rate_limit"`             // messages per second per connection; 0: no limit
	RateBurst       int           `mapstructure:"rate_burst"`             // messages allowed at once above the rate
	PingInterval    time.Duration `mapstructure:"ping_interval"`          // WebSocket ping period
	PongTimeout     time.Duration `mapstructure:"pong_timeout"`           // silence after which a WebSocket is dropped
	WriteTimeout    time.Duration `mapstructure:"write_timeout"`          // one write to a peer
	WriteCoalesce   time.Duration `mapstructure:"write_coalesce"`         // least time between two writes to one peer under load; 0: none
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`       // graceful stop, flush included
}

// Addr is a host and port that serves WebSocket and HTTP.
type Addr struct {
	Host string `mapstructure:"host"`
	Port int    `mapstructure:"port"`
}

// SockAddr is a raw TCP (one message per line) or UDP (one per datagram)
// listener.
type SockAddr struct {
	Host     string `mapstructure:"host"`
	Port     int    `mapstructure:"port"`
	SockType string `mapstructure:"sock_type"` // tcp or udp
}

// Default returns the built-in defaults: an empty file means these.
func Default() Config {
	return Config{
		Log: Log{Level: "info", Format: "text"},
		Websocket: Websocket{
			Host:            "0.0.0.0",
			Port:            20461,
			MaxFrameBytes:   64 << 10,
			SendQueue:       1024,
			MaxConnsPerIP:   1000,
			ConnectRate:     50,
			PerIPExempt:     []string{"127.0.0.0/8", "::1/128"},
			RateLimit:       200,
			RateBurst:       400,
			PingInterval:    25 * time.Second,
			PongTimeout:     60 * time.Second,
			WriteTimeout:    10 * time.Second,
			WriteCoalesce:   10 * time.Millisecond,
			ShutdownTimeout: 5 * time.Second,
		},
		Session: Session{Name: "dcesid", TTL: time.Hour, CookiePath: "/", Store: "memory"},
		Redis:   Redis{URL: "redis://127.0.0.1:6379/0", Prefix: "dce:"},
		Cluster: Cluster{DeadAfter: 10 * time.Second},
	}
}

// Addrs lists the WebSocket/HTTP listeners: the main one, then extra_ports.
func (w Websocket) Addrs() []Addr {
	return append([]Addr{{w.Host, w.Port}}, w.ExtraPorts...)
}

// Overrides maps each command-line option that changes configuration to its key.
var Overrides = map[string]string{
	"host":         "websocket.host",
	"port":         "websocket.port",
	"api_host":     "websocket.api_host",
	"api_port":     "websocket.api_port",
	"api_password": "websocket.api_password",
}

func (c *Config) validate(bad func(key, want string)) {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "one of debug, info, warn, error")
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "text or json")
	}
	if w := c.Websocket.Metrics; w != "" {
		if _, port, err := net.SplitHostPort(w); err != nil || port == "" {
			bad("websocket.metrics", "host:port (127.0.0.1:9461), or empty for none")
		}
	}
	se := c.Session
	if se.Name == "" || strings.ContainsAny(se.Name, " ;,=\"\t\r\n") {
		bad("session.name", "a cookie name (letters, digits, - or _)")
	}
	if se.TTL < time.Second {
		bad("session.ttl", "a duration of at least 1s")
	}
	if !strings.HasPrefix(se.CookiePath, "/") {
		bad("session.cookie_path", "a path starting with /")
	}
	switch se.Store {
	case "memory", "file", "redis":
	default:
		bad("session.store", "memory, file or redis")
	}
	if !strings.HasPrefix(c.Redis.URL, "redis://") && !strings.HasPrefix(c.Redis.URL, "rediss://") {
		bad("redis.url", "redis://[:password@]host:port/db")
	}
	if r := c.Cluster.Redis; r != "" && !strings.HasPrefix(r, "redis://") && !strings.HasPrefix(r, "rediss://") {
		bad("cluster.redis", "redis://[:password@]host:port/db, or empty for one node")
	}
	if c.Cluster.DeadAfter < time.Second {
		bad("cluster.dead_after", "a duration of at least 1s")
	}
	w := &c.Websocket
	port := func(key string, p int, zeroOK bool) {
		if p < 0 || p > 65535 || (p == 0 && !zeroOK) {
			bad(key, "a port between 1 and 65535")
		}
	}
	host := func(key, h string) {
		if h != "" && h != "localhost" && net.ParseIP(h) == nil {
			bad(key, "an IP address or localhost")
		}
	}
	host("websocket.host", w.Host)
	port("websocket.port", w.Port, true)
	for i, a := range w.ExtraPorts {
		host(fmt.Sprintf("websocket.extra_ports[%d].host", i), a.Host)
		port(fmt.Sprintf("websocket.extra_ports[%d].port", i), a.Port, false)
	}
	for i, a := range w.EnableTCPPorts {
		host(fmt.Sprintf("websocket.enable_tcp_ports[%d].host", i), a.Host)
		port(fmt.Sprintf("websocket.enable_tcp_ports[%d].port", i), a.Port, true)
		if a.SockType != "tcp" && a.SockType != "udp" {
			bad(fmt.Sprintf("websocket.enable_tcp_ports[%d].sock_type", i), "tcp or udp")
		}
	}
	host("websocket.api_host", w.APIHost)
	port("websocket.api_port", w.APIPort, true)
	if w.APIPort != 0 && w.APIPassword == "" {
		bad("websocket.api_password", "a password, since api_port is set")
	}
	positive := func(key string, n float64) {
		if n <= 0 {
			bad(key, "a number above 0")
		}
	}
	positive("websocket.max_frame_bytes", float64(w.MaxFrameBytes))
	positive("websocket.send_queue", float64(w.SendQueue))
	if w.MaxConnections < 0 {
		bad("websocket.max_connections", "0 (follow the open-file limit) or a number above 0")
	}
	if w.MaxConnsPerIP < 0 {
		bad("websocket.max_connections_per_ip", "0 (no limit) or a number above 0")
	}
	if w.ConnectRate < 0 {
		bad("websocket.connect_rate_per_ip", "0 (no limit) or a rate above 0")
	}
	for i, n := range w.PerIPExempt {
		if _, err := netip.ParsePrefix(n); err != nil {
			bad(fmt.Sprintf("websocket.per_ip_exempt[%d]", i), "a network such as 127.0.0.0/8 or ::1/128")
		}
	}
	if w.RateLimit < 0 {
		bad("websocket.rate_limit", "0 (no limit) or a rate above 0")
	}
	if w.RateLimit > 0 && w.RateBurst < 1 {
		bad("websocket.rate_burst", "at least 1")
	}
	positive("websocket.ping_interval", float64(w.PingInterval))
	positive("websocket.write_timeout", float64(w.WriteTimeout))
	if w.WriteCoalesce < 0 || w.WriteCoalesce > time.Second {
		bad("websocket.write_coalesce", "a duration from 0 (off) to 1s")
	}
	positive("websocket.shutdown_timeout", float64(w.ShutdownTimeout))
	if w.PongTimeout <= w.PingInterval {
		bad("websocket.pong_timeout", "a duration longer than ping_interval ("+w.PingInterval.String()+")")
	}
}

// section is a top-level key and the struct it decodes into.
type section struct {
	owner string // project name; "" for the engine
	ptr   any    // pointer to a struct
}

var (
	sectionsMu sync.Mutex
	sections   = map[string]section{}
)

// Register makes key a configuration section of project, decoded into ptr (a
// pointer to a struct whose values are the defaults). Only that
// project's config.yaml may set it, besides the common files, the
// environment and the command line. It panics on a bad or duplicate key: it
// is meant for init functions.
func Register(project, key string, ptr any) {
	if project == "" || key == "" || key != strings.ToLower(key) || strings.Contains(key, ".") {
		panic(fmt.Sprintf("config.Register(%q, %q): project and a lower-case key without dots are required", project, key))
	}
	if rv := reflect.ValueOf(ptr); rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("config.Register(%q, %q): want a pointer to a struct, got %T", project, key, ptr))
	}
	sectionsMu.Lock()
	defer sectionsMu.Unlock()
	if _, ok := reflect.TypeOf(Config{}).FieldByNameFunc(func(n string) bool { return strings.EqualFold(n, key) }); ok {
		panic(fmt.Sprintf("config.Register(%q, %q): %q is an engine section", project, key, key))
	}
	if s, ok := sections[key]; ok {
		panic(fmt.Sprintf("config.Register(%q, %q): already registered by project %q", project, key, s.owner))
	}
	sections[key] = section{owner: project, ptr: ptr}
}
