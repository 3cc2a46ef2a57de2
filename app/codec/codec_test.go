package codec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		in      string
		want    Message
		wantErr bool
	}{
		{`sample/im/login;{"nickname":"Drunk"}`, Message{Path: "sample/im/login", Payload: `{"nickname":"Drunk"}`}, false},
		{`sample/im/send:7;{"message":"hi"}`, Message{Path: "sample/im/send", ID: 7, HasID: true, Payload: `{"message":"hi"}`}, false},
		{`sample/im/logout;undefined`, Message{Path: "sample/im/logout", Payload: "undefined"}, false},
		{`no semicolon at all`, Message{Payload: "no semicolon at all"}, false},
		{`;x`, Message{Payload: "x"}, false},
		{`:5;`, Message{ID: 5, HasID: true}, false},
		{`a;b;c`, Message{Path: "a", Payload: "b;c"}, false},
		{`a:1:2;x`, Message{Path: "a", Payload: "x"}, true},
		{`a:;x`, Message{Path: "a", Payload: "x"}, true},
		{`a:-1;x`, Message{Path: "a", Payload: "x"}, true},
		{`a:abc;x`, Message{Path: "a", Payload: "x"}, true},
		{`a:9007199254740991;x`, Message{Path: "a", ID: MaxID, HasID: true, Payload: "x"}, false},
		{`a:9007199254740992;x`, Message{Path: "a", Payload: "x"}, true},
		{`a:99999999999999999999999;x`, Message{Path: "a", Payload: "x"}, true},
		{``, Message{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Decode([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Decode(%q) error = %v; want error %v", tt.in, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadID) {
				t.Errorf("error %v is not ErrBadID", err)
			}
			if got != tt.want {
				t.Errorf("Decode(%q) = %+v; want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestData(t *testing.T) {
	tests := []struct {
		payload string
		want    any
	}{
		{`{"nickname":"Drunk"}`, map[string]any{"nickname": "Drunk"}},
		{` [1,2]`, []any{1.0, 2.0}},
		{`undefined`, map[string]any{}},
		{``, map[string]any{}},
		{`"str"`, map[string]any{}},
		{`42`, map[string]any{}},
		{`{"broken":`, map[string]any{}},
	}
	for _, tt := range tests {
		if got := Data(tt.payload); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Data(%q) = %#v; want %#v", tt.payload, got, tt.want)
		}
	}
}

func TestBodyAndAppend(t *testing.T) {
	body, err := Body(map[string]any{"message": "<img src=x onerror=alert(1)> 你好"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"message":"<img src=x onerror=alert(1)> 你好"}`; string(body) != want {
		t.Errorf("Body = %s; want %s (no HTML or non-ASCII escaping)", body, want)
	}
	if b, _ := Body("as is"); string(b) != "as is" {
		t.Errorf("a string body = %q; want it as is", b)
	}
	tests := []struct {
		path  string
		id    int64
		hasID bool
		want  string
	}{
		{"setUserList", 0, false, "setUserList;[]"},
		{"sample/im/login", 3, true, "sample/im/login:3;[]"},
		{"", 0, false, ";[]"},
		{"", 9, true, ":9;[]"},
	}
	for _, tt := range tests {
		if got := string(Append(nil, tt.path, tt.id, tt.hasID, []byte("[]"))); got != tt.want {
			t.Errorf("Append(%q, %d, %v) = %q; want %q", tt.path, tt.id, tt.hasID, got, tt.want)
		}
	}
}

// FuzzDecode: any input decodes without panicking, and whatever decodes
// encodes back to an equivalent frame.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`sample/im/login;{"nickname":"a"}`, `x:1;{}`, `;`, `a:b;c`, `:99999999999999999999;`, "\xff;\x00", ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := Decode(frame)
		_ = Data(m.Payload)
		if err != nil {
			return
		}
		if strings.Contains(m.Path, ";") || (m.HasID && strings.Contains(m.Path, ":")) {
			t.Fatalf("path %q holds a separator", m.Path)
		}
		if !strings.Contains(string(frame), ";") {
			if m.Path != "" || m.HasID || m.Payload != string(frame) {
				t.Fatalf("frame without ';' decoded to %+v", m)
			}
			return
		}
		again, err := Decode(Append(nil, m.Path, m.ID, m.HasID, []byte(m.Payload)))
		if err != nil || again != m {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", frame, again, err, m)
		}
		if utf8.Valid(frame) && !utf8.ValidString(m.Path) {
			t.Fatalf("valid UTF-8 frame gave invalid path %q", m.Path)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	frame := []byte(`sample/im/send:12345;{"message":"hello there, this is a chat message"}`)
	b.ReportAllocs()
	for b.Loop() {
		m, _ := Decode(frame)
		_ = Data(m.Payload)
	}
}

func BenchmarkAppend(b *testing.B) {
	body := []byte(`[{"id":1,"mid":3,"message":"hi","create_time":"2026-11-25 17:49:08","nickname":"Drunk"}]`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], "setMessageList", 0, false, body)
	}
}

func TestHeadLen(t *testing.T) {
	for _, c := range []struct {
		path  string
		id    int64
		hasID bool
	}{{"a/b", 0, false}, {"", 0, false}, {"p", 0, true}, {"p", 9, true}, {"p", 10, true}, {"p", 123456789, true}, {"p", -42, true}, {"p", 1<<63 - 1, true}} {
		if got, want := HeadLen(c.path, c.id, c.hasID), len(AppendHead(nil, c.path, c.id, c.hasID)); got != want {
			t.Errorf("HeadLen(%q, %d, %v) = %d; AppendHead wrote %d", c.path, c.id, c.hasID, got, want)
		}
	}
}
