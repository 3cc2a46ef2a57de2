package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	_ "net/http/pprof" // served only when debug.pprof is set
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"dce/app/config"
	"dce/app/dce"
	"dce/app/node"
	"dce/app/router"
	"dce/app/server"
	"dce/app/session"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1 // the command ran and failed (no server running, a failure status)
	ExitUsage  = 2 // unknown command, bad arguments, invalid configuration or nodes
)

// Env is what a run of the program sees.
type Env struct {
	Root      string // application root; "" finds it (DCE_ROOT, the binary's folder, the working folder)
	Stdin     io.Reader
	Stdout    io.Writer
	Stderr    io.Writer
	LookupEnv func(string) (string, bool)
	Environ   func() []string // every KEY=value (unknown DCE_* variables are warned about); os.Environ with the default LookupEnv
	Compiled  []string        // project folders with Go code compiled in ("sample"), from the generated file
}

type command struct {
	path    string
	name    string
	run     func(a *app, args Args) int
	options []string // accepted options; anything else is refused (exit 2)
}

// configOptions are the options that override configuration.
var configOptions = slices.Sorted(maps.Keys(config.Overrides))

// builtins are the engine's own commands.
var builtins = []command{
	{"websocket/start", "Start the WebSocket server in the foreground (SIGINT/SIGTERM stop, SIGHUP reloads)", (*app).start, configOptions},
	{"websocket/stop", "Stop the running server gracefully (-port N: the one started with -port N)", func(a *app, _ Args) int { return a.control("stop") }, []string{"port"}},
	{"websocket/reload", "Re-read nodes, templates and reloadable config without dropping connections", func(a *app, _ Args) int { return a.control("reload") }, []string{"port"}},
	{"websocket/status", "Print the running server's live counters as JSON", func(a *app, _ Args) int { return a.control("status") }, []string{"port"}},
	{"routes", "List every node with its methods, render and controller", (*app).routes, nil},
	{"check", "Validate configuration, nodes and controllers without starting anything", (*app).check, configOptions},
}

// runBuiltin refuses options the command does not know (a typo such as
// -prot must not start a server on the default port) and answers -help.
func (a *app) runBuiltin(b command, args Args) int {
	words := strings.ReplaceAll(b.path, "/", " ")
	known := ""
	for _, o := range b.options {
		known += " -" + o
	}
	if _, help := args.Options["help"]; help {
		fmt.Fprintf(a.Stdout, "./dce %s%s\n%s\n", words, known, b.name)
		return ExitOK
	}
	for name := range args.Options {
		if !slices.Contains(b.options, name) {
			if known == "" {
				return a.fail(ExitUsage, "%s: unknown option -%s (it takes none)", words, name)
			}
			return a.fail(ExitUsage, "%s: unknown option -%s (known:%s)", words, name, known)
		}
	}
	return b.run(a, args)
}

type app struct {
	Env
	args     Args
	projects []string
}

// Main runs one command line and returns the exit code.
func Main(argv []string, env Env) int {
	if env.Stdin == nil {
		env.Stdin = os.Stdin
	}
	if env.Stdout == nil {
		env.Stdout = os.Stdout
	}
	if env.Stderr == nil {
		env.Stderr = os.Stderr
	}
	if env.LookupEnv == nil {
		env.LookupEnv, env.Environ = os.LookupEnv, os.Environ
	}
	args, err := Parse(argv)
	if err != nil {
		fmt.Fprintln(env.Stderr, "dce:", err)
		return ExitUsage
	}
	if env.Root == "" {
		env.Root = findRoot(env.LookupEnv)
	}
	a := &app{Env: env, args: args}
	a.projects, err = Projects(env.Root)
	if err != nil {
		fmt.Fprintln(env.Stderr, "dce:", err)
		return ExitUsage
	}
	if _, help := args.Options["help"]; (help && args.Path == "") || args.Path == "" || args.Path == "help" {
		return a.usage()
	}
	for _, b := range builtins {
		if b.path == args.Path {
			return a.runBuiltin(b, args)
		}
	}
	return a.runNode(args)
}

// Projects lists the project folders under root/project, sorted. Folders
// starting with '.' or '_' are skipped.
func Projects(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "project"))
	if err != nil {
		return nil, fmt.Errorf("no project folder under %s (set DCE_ROOT or run ./dce from the application): %w", root, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && !strings.HasPrefix(e.Name(), "_") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// findRoot: $DCE_ROOT, else the nearest folder holding project/ above the
// binary, else above the working folder.
func findRoot(lookup func(string) (string, bool)) string {
	if r, ok := lookup("DCE_ROOT"); ok && r != "" {
		return r
	}
	var starts []string
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			if st, err := os.Stat(filepath.Join(d, "project")); err == nil && st.IsDir() {
				if _, err := os.Stat(filepath.Join(d, "common")); err == nil {
					return d
				}
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "."
}

func (a *app) runtimeDir() string { return filepath.Join(a.Root, "runtime") }

// config reads the configuration: files, environment, options.
func (a *app) config() (*config.Config, error) {
	return config.Load(config.Source{Root: a.Root, Projects: a.projects, Env: a.LookupEnv, Environ: a.Environ, Options: a.args.Overrides()})
}

// load reads configuration and nodes, builds the projects for a command
// (no hub) and resolves controllers, reporting every problem at once.
func (a *app) load() (*config.Config, *router.Router, error) {
	cfg, cerr := a.config()
	if cerr != nil {
		_, rerr := node.Load(a.Root, a.projects) // the node files' problems too
		return nil, nil, errors.Join(cerr, rerr)
	}
	a.warnUncompiled()
	env := dce.Env{
		Root: a.Root, Config: cfg,
		Logger:  slog.New(slog.NewTextHandler(a.Stderr, nil)),
		Control: func(cmd string) (string, error) { return server.ControlAs(a.runtimeDir(), cfg.Instance, cmd) },
		Stdin:   a.Stdin, Stdout: a.Stdout,
	}
	ps, err := dce.Build(a.projects, env)
	if err != nil {
		return nil, nil, err
	}
	rt, err := router.New(a.Root, a.projects, ps)
	if err != nil {
		return nil, nil, err
	}
	if _, err := ps.Servers(cfg.Websocket.Service); err != nil {
		return nil, nil, fmt.Errorf("websocket.service: %w", err)
	}
	return cfg, rt, nil
}

// warnUncompiled says when a project folder holds Go code that this binary
// does not contain (the generated imports are stale).
func (a *app) warnUncompiled() {
	if a.Compiled == nil {
		return
	}
	for _, p := range a.projects {
		if hasGo(filepath.Join(a.Root, "project", p)) && !slices.Contains(a.Compiled, p) {
			fmt.Fprintf(a.Stderr, "dce: warning: project/%s has Go code that is not compiled in: run ./dce (or go generate ./app) to refresh app/projects.go\n", p)
		}
	}
}

func hasGo(dir string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

func (a *app) fail(code int, format string, args ...any) int {
	fmt.Fprintf(a.Stderr, "dce: "+format+"\n", args...)
	return code
}

func (a *app) usage() int {
	fmt.Fprintf(a.Stdout, "%s %s\n", dce.Product, dce.Version)
	w := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
	for _, b := range builtins {
		fmt.Fprintf(w, "%s\t%s\n", strings.ReplaceAll(b.path, "/", " "), b.name)
	}
	tree, err := node.Load(a.Root, a.projects)
	if err != nil {
		w.Flush()
		return a.fail(ExitUsage, "%v", err)
	}
	for _, n := range tree.Nodes() {
		if !n.Auto() && n.Allows(dce.CLI) {
			fmt.Fprintf(w, "%s\t%s\n", strings.ReplaceAll(n.Path, "/", " "), n.Name)
		}
	}
	w.Flush()
	return ExitOK
}

func (a *app) routes(Args) int {
	tree, err := node.Load(a.Root, a.projects)
	if err != nil {
		return a.fail(ExitUsage, "%v", err)
	}
	_, _ = io.WriteString(a.Stdout, RouteTable(tree))
	return ExitOK
}

// RouteTable lists every node: path, methods, render, controller, name.
func RouteTable(tree *node.Tree) string {
	var buf bytes.Buffer
	w := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PATH\tMETHODS\tRENDER\tCONTROLLER\tNAME")
	for _, n := range tree.Nodes() {
		path := n.Path
		if n.Omissible {
			path += " (omissible)"
		}
		ctrl := n.Controller
		if n.Auto() {
			ctrl = "(auto)"
		} else if ctrl == "" {
			ctrl = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", path, strings.Join(n.Methods, ","), n.Render, ctrl, n.Name)
	}
	w.Flush()
	return buf.String()
}

func (a *app) check(Args) int {
	cfg, rt, err := a.load()
	if err != nil {
		return a.fail(ExitUsage, "%v", err)
	}
	if errs := rt.Renderer.Check(a.projects); len(errs) > 0 {
		return a.fail(ExitUsage, "templates that do not parse:\n  %v", errors.Join(errs...).Error())
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(a.Stderr, "dce: warning:", w)
	}
	fmt.Fprintf(a.Stdout, "ok: %d projects, %d nodes, configuration valid\n", len(a.projects), len(rt.Tree.Nodes()))
	return ExitOK
}

// runNode runs a project's CLI node and prints what it renders.
func (a *app) runNode(args Args) int {
	_, rt, err := a.load()
	if err != nil {
		return a.fail(ExitUsage, "%v", err)
	}
	w := &cliWriter{a: a}
	req := &router.Request{
		Path: args.Path, Method: dce.CLI, Data: args.Data(), Args: args.Options,
		Logger: slog.New(slog.NewTextHandler(a.Stderr, nil)),
	}
	if err := rt.Serve(w, req); err != nil {
		fmt.Fprintln(a.Stderr, "dce:", err)
	}
	return w.code
}

// cliWriter answers a command: its output on stdout, its failure as the
// exit code (and a line on stderr).
type cliWriter struct {
	a    *app
	code int
}

func (w *cliWriter) Reply(_ string, data any) error {
	if s, ok := data.(string); ok {
		_, err := fmt.Fprintln(w.a.Stdout, s)
		return err
	}
	b, err := json.MarshalIndent(data, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w.a.Stdout, string(b))
	return err
}

func (w *cliWriter) NoNode(path string, exists bool) {
	cmd := strings.ReplaceAll(path, "/", " ")
	if exists {
		w.code = w.a.fail(ExitUsage, "%s is not a command (its node does not allow cli); run ./dce for the list", cmd)
		return
	}
	w.code = w.a.fail(ExitUsage, "no command %q; run ./dce for the list", cmd)
}

func (w *cliWriter) Finish(rt *router.Router, c *dce.Context) {
	if err := rt.Renderer.Render(w.a.Stdout, c, true, ""); err != nil {
		w.code = w.a.fail(ExitFailed, "render %s: %v", c.Node.Render, err)
		return
	}
	if st := c.Result(); st.Status != nil && !*st.Status {
		if c.Node.Render != node.RenderJSON {
			fmt.Fprintf(w.a.Stderr, "dce: %s (%d)\n", st.Message, st.Code)
		}
		w.code = ExitFailed
	}
}

// control sends stop, reload or status to a running server: the one of
// -port when given, else the default one, or when only one runs, that one.
func (a *app) control(cmd string) int {
	cfg, lerr := a.config()
	instance, err := a.instance(cfg, lerr)
	if err != nil {
		return a.fail(ExitFailed, "%v", err)
	}
	pid := a.pid(instance)
	out, err := server.ControlAs(a.runtimeDir(), instance, cmd)
	if errors.Is(err, server.ErrNotRunning) {
		sock, _ := server.ControlFiles(instance)
		return a.fail(ExitFailed, "no server is running (nothing answers on runtime/%s)", sock)
	}
	if err != nil {
		return a.fail(ExitFailed, "%s: %v", cmd, err)
	}
	if cmd == "stop" && pid > 0 {
		// The server flushes and closes within shutdown_timeout; give it
		// that and a little more, then tell the truth.
		wait := 30 * time.Second
		if lerr == nil {
			wait = cfg.Websocket.ShutdownTimeout + 2*time.Second
		}
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) && alive(pid) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			return a.fail(ExitFailed, "the server (pid %d) was asked to stop but is still running after %v; see its log, or end it with kill %d", pid, wait, pid)
		}
		out = "stopped\n"
	}
	fmt.Fprint(a.Stdout, out)
	return ExitOK
}

// instance picks the server a control command is for. With -port, the
// instance of that port. Without, the default one when it answers, else
// the only other one that answers; several are an error naming them.
func (a *app) instance(cfg *config.Config, loadErr error) (string, error) {
	if p, ok := a.args.Last("port"); ok {
		if loadErr == nil {
			return cfg.Instance, nil
		}
		return p, nil // the configuration does not load: trust the number
	}
	dir := a.runtimeDir()
	if server.Answers(dir, "") {
		return "", nil
	}
	var live []string
	for _, in := range server.Instances(dir) {
		if in != "" && server.Answers(dir, in) {
			live = append(live, in)
		}
	}
	switch len(live) {
	case 0:
		return "", nil // reported as not running
	case 1:
		return live[0], nil
	}
	return "", fmt.Errorf("several servers run from this folder (ports %s): say which with -port", strings.Join(live, ", "))
}

// alive reports whether a process with this pid exists (and is not a zombie
// that only waits for its parent).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func (a *app) pid(instance string) int {
	_, name := server.ControlFiles(instance)
	b, err := os.ReadFile(filepath.Join(a.runtimeDir(), name))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// start runs the server in the foreground until it is stopped.
func (a *app) start(Args) int {
	cfg, err := a.config()
	if err != nil {
		_, nerr := node.Load(a.Root, a.projects) // the node files' problems too
		return a.fail(ExitUsage, "%v", errors.Join(err, nerr))
	}
	a.warnUncompiled()
	logs := newLogSwitch(a.Stderr, cfg.Log)
	log := slog.New(logs)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	// The session store first: a Redis that does not answer is a failure
	// to start (exit 1) naming its URL, not a configuration mistake.
	sessions, err := session.FromConfig(cfg, log)
	if err != nil {
		return a.fail(ExitFailed, "%v", err)
	}
	defer sessions.Store().Close()
	s, err := server.New(server.Options{
		Root: a.Root, Projects: a.projects, Config: cfg, Logger: log, Sessions: sessions,
		Reload: a.config, Reloaded: func(c *config.Config) { logs.apply(c.Log) },
	})
	if err != nil {
		return a.fail(ExitUsage, "%v", err)
	}
	if err := s.ListenControlAs(a.runtimeDir(), cfg.Instance); err != nil {
		if errors.Is(err, server.ErrRunning) {
			stop := "./dce websocket stop"
			if cfg.Instance != "" {
				stop += " -port " + cfg.Instance
			}
			return a.fail(ExitFailed, "a server is already running on port %d (pid %d); stop it with %s", cfg.Websocket.Port, a.pid(cfg.Instance), stop)
		}
		return a.fail(ExitFailed, "control socket: %v", err)
	}
	if err := s.Start(); err != nil {
		_ = s.Shutdown(context.Background())
		return a.fail(ExitFailed, "%v", err)
	}
	if addr := cfg.Debug.Pprof; addr != "" {
		go func() { log.Warn("pprof stopped", "err", http.ListenAndServe(addr, nil)) }() // lives as long as the process
		log.Info("pprof on http://" + addr + "/debug/pprof/ (debug.pprof)")
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	for {
		select {
		case <-s.Done():
			return ExitOK
		case v := <-sig:
			switch v {
			case syscall.SIGHUP:
				if _, err := s.Reload(); err != nil {
					log.Error("reload failed, the old nodes stay in force", "err", err.Error())
				}
			default:
				log.Info("signal received, stopping", "signal", v.String())
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), cfg.Websocket.ShutdownTimeout)
					defer cancel()
					_ = s.Shutdown(ctx)
				}()
			}
		}
	}
}
