// Package cli is the command line: `./dce PATH WORDS... [-key value]
// [-key=value] [-flag]`. Words before the first option form the path
// (`websocket start` is websocket/start); the engine's own commands come
// first, then the CLI nodes of every project.
package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// Args is a parsed command line.
type Args struct {
	Path    string              // words joined with "/": "websocket/start"
	Options map[string][]string // every value of each option, in order; a bare -flag is "true"
}

// Parse splits argv into path words and options. A word after the first
// option is an error unless it is that option's value; a value starting
// with '-' must be written -key=value (negative numbers may stand alone).
func Parse(argv []string) (Args, error) {
	a := Args{Options: map[string][]string{}}
	i := 0
	var words []string
	for ; i < len(argv) && !isOption(argv[i]); i++ {
		for _, w := range strings.Split(argv[i], "/") {
			if w = strings.TrimSpace(w); w == "" {
				continue
			}
			if strings.HasPrefix(w, "-") {
				return Args{}, fmt.Errorf("path segment %q of %q starts with '-'", w, argv[i])
			}
			words = append(words, w)
		}
	}
	a.Path = strings.Join(words, "/")
	for i < len(argv) {
		arg := argv[i]
		if !isOption(arg) {
			return Args{}, fmt.Errorf("unexpected word %q after the options: path words come first, options after (-key value)", arg)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
		if k, v, ok := strings.Cut(name, "="); ok {
			if k == "" {
				return Args{}, fmt.Errorf("option %q has no name", arg)
			}
			a.Options[k] = append(a.Options[k], v)
			i++
			continue
		}
		if name == "" {
			return Args{}, fmt.Errorf("option %q has no name", arg)
		}
		if i+1 < len(argv) && !isOption(argv[i+1]) {
			a.Options[name] = append(a.Options[name], argv[i+1])
			i += 2
			continue
		}
		a.Options[name] = append(a.Options[name], "true")
		i++
	}
	return a, nil
}

func isOption(s string) bool {
	if len(s) < 2 || s[0] != '-' {
		return false
	}
	_, err := strconv.ParseFloat(s, 64)
	return err != nil // -5 and -0.5 are values
}

// Last returns the last value of an option.
func (a Args) Last(name string) (string, bool) {
	vs := a.Options[name]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// Data is the options as request data: one value as a string, repeated
// options as a list.
func (a Args) Data() map[string]any {
	data := make(map[string]any, len(a.Options))
	for k, vs := range a.Options {
		if len(vs) == 1 {
			data[k] = vs[0]
		} else {
			list := make([]any, len(vs))
			for i, v := range vs {
				list[i] = v
			}
			data[k] = list
		}
	}
	return data
}

// Overrides are the options that change configuration (-port 20460).
func (a Args) Overrides() map[string]string {
	out := map[string]string{}
	for k := range a.Options {
		if v, ok := a.Last(k); ok {
			out[k] = v
		}
	}
	return out
}
