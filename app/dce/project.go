package dce

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"dce/app/config"
)

// A project is built by its constructor, registered from an init function
// (usually in project/NAME/NAME.go):
//
//	func init() { dce.RegisterProject("sample", "im", Settings{HistoryMax: 1024}, New) }
//
//	func New(env dce.Env, s Settings) (*dce.Project[Settings], error) {
//		chat := &ImWebsocketServer{settings: s}
//		return &dce.Project[Settings]{
//			Controllers: map[string]map[string]dce.Action{"ImServiceController": ...},
//			Servers:     map[string]*dce.Server{"ImWebsocketServer": chat.Hooks()},
//			Reload:      chat.Reload,
//		}, nil
//	}
//
// The constructor runs once per server (with its Hub) and once per command
// (Hub nil). Everything the project keeps lives in what it returns: no
// package-level state, so two servers in one process share nothing.

// Env is what a project's constructor receives.
type Env struct {
	Root     string
	Config   *config.Config // the engine's configuration when the project is built
	Hub      Hub            // the running server; nil for a command (./dce ...)
	Sessions Sessions       // the server's session manager; nil for a command
	Logger   *slog.Logger
	// Control asks this folder's running server (the instance the command
	// addresses) a control command such as "status"; nil inside a server.
	Control func(command string) (string, error)
	// Stdin and Stdout of a command (an interactive one reads and writes
	// them); nil inside a server.
	Stdin  io.Reader
	Stdout io.Writer
}

// Project is what a constructor returns; C is its config section's type.
type Project[C any] struct {
	// Controllers by name, as nodes.yaml names them ("ImServiceController"),
	// each with its actions ("login").
	Controllers map[string]map[string]Action
	// Servers are the server types the project offers, selected by name
	// with websocket.service.
	Servers map[string]*Server
	// Reload receives the section as a reload read it (optional).
	Reload func(C)
}

// Server is a server type: the hooks the engine calls when
// websocket.service selects it. Every hook is optional.
type Server struct {
	// BeforeStart runs once before the listeners open.
	BeforeStart func(h Hub) error
	// OnOpen runs when a WebSocket opens; an error closes it.
	OnOpen func(c Conn, r *http.Request) error
	// OnConnect runs when a TCP connection opens; an error closes it.
	OnConnect func(c Conn) error
	// OnClose runs when a connection closes, before its session mappings
	// are dropped, so a logout can still find them.
	OnClose func(c Conn)
	// OnPresence runs, on a cluster, when members' login places on the
	// other nodes change (a login or logout there, a node that died), with
	// their new counts there; Sessions().Places and Online already count
	// them. Changes on this node come through the project's own actions
	// and OnClose.
	OnPresence func(h Hub, remote map[int64]int)
	// OnPublish runs, on a cluster, for each message another node's
	// Hub.Publish sent: deliver it to this node's connections.
	OnPublish func(h Hub, topic string, m *Message)
	// AfterStop runs once every connection has closed (and OnClose ran
	// for each), before the server leaves its cluster: close what
	// BeforeStart opened.
	AfterStop func()
	// Codec replaces the wire codec.
	Codec Codec
}

// NoConfig is the section type of a project without one.
type NoConfig struct{}

type builder struct {
	section  string
	defaults any
	build    func(Env, any) (*built, error)
}

type built struct {
	controllers map[string]map[string]Action
	servers     map[string]*Server
	reload      func(any)
}

var builders = map[string]builder{} // guarded by mu (dce.go)

// RegisterProject registers project name's constructor. section is its key
// in project/NAME/config/config.yaml, decoded into a C that starts from
// defaults ("" and NoConfig{} for none). It panics on a second
// registration or a bad section: wiring mistakes show at start-up.
func RegisterProject[C any](name, section string, defaults C, build func(Env, C) (*Project[C], error)) {
	if name == "" || build == nil {
		panic("dce.RegisterProject: a project name and a constructor are required")
	}
	if section != "" {
		d := defaults
		config.Register(name, section, &d)
	}
	b := builder{section: section, defaults: defaults, build: func(env Env, cfg any) (*built, error) {
		c, ok := cfg.(C)
		if !ok {
			return nil, fmt.Errorf("config section %q is a %T, want %T", section, cfg, *new(C))
		}
		p, err := build(env, c)
		if err != nil {
			return nil, err
		}
		if p == nil {
			return nil, errors.New("the constructor returned no project")
		}
		out := &built{controllers: p.Controllers, servers: p.Servers}
		if p.Reload != nil {
			out.reload = func(v any) {
				if c, ok := v.(C); ok {
					p.Reload(c)
				}
			}
		}
		return out, nil
	}}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := builders[name]; dup {
		panic(fmt.Sprintf("dce.RegisterProject: project %s is registered twice", name))
	}
	builders[name] = b
}

// Projects is every project of one server or command, built: their
// controllers, server types and reload hooks.
type Projects struct {
	controllers map[string]map[string]Action // "project/Controller" → actions
	servers     map[string]*Server
	owner       map[string]string // server type → project
	reloads     map[string]func(*config.Config)
}

// Build constructs the registered projects among names (folders without
// Go code have none) and adds the controllers registered with Register.
// cfg.Sections holds their decoded sections. An error names the project.
func Build(names []string, env Env) (*Projects, error) {
	ps := &Projects{
		controllers: map[string]map[string]Action{},
		servers:     map[string]*Server{},
		owner:       map[string]string{},
		reloads:     map[string]func(*config.Config){},
	}
	mu.RLock()
	for k, v := range controllers {
		ps.controllers[k] = v
	}
	var todo []string
	bs := map[string]builder{}
	for _, n := range names {
		if b, ok := builders[n]; ok {
			todo, bs[n] = append(todo, n), b
		}
	}
	mu.RUnlock()
	var errs []error
	for _, name := range todo {
		if err := ps.add(name, bs[name], env); err != nil {
			errs = append(errs, fmt.Errorf("project %s: %w", name, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ps, nil
}

func (ps *Projects) add(name string, b builder, env Env) (err error) {
	var section any = b.defaults
	if b.section != "" && env.Config != nil {
		if v, ok := env.Config.Sections[b.section]; ok {
			section = v
		}
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the constructor panicked: %v", p)
		}
	}()
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	env.Logger = env.Logger.With("project", name)
	p, err := b.build(env, section)
	if err != nil {
		return err
	}
	for cname, actions := range p.controllers {
		if cname == "" || len(actions) == 0 {
			return fmt.Errorf("controller %q has no actions", cname)
		}
		for aname, a := range actions {
			if aname == "" || a == nil {
				return fmt.Errorf("controller %s: action %q is empty or nil", cname, aname)
			}
		}
		key := name + "/" + cname
		if _, dup := ps.controllers[key]; dup {
			return fmt.Errorf("controller %s is also registered with dce.Register", cname)
		}
		ps.controllers[key] = actions
	}
	for sname, s := range p.servers {
		if sname == "" || s == nil {
			return fmt.Errorf("server type %q is empty or nil", sname)
		}
		if other, dup := ps.owner[sname]; dup {
			return fmt.Errorf("server type %s is also offered by project %s", sname, other)
		}
		ps.servers[sname], ps.owner[sname] = s, name
	}
	if p.reload != nil {
		ps.reloads[name] = func(cfg *config.Config) {
			if v, ok := cfg.Sections[b.section]; ok {
				p.reload(v)
			} else {
				p.reload(b.defaults)
			}
		}
	}
	return nil
}

// Lookup resolves "Controller->action" among a project's controllers.
func (ps *Projects) Lookup(project, ref string) (Action, error) {
	name, action, ok := strings.Cut(ref, "->")
	name, action = strings.TrimSpace(name), strings.TrimSpace(action)
	if !ok || name == "" || action == "" {
		return nil, fmt.Errorf("controller %q: want Controller->action", ref)
	}
	actions, ok := ps.controllers[project+"/"+name]
	if !ok {
		return nil, fmt.Errorf("controller %s is not registered by project %s", name, project)
	}
	a, ok := actions[action]
	if !ok {
		return nil, fmt.Errorf("controller %s has no action %s (it has %s)", name, action, strings.Join(sortedKeys(actions), ", "))
	}
	return a, nil
}

// Servers returns the server types named by websocket.service (one name,
// or several separated by commas, whose hooks all run in that order).
// An unknown name is an error listing the known ones.
func (ps *Projects) Servers(service string) ([]*Server, error) {
	var out []*Server
	for _, name := range strings.Split(service, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		s, ok := ps.servers[name]
		if !ok {
			known := sortedKeys(ps.servers)
			if len(known) == 0 {
				known = []string{"none"}
			}
			return nil, fmt.Errorf("no server registered as %q (registered: %s)", name, strings.Join(known, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

// Reload hands each project its section from cfg.
func (ps *Projects) Reload(cfg *config.Config) {
	for _, f := range ps.reloads {
		f(cfg)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
