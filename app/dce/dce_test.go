package dce

import (
	"strings"
	"testing"
)

func TestRegistry(t *testing.T) {
	Register("regtest", "ThingController", map[string]Action{"do": func(*Context) error { return nil }})
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
		"dup server": func() {
			RegisterServer("RegtestServer", func() any { return 1 })
			RegisterServer("RegtestServer", func() any { return 1 })
		},
		"server name": func() { RegisterServer("", func() any { return 1 }) },
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
	if _, err := NewServer("NoSuch"); err == nil || !strings.Contains(err.Error(), "RegtestServer") {
		t.Errorf("NewServer(NoSuch) = %v; want an error listing registered servers", err)
	}
}

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
