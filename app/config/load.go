package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"
)

// Source says where Load reads from.
type Source struct {
	Root     string                          // application root: common/ and project/ are below it
	Projects []string                        // project names, in order
	Env      func(key string) (string, bool) // os.LookupEnv when nil
	Environ  func() []string                 // every KEY=value, for unknown DCE_* warnings; os.Environ when Env is nil
	Options  map[string]string               // command-line options; those in Overrides apply
}

// Problem is one thing wrong with the configuration.
type Problem struct {
	Where string // file path, "environment variable X" or "option -x"
	Key   string // dotted key, list indexes in brackets
	Want  string // what was expected
}

func (p Problem) String() string {
	return fmt.Sprintf("%s: %s: %s", p.Where, p.Key, p.Want)
}

// Error lists every problem found, one per line.
type Error struct{ Problems []Problem }

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "invalid configuration:\n  " + strings.Join(lines, "\n  ")
}

type loader struct {
	v        *viper.Viper
	src      Source
	where    map[string]string // top-most source of each key set outside the defaults
	problems []Problem
	schema   map[string]section
}

// Load reads, merges, decodes and validates the configuration, and fills the
// registered project sections. On error nothing is filled.
func Load(src Source) (*Config, error) {
	if src.Env == nil {
		src.Env, src.Environ = os.LookupEnv, os.Environ
	}
	l := &loader{v: viper.New(), src: src, where: map[string]string{}, schema: map[string]section{}}
	def := Default()
	l.schema["log"] = section{ptr: &def.Log}
	l.schema["websocket"] = section{ptr: &def.Websocket}
	l.schema["debug"] = section{ptr: &def.Debug}
	l.schema["session"] = section{ptr: &def.Session}
	l.schema["redis"] = section{ptr: &def.Redis}
	l.schema["cluster"] = section{ptr: &def.Cluster}
	sectionsMu.Lock()
	for k, s := range sections {
		l.schema[k] = s
	}
	sectionsMu.Unlock()

	for key, s := range l.schema {
		setDefaults(l.v, key, reflect.ValueOf(s.ptr).Elem())
	}
	common := filepath.Join(src.Root, "common", "config")
	l.merge(filepath.Join(common, "config.yaml"), "")
	l.merge(filepath.Join(common, "websocket.yaml"), "")
	for _, p := range src.Projects {
		l.merge(filepath.Join(src.Root, "project", p, "config", "config.yaml"), p)
	}
	filePort := l.v.GetInt("websocket.port") // before the environment and options
	l.env()
	l.options()

	out := map[string]reflect.Value{}
	keys := make([]string, 0, len(l.schema))
	for k := range l.schema {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		rv := reflect.New(reflect.TypeOf(l.schema[key].ptr).Elem()).Elem()
		rv.Set(reflect.ValueOf(l.schema[key].ptr).Elem()) // start from the defaults
		l.decodeKey(key, rv)
		out[key] = rv
	}
	cfg := &Config{Root: src.Root, Warnings: l.unknownEnv(), Sections: map[string]any{}}
	if len(l.problems) == 0 {
		cfg.Log = out["log"].Interface().(Log)
		cfg.Websocket = out["websocket"].Interface().(Websocket)
		cfg.Debug = out["debug"].Interface().(Debug)
		cfg.Session = out["session"].Interface().(Session)
		cfg.Redis = out["redis"].Interface().(Redis)
		cfg.Cluster = out["cluster"].Interface().(Cluster)
		l.keepDistance(cfg, filePort)
		cfg.validate(l.bad)
	}
	if len(l.problems) > 0 {
		return nil, &Error{Problems: l.problems}
	}
	for key, s := range l.schema {
		if s.owner != "" {
			cfg.Sections[key] = out[key].Interface()
		}
	}
	return cfg, nil
}

func (l *loader) bad(key, want string) {
	l.problems = append(l.problems, Problem{Where: l.whereOf(key), Key: key, Want: want})
}

// whereOf finds the top-most source of key or of its nearest parent.
func (l *loader) whereOf(key string) string {
	for k := key; k != ""; {
		if w, ok := l.where[k]; ok {
			return w
		}
		if i := strings.LastIndexAny(k, ".["); i >= 0 {
			k = k[:i]
		} else {
			k = ""
		}
	}
	return "built-in default"
}

func (l *loader) merge(file, project string) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	rel := l.rel(file)
	if err != nil {
		l.problems = append(l.problems, Problem{Where: rel, Key: "(file)", Want: "a readable file: " + err.Error()})
		return
	}
	fv := viper.New()
	fv.SetConfigType("yaml")
	if err := fv.ReadConfig(strings.NewReader(string(data))); err != nil {
		l.problems = append(l.problems, Problem{Where: rel, Key: "(file)", Want: "valid YAML: " + err.Error()})
		return
	}
	m := fv.AllSettings()
	for key, val := range m {
		s, ok := l.schema[key]
		switch {
		case !ok:
			l.problems = append(l.problems, Problem{Where: rel, Key: key, Want: "a known section (" + strings.Join(l.sectionNames(), ", ") + ")"})
			continue
		case project != "" && s.owner != project:
			l.problems = append(l.problems, Problem{Where: rel, Key: key, Want: "a section of project " + project + "; set " + key + " in common/config/"})
			continue
		}
		l.checkKeys(rel, key, val, reflect.TypeOf(s.ptr).Elem())
	}
	if err := l.v.MergeConfigMap(m); err != nil {
		l.problems = append(l.problems, Problem{Where: rel, Key: "(file)", Want: err.Error()})
	}
	for _, k := range leafKeys("", m) {
		l.where[k] = rel
	}
}

func (l *loader) rel(file string) string {
	if r, err := filepath.Rel(l.src.Root, file); err == nil {
		return r
	}
	return file
}

func (l *loader) sectionNames() []string {
	names := make([]string, 0, len(l.schema))
	for k := range l.schema {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// checkKeys reports keys of val that typ has no field for.
func (l *loader) checkKeys(where, key string, val any, typ reflect.Type) {
	switch typ.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			return // decode reports the type
		}
		for k, sub := range m {
			f, ok := field(typ, k)
			if !ok {
				l.problems = append(l.problems, Problem{Where: where, Key: key + "." + k, Want: "a known key (" + strings.Join(fieldNames(typ), ", ") + ")"})
				continue
			}
			l.checkKeys(where, key+"."+k, sub, f.Type)
		}
	case reflect.Slice:
		list, ok := val.([]any)
		if !ok {
			return
		}
		for i, item := range list {
			l.checkKeys(where, fmt.Sprintf("%s[%d]", key, i), item, typ.Elem())
		}
	}
}

func (l *loader) env() {
	for _, key := range l.v.AllKeys() {
		name := "DCE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		if val, ok := l.src.Env(name); ok {
			l.v.Set(key, val)
			l.where[key] = "environment variable " + name
		}
	}
}

// keepDistance moves the other listeners with the main port when the
// environment or an option changed it (`./dce websocket start -port 20471`
// beside the default server): extra ports, TCP and UDP ports and the API
// port keep their distance from it (20464 → 20474, 20462 → 20472, 20463 →
// 20473), unless they were set there too. Such a server is an instance of
// its own: Config.Instance names it by its port.
func (l *loader) keepDistance(cfg *Config, filePort int) {
	w := &cfg.Websocket
	shift := w.Port - filePort
	if shift == 0 || w.Port == 0 || filePort == 0 {
		return
	}
	cfg.Instance = strconv.Itoa(w.Port)
	moved := func(key string) bool {
		return !strings.HasPrefix(l.where[key], "environment") && !strings.HasPrefix(l.where[key], "option")
	}
	if moved("websocket.extra_ports") {
		for i := range w.ExtraPorts {
			if w.ExtraPorts[i].Port != 0 {
				w.ExtraPorts[i].Port += shift
			}
		}
	}
	if moved("websocket.enable_tcp_ports") {
		for i := range w.EnableTCPPorts {
			if w.EnableTCPPorts[i].Port != 0 {
				w.EnableTCPPorts[i].Port += shift
			}
		}
	}
	if moved("websocket.api_port") && w.APIPort != 0 {
		w.APIPort += shift
	}
	if host, port, err := net.SplitHostPort(w.Metrics); moved("websocket.metrics") && err == nil {
		if p, err := strconv.Atoi(port); err == nil && p != 0 {
			w.Metrics = net.JoinHostPort(host, strconv.Itoa(p+shift))
		}
	}
}

// reservedEnv are DCE_ variables that are not configuration keys.
var reservedEnv = map[string]bool{"DCE_ROOT": true, "DCE_CHROMIUM": true, "DCE_TEST_LOG": true}

// unknownEnv names each DCE_* variable that matches no key, with the
// nearest known one: a typo would otherwise be silently ignored.
func (l *loader) unknownEnv() []string {
	if l.src.Environ == nil {
		return nil
	}
	known := map[string]bool{}
	var names []string
	for _, key := range l.v.AllKeys() {
		n := "DCE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		known[n] = true
		names = append(names, n)
	}
	sort.Strings(names)
	var out []string
	for _, kv := range l.src.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "DCE_") || known[name] || reservedEnv[name] {
			continue
		}
		best, bestD := "", 1<<30
		for _, n := range names {
			if d := distance(name, n); d < bestD {
				best, bestD = n, d
			}
		}
		msg := "environment variable " + name + " matches no configuration key: ignored"
		if best != "" && bestD <= max(3, len(name)/3) {
			msg += " (did you mean " + best + "?)"
		}
		out = append(out, msg)
	}
	sort.Strings(out)
	return out
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (l *loader) options() {
	names := make([]string, 0, len(l.src.Options))
	for n := range l.src.Options {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if key, ok := Overrides[name]; ok {
			l.v.Set(key, l.src.Options[name])
			l.where[key] = "option -" + name
		}
	}
}

func setDefaults(v *viper.Viper, key string, rv reflect.Value) {
	if rv.Kind() != reflect.Struct {
		v.SetDefault(key, rv.Interface())
		return
	}
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		if f.IsExported() {
			setDefaults(v, key+"."+tag(f), rv.Field(i))
		}
	}
}

func leafKeys(prefix string, m map[string]any) []string {
	var keys []string
	for k, v := range m {
		full := k
		if prefix != "" {
			full = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			keys = append(keys, leafKeys(full, sub)...)
		} else {
			keys = append(keys, full)
		}
	}
	return keys
}

func tag(f reflect.StructField) string {
	if t := f.Tag.Get("mapstructure"); t != "" {
		return strings.Split(t, ",")[0]
	}
	return strings.ToLower(f.Name)
}

func field(typ reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < typ.NumField(); i++ {
		if f := typ.Field(i); f.IsExported() && tag(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldNames(typ reflect.Type) []string {
	var names []string
	for i := 0; i < typ.NumField(); i++ {
		if f := typ.Field(i); f.IsExported() {
			names = append(names, tag(f))
		}
	}
	return names
}

var durationType = reflect.TypeOf(time.Duration(0))

// decodeKey decodes a struct field by field through viper, so each leaf
// sees its own default, file, environment and option values.
func (l *loader) decodeKey(key string, rv reflect.Value) {
	if rv.Kind() != reflect.Struct || rv.Type() == durationType {
		l.decode(key, l.v.Get(key), rv)
		return
	}
	for i := 0; i < rv.NumField(); i++ {
		if f := rv.Type().Field(i); f.IsExported() {
			l.decodeKey(key+"."+tag(f), rv.Field(i))
		}
	}
}

// decode converts val into rv strictly: numbers from numbers or numeric
// strings (the environment and options are strings), booleans from booleans
// or "true"/"false", durations from strings like "25s".
func (l *loader) decode(key string, val any, rv reflect.Value) {
	if val == nil {
		return // an empty YAML value keeps the zero value
	}
	if reflect.TypeOf(val) == rv.Type() { // a default, as it was
		rv.Set(reflect.ValueOf(val))
		return
	}
	want := func(what string) {
		l.bad(key, fmt.Sprintf("%s, got %s", what, describe(val)))
	}
	switch {
	case rv.Type() == durationType:
		s, ok := val.(string)
		d, err := time.ParseDuration(s)
		if !ok || err != nil {
			want("a duration such as 500ms, 25s or 2m")
			return
		}
		rv.SetInt(int64(d))
		return
	}
	switch rv.Kind() {
	case reflect.String:
		switch v := val.(type) {
		case string:
			rv.SetString(v)
		case int, int64, float64:
			rv.SetString(fmt.Sprint(v)) // a password of digits
		default:
			want("a string")
		}
	case reflect.Bool:
		switch v := val.(type) {
		case bool:
			rv.SetBool(v)
		case string:
			b, err := strconv.ParseBool(v)
			if err != nil {
				want("true or false")
				return
			}
			rv.SetBool(b)
		default:
			want("true or false")
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, ok := toInt(val)
		if !ok {
			want("an integer")
			return
		}
		rv.SetInt(n)
	case reflect.Float64, reflect.Float32:
		f, ok := toFloat(val)
		if !ok {
			want("a number")
			return
		}
		rv.SetFloat(f)
	case reflect.Slice:
		list, ok := val.([]any)
		if !ok {
			if s, isStr := val.(string); isStr && rv.Type().Elem().Kind() == reflect.String {
				list = nil // DCE_WEBSOCKET_ALLOWED_ORIGINS="a b"
				for _, f := range strings.Fields(s) {
					list = append(list, f)
				}
			} else if _, isStrs := val.([]string); isStrs {
				for _, s := range val.([]string) {
					list = append(list, s)
				}
			} else {
				want("a list")
				return
			}
		}
		out := reflect.MakeSlice(rv.Type(), len(list), len(list))
		for i, item := range list {
			l.decode(fmt.Sprintf("%s[%d]", key, i), item, out.Index(i))
		}
		rv.Set(out)
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			want("a map of " + strings.Join(fieldNames(rv.Type()), ", "))
			return
		}
		for i := 0; i < rv.NumField(); i++ {
			f := rv.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			if sub, ok := m[tag(f)]; ok {
				l.decode(key+"."+tag(f), sub, rv.Field(i))
			}
		}
	case reflect.Map:
		m, ok := val.(map[string]any)
		if !ok || rv.Type().Key().Kind() != reflect.String {
			want("a map")
			return
		}
		out := reflect.MakeMapWithSize(rv.Type(), len(m))
		for k, item := range m {
			ev := reflect.New(rv.Type().Elem()).Elem()
			l.decode(key+"."+k, item, ev)
			out.SetMapIndex(reflect.ValueOf(k), ev)
		}
		rv.Set(out)
	case reflect.Interface:
		rv.Set(reflect.ValueOf(val))
	default:
		want("a supported type (" + rv.Type().String() + " is not)")
	}
}

func toInt(val any) (int64, bool) {
	switch v := val.(type) {
	case int:
		return int64(v), true
	case int64:
		return v, true
	case uint64:
		return int64(v), v <= 1<<62
	case float64:
		return int64(v), v == float64(int64(v))
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func toFloat(val any) (float64, bool) {
	switch v := val.(type) {
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case float64:
		return v, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return f, err == nil
	}
	return 0, false
}

func describe(val any) string {
	switch v := val.(type) {
	case string:
		return strconv.Quote(v)
	case map[string]any:
		return "a map"
	case []any:
		return "a list"
	case bool:
		return fmt.Sprintf("%v (a boolean)", v)
	}
	return fmt.Sprintf("%v", val)
}
