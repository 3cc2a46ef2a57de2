package dce

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"dce/app/config"
)

// The registries are process-wide and refuse a second registration: each
// test registers once, so that -count=N runs it again.
var registerOnce = map[string]*sync.Once{"registry": {}, "culprit": {}, "config": {}}

func TestRegistry(t *testing.T) {
	registerOnce["registry"].Do(func() {
		Register("regtest", "ThingController", map[string]Action{"do": func(*Context) error { return nil }})
	})
	ps, err := Build([]string{"regtest"}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	Lookup := ps.Lookup
	if _, err := Lookup("regtest", "ThingController->do"); err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if _, err := Lookup("regtest", " ThingController -> do "); err != nil {
		t.Errorf("spaces around -> should be accepted: %v", err)
	}
	for ref, want := range map[string]string{
		"ThingController->undo": "has no action undo (it has do)",
		"Nope->do":              "controller Nope is not registered by project regtest",
		"ThingController":       "want Controller->action",
	} {
		if _, err := Lookup("regtest", ref); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Lookup(%q) = %v; want %q", ref, err, want)
		}
	}
	if _, err := Lookup("otherproject", "ThingController->do"); err == nil {
		t.Error("a controller resolved in a project that did not register it")
	}
	panics := map[string]func(){
		"duplicate": func() {
			Register("regtest", "ThingController", map[string]Action{"x": func(*Context) error { return nil }})
		},
		"empty name": func() { Register("regtest", "", map[string]Action{"x": func(*Context) error { return nil }}) },
		"nil action": func() { Register("regtest", "Other", map[string]Action{"x": nil}) },
		"no actions": func() { Register("regtest", "Empty", nil) },
		"dup project": func() {
			RegisterProject("regtwice", "", NoConfig{}, noProject)
			RegisterProject("regtwice", "", NoConfig{}, noProject)
		},
		"project name": func() { RegisterProject("", "", NoConfig{}, noProject) },
		"constructor":  func() { RegisterProject[NoConfig]("regnil", "", NoConfig{}, nil) },
	}
	for name, f := range panics {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

func noProject(Env, NoConfig) (*Project[NoConfig], error) { return &Project[NoConfig]{}, nil }

func TestBind(t *testing.T) {
	type in struct {
		Nickname string `json:"nickname"`
		Age      int    `json:"age"`
	}
	tests := []struct {
		raw     string
		want    in
		wantErr string
	}{
		{`{"nickname":"Drunk","age":3}`, in{"Drunk", 3}, ""},
		{`undefined`, in{}, ""},
		{``, in{}, ""},
		{`{"nickname":`, in{}, ""}, // invalid JSON is an empty request
		{`{"nickname":5}`, in{}, "nickname: want string, got number"},
		{`[1]`, in{}, "payload: want"},
	}
	for _, tt := range tests {
		var got in
		err := (&Context{Raw: tt.raw}).Bind(&got)
		if tt.wantErr != "" {
			e, ok := err.(*Error)
			if !ok || e.Code != 400 || !strings.Contains(e.Message, tt.wantErr) {
				t.Errorf("Bind(%q) = %v; want 400 %q", tt.raw, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Bind(%q) = %+v, %v; want %+v", tt.raw, got, err, tt.want)
		}
	}
	var got in
	if err := (&Context{Data: map[string]any{"nickname": "cli"}}).Bind(&got); err != nil || got.Nickname != "cli" {
		t.Errorf("Bind from Data = %+v, %v", got, err)
	}
}

func TestStatusAndBody(t *testing.T) {
	c := &Context{}
	c.Assign("id", 3)
	if c.Result().Data["id"] != 3 {
		t.Errorf("Assign did not set data: %+v", c.Result())
	}
	c.SetBody("text")
	if c.Body() != "text" {
		t.Errorf("Body = %q", c.Body())
	}
	if err := c.Reply("x", 1); err == nil {
		t.Error("Reply without a transport should fail")
	}
}

// TestBuildNamesTheCulprit: a project whose constructor fails, returns
// nothing usable or panics stops the start naming the project and what is
// wrong; a server type websocket.service names but no project offers is an
// error listing those offered. (A hook of the wrong shape does not compile:
// Server's hooks are typed fields.)
func TestBuildNamesTheCulprit(t *testing.T) {
	ok := func(*Context) error { return nil }
	registerOnce["culprit"].Do(func() {
		RegisterProject("bt-fails", "", NoConfig{}, func(Env, NoConfig) (*Project[NoConfig], error) {
			return nil, errors.New("database unreachable")
		})
		RegisterProject("bt-nil", "", NoConfig{}, func(Env, NoConfig) (*Project[NoConfig], error) { return nil, nil })
		RegisterProject("bt-panics", "", NoConfig{}, func(Env, NoConfig) (*Project[NoConfig], error) { panic("oops") })
		RegisterProject("bt-nilaction", "", NoConfig{}, func(Env, NoConfig) (*Project[NoConfig], error) {
			return &Project[NoConfig]{Controllers: map[string]map[string]Action{"PageController": {"show": nil}}}, nil
		})
		RegisterProject("bt-good", "", NoConfig{}, func(Env, NoConfig) (*Project[NoConfig], error) {
			return &Project[NoConfig]{
				Controllers: map[string]map[string]Action{"PageController": {"show": ok}},
				Servers:     map[string]*Server{"GoodServer": {OnClose: func(Conn) {}}},
			}, nil
		})
	})
	for project, want := range map[string]string{
		"bt-fails":     "project bt-fails: database unreachable",
		"bt-nil":       "project bt-nil: the constructor returned no project",
		"bt-panics":    "project bt-panics: the constructor panicked: oops",
		"bt-nilaction": "project bt-nilaction: controller PageController: action \"show\" is empty or nil",
	} {
		if _, err := Build([]string{"bt-good", project}, Env{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Build(%s) = %v; want %q", project, err, want)
		}
	}
	ps, err := Build([]string{"bt-good", "no-go-code"}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Lookup("bt-good", "PageController->show"); err != nil {
		t.Error(err)
	}
	if hooks, err := ps.Servers(" GoodServer "); err != nil || len(hooks) != 1 {
		t.Errorf("Servers(GoodServer) = %v, %v", hooks, err)
	}
	if _, err := ps.Servers("GoodServer,GodServer"); err == nil || !strings.Contains(err.Error(), `no server registered as "GodServer" (registered: GoodServer)`) {
		t.Errorf("Servers with a typo = %v; want the name and the registered ones", err)
	}
}

var btSeen func(built, reloaded int) // the current run's record

type btSettings struct {
	N int `mapstructure:"n"`
}

// TestProjectConfigAndReload: the constructor gets its section as loaded
// (defaults when the configuration lacks it), and a reload hands the
// project the new one.
func TestProjectConfigAndReload(t *testing.T) {
	var built, reloaded []int
	btSeen = func(b, r int) {
		if b != 0 {
			built = append(built, b)
		}
		if r != 0 {
			reloaded = append(reloaded, r)
		}
	}
	registerOnce["config"].Do(func() {
		RegisterProject("bt-config", "btconfig", btSettings{N: 1}, func(_ Env, s btSettings) (*Project[btSettings], error) {
			btSeen(s.N, 0)
			return &Project[btSettings]{Reload: func(s btSettings) { btSeen(0, s.N) }}, nil
		})
	})
	if _, err := Build([]string{"bt-config"}, Env{}); err != nil {
		t.Fatal(err)
	}
	ps, err := Build([]string{"bt-config"}, Env{Config: &config.Config{Sections: map[string]any{"btconfig": btSettings{N: 2}}}})
	if err != nil {
		t.Fatal(err)
	}
	ps.Reload(&config.Config{Sections: map[string]any{"btconfig": btSettings{N: 3}}})
	if fmt.Sprint(built, reloaded) != "[1 2] [3]" {
		t.Errorf("built with %v, reloaded with %v; want [1 2] (defaults, then the loaded section) and [3]", built, reloaded)
	}
}
