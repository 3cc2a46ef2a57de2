package cli

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		argv    []string
		path    string
		opts    map[string][]string
		wantErr string
	}{
		{nil, "", map[string][]string{}, ""},
		{[]string{"websocket", "start"}, "websocket/start", map[string][]string{}, ""},
		{[]string{"sample/im", "send"}, "sample/im/send", map[string][]string{}, ""},
		{[]string{"websocket", "start", "-port", "20460"}, "websocket/start", map[string][]string{"port": {"20460"}}, ""},
		{[]string{"a", "-k=v", "--long", "x"}, "a", map[string][]string{"k": {"v"}, "long": {"x"}}, ""},
		{[]string{"a", "-flag"}, "a", map[string][]string{"flag": {"true"}}, ""},
		{[]string{"a", "-flag", "-b", "1"}, "a", map[string][]string{"flag": {"true"}, "b": {"1"}}, ""},
		{[]string{"a", "-tag", "x", "-tag", "y", "-tag=z"}, "a", map[string][]string{"tag": {"x", "y", "z"}}, ""},
		{[]string{"a", "-n", "-5"}, "a", map[string][]string{"n": {"-5"}}, ""}, // a negative number is a value
		{[]string{"a", "-k=-x"}, "a", map[string][]string{"k": {"-x"}}, ""},
		{[]string{"a", "-k=", "-j"}, "a", map[string][]string{"k": {""}, "j": {"true"}}, ""},
		{[]string{"-port", "1"}, "", map[string][]string{"port": {"1"}}, ""},
		{[]string{"a", "-k", "v", "stray"}, "", nil, `unexpected word "stray"`},
		{[]string{"a", "-=v"}, "", nil, "has no name"},
		{[]string{"a", "--"}, "", nil, "has no name"},
		{[]string{"a/-x"}, "", nil, "starts with '-'"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.argv, " "), func(t *testing.T) {
			got, err := Parse(tt.argv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Path != tt.path || !reflect.DeepEqual(got.Options, tt.opts) {
				t.Errorf("Parse = %q %v; want %q %v", got.Path, got.Options, tt.path, tt.opts)
			}
		})
	}
}

func TestArgsData(t *testing.T) {
	a, _ := Parse([]string{"x", "-one", "1", "-many", "a", "-many", "b"})
	want := map[string]any{"one": "1", "many": []any{"a", "b"}}
	if got := a.Data(); !reflect.DeepEqual(got, want) {
		t.Errorf("Data = %v; want %v", got, want)
	}
	if v, _ := a.Last("many"); v != "b" {
		t.Errorf("Last(many) = %q; want b", v)
	}
}

// FuzzParse: any argument list parses or fails cleanly; the path never
// holds an option, and every option value came from the input.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"websocket start -port 20460", "a -k=v -flag", "a -n -5 -n 6", "-x", "a b -- c", "a -=", "\x00 -\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		argv := strings.Fields(line)
		a, err := Parse(argv)
		if err != nil {
			return
		}
		for _, w := range strings.Split(a.Path, "/") {
			if isOption(w) {
				t.Fatalf("path %q holds option %q", a.Path, w)
			}
		}
		for k, vs := range a.Options {
			if k == "" || len(vs) == 0 {
				t.Fatalf("option %q with values %v", k, vs)
			}
			for _, v := range vs {
				if v != "true" && !strings.Contains(line, v) {
					t.Fatalf("value %q of %q is not in the input", v, k)
				}
			}
		}
	})
}
