package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"dce/app/config"
	"dce/app/servertest"
)

// testSection is a project section registered once for these tests.
type testSection struct {
	Limit int            `mapstructure:"limit"`
	Names []string       `mapstructure:"names"`
	Free  map[string]any `mapstructure:"free"`
}

func init() { config.Register("proj", "testsec", &testSection{Limit: 10, Names: []string{"a"}}) }

// section is the decoded test section of c.
func section(t *testing.T, c *config.Config) testSection {
	t.Helper()
	s, ok := c.Sections["testsec"].(testSection)
	if !ok {
		t.Fatalf("Sections[testsec] = %#v; want a testSection", c.Sections["testsec"])
	}
	return s
}

func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadOrderAndMerge(t *testing.T) {
	dir := servertest.Root(t, map[string]string{
		"common/config/config.yaml":       "log: {level: debug}\nwebsocket:\n  port: 1000\n  host: 127.0.0.1\n  allowed_origins: [a, b]\n  extra_ports: [{host: 127.0.0.1, port: 2000}]\n",
		"common/config/websocket.yaml":    "websocket:\n  port: 1001\n  allowed_origins: [c]\n",
		"project/proj/config/config.yaml": "testsec:\n  limit: 5\n  free: {x: 1}\n",
	})
	tests := []struct {
		name  string
		env   map[string]string
		opts  map[string]string
		check func(t *testing.T, c *config.Config)
	}{
		{"files: later wins, maps merge, lists replace", nil, nil, func(t *testing.T, c *config.Config) {
			if c.Websocket.Port != 1001 || c.Websocket.Host != "127.0.0.1" {
				t.Errorf("port, host = %d, %s; want 1001 (websocket.yaml), 127.0.0.1 (config.yaml)", c.Websocket.Port, c.Websocket.Host)
			}
			if strings.Join(c.Websocket.AllowedOrigins, ",") != "c" {
				t.Errorf("allowed_origins = %v; want [c]: a list replaces the one below", c.Websocket.AllowedOrigins)
			}
			if len(c.Websocket.ExtraPorts) != 1 || c.Websocket.ExtraPorts[0].Port != 2000 {
				t.Errorf("extra_ports = %+v", c.Websocket.ExtraPorts)
			}
			if c.Log.Level != "debug" || c.Log.Format != "text" {
				t.Errorf("log = %+v; want debug from the file, text from defaults", c.Log)
			}
			if c.Websocket.PingInterval != 25*time.Second {
				t.Errorf("ping_interval = %v; want the default", c.Websocket.PingInterval)
			}
			if s := section(t, c); s.Limit != 5 || len(s.Names) != 1 || s.Free["x"] != 1 {
				t.Errorf("project section = %+v; want limit 5 from the project file, names from defaults", s)
			}
		}},
		{"environment beats files", map[string]string{"DCE_WEBSOCKET_PORT": "20470", "DCE_TESTSEC_LIMIT": "7", "DCE_WEBSOCKET_PING_INTERVAL": "2s"}, nil, func(t *testing.T, c *config.Config) {
			if s := section(t, c); c.Websocket.Port != 20470 || s.Limit != 7 || c.Websocket.PingInterval != 2*time.Second {
				t.Errorf("port %d, limit %d, ping %v; want 20470, 7, 2s from the environment", c.Websocket.Port, s.Limit, c.Websocket.PingInterval)
			}
		}},
		{"options beat the environment", map[string]string{"DCE_WEBSOCKET_PORT": "20470"}, map[string]string{"port": "20460", "host": "0.0.0.0", "name": "not config"}, func(t *testing.T, c *config.Config) {
			if c.Websocket.Port != 20460 || c.Websocket.Host != "0.0.0.0" {
				t.Errorf("port %d host %s; want 20460 0.0.0.0 from options", c.Websocket.Port, c.Websocket.Host)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Load(config.Source{Root: dir, Projects: []string{"proj"}, Env: envOf(tt.env), Options: tt.opts})
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestEmptyConfigIsDefaults(t *testing.T) {
	c, err := config.Load(config.Source{Root: t.TempDir(), Env: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	d := config.Default()
	d.Root = c.Root
	if c.Websocket.Port != d.Websocket.Port || c.Websocket.SendQueue != d.Websocket.SendQueue || c.Log != d.Log {
		t.Errorf("empty config = %+v; want the defaults %+v", c, d)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		env   map[string]string
		opts  map[string]string
		want  []string // each must appear in the error
	}{
		{"unknown top-level key", map[string]string{"common/config/config.yaml": "websockets: {port: 1}\n"},
			nil, nil, []string{"common/config/config.yaml: websockets: a known section"}},
		{"unknown nested key", map[string]string{"common/config/websocket.yaml": "websocket: {prot: 1}\n"},
			nil, nil, []string{"common/config/websocket.yaml: websocket.prot: a known key"}},
		{"unknown key in a list item", map[string]string{"common/config/websocket.yaml": "websocket: {extra_ports: [{host: 1.2.3.4, prt: 1}]}\n"},
			nil, nil, []string{"websocket.extra_ports[0].prt: a known key"}},
		{"wrong type", map[string]string{"common/config/websocket.yaml": "websocket: {port: true, enable_http: maybe}\n"},
			nil, nil, []string{"websocket.port: an integer, got true", "websocket.enable_http: true or false"}},
		{"impossible port", map[string]string{"common/config/websocket.yaml": "websocket: {port: 70000}\n"},
			nil, nil, []string{"common/config/websocket.yaml: websocket.port: a port between 1 and 65535"}},
		{"bad sock_type", map[string]string{"common/config/websocket.yaml": "websocket: {enable_tcp_ports: [{host: 0.0.0.0, port: 1, sock_type: sctp}]}\n"},
			nil, nil, []string{"websocket.enable_tcp_ports[0].sock_type: tcp or udp"}},
		{"bad duration", map[string]string{"common/config/config.yaml": "websocket: {ping_interval: 5}\n"},
			nil, nil, []string{"websocket.ping_interval: a duration"}},
		{"api without password", map[string]string{"common/config/config.yaml": "websocket: {api_port: 9000}\n"},
			nil, nil, []string{"websocket.api_password: a password"}},
		{"bad environment value", nil, map[string]string{"DCE_WEBSOCKET_PORT": "eighty"}, nil,
			[]string{`environment variable DCE_WEBSOCKET_PORT: websocket.port: an integer, got "eighty"`}},
		{"bad option value", nil, nil, map[string]string{"port": "70000"},
			[]string{"option -port: websocket.port: a port between 1 and 65535"}},
		{"a project may not set another's section", map[string]string{"project/other/config/config.yaml": "testsec: {limit: 1}\nwebsocket: {port: 1}\n"},
			nil, nil, []string{"project/other/config/config.yaml: testsec: a section of project other", "project/other/config/config.yaml: websocket: a section of project other"}},
		{"invalid YAML", map[string]string{"common/config/config.yaml": "log: [\n"},
			nil, nil, []string{"common/config/config.yaml: (file): valid YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(config.Source{Root: servertest.Root(t, tt.files), Projects: []string{"proj", "other"}, Env: envOf(tt.env), Options: tt.opts})
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load error = %v; want *config.Error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not mention %q", err, w)
				}
			}
		})
	}
}

func TestRegisterPanics(t *testing.T) {
	var s struct{ A int }
	for name, f := range map[string]func(){
		"duplicate":      func() { config.Register("x", "testsec", &s) },
		"engine section": func() { config.Register("x", "websocket", &s) },
		"not a pointer":  func() { config.Register("x", "nope", s) },
		"dotted key":     func() { config.Register("x", "a.b", &s) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("Register did not panic")
				}
			}()
			f()
		})
	}
}

// TestOtherListenersKeepTheirDistance: a main port moved by an option or
// the environment moves the other listeners by as much, unless they were
// set there too; such a server is an instance named by its port.
func TestOtherListenersKeepTheirDistance(t *testing.T) {
	dir := servertest.Root(t, map[string]string{
		"common/config/websocket.yaml": "websocket:\n  port: 20461\n  extra_ports: [{host: 0.0.0.0, port: 20464}]\n  enable_tcp_ports: [{host: 0.0.0.0, port: 20462, sock_type: tcp}, {host: 0.0.0.0, port: 20463, sock_type: udp}]\n  api_port: 20465\n  api_password: x\n",
	})
	tests := []struct {
		name            string
		env, opts       map[string]string
		instance        string
		extra, tcp, udp int
		api             int
	}{
		{"files only", nil, nil, "", 20464, 20462, 20463, 20465},
		{"-port 20471", nil, map[string]string{"port": "20471"}, "20471", 20474, 20472, 20473, 20475},
		{"DCE_WEBSOCKET_PORT=20481", map[string]string{"DCE_WEBSOCKET_PORT": "20481"}, nil, "20481", 20484, 20482, 20483, 20485},
		{"-port and -api_port", nil, map[string]string{"port": "20471", "api_port": "30000"}, "20471", 20474, 20472, 20473, 30000},
		{"-port of the files", nil, map[string]string{"port": "20461"}, "", 20464, 20462, 20463, 20465},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Load(config.Source{Root: dir, Env: envOf(tt.env), Options: tt.opts})
			if err != nil {
				t.Fatal(err)
			}
			w := c.Websocket
			if c.Instance != tt.instance || w.ExtraPorts[0].Port != tt.extra || w.EnableTCPPorts[0].Port != tt.tcp || w.EnableTCPPorts[1].Port != tt.udp || w.APIPort != tt.api {
				t.Errorf("instance %q, extra %d, tcp %d, udp %d, api %d; want %q, %d, %d, %d, %d",
					c.Instance, w.ExtraPorts[0].Port, w.EnableTCPPorts[0].Port, w.EnableTCPPorts[1].Port, w.APIPort,
					tt.instance, tt.extra, tt.tcp, tt.udp, tt.api)
			}
		})
	}
}
