package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"dce/app/dce"
	"dce/project/sample/bench"
)

// ImBenchController runs the load tool against this folder's server.
type ImBenchController struct {
	env dce.Env
}

// NewImBenchController measures the server that env's configuration and
// control socket describe.
func NewImBenchController(env dce.Env) *ImBenchController { return &ImBenchController{env: env} }

// Actions are the controller's actions, by the names nodes.yaml uses.
func (ctl *ImBenchController) Actions() map[string]dce.Action {
	return map[string]dce.Action{"run": ctl.run}
}

// runBench: ./dce websocket bench [-clients 1000] [-senders 10] [-rate 20]
// [-duration 20s] [-window 16] [-ramp 200] [-mode chat|rr|join|soak|flood] [-churn N]
// [-presence delta|list] [-history 100] [-probes 20] [-url ws://...] [-json]
// [-cpuprofile FILE]
func (ctl *ImBenchController) run(c *dce.Context) error {
	cfg := ctl.env.Config
	o := bench.Options{
		URL:      "ws://127.0.0.1:" + strconv.Itoa(cfg.Websocket.Port) + "/",
		Clients:  1000,
		Senders:  10,
		Duration: 20 * time.Second,
		History:  100, // as our page
		Progress: os.Stderr,
		MaxRate:  cfg.Websocket.RateLimit,
		Status: func() (bench.ServerStatus, error) {
			var st bench.ServerStatus
			if ctl.env.Control == nil {
				return st, errors.New("no control socket: the load tool runs as a command")
			}
			out, err := ctl.env.Control("status")
			if err == nil {
				err = json.Unmarshal([]byte(out), &st)
			}
			return st, err
		},
	}
	// As fast as possible stays under the server's rate limit (a sender
	// over it is refused, then closed); a server started with
	// DCE_WEBSOCKET_RATE_LIMIT=0 has none, and the senders are unpaced.
	if st, err := o.Status(); err == nil {
		o.MaxRate = st.RateLimit
	}
	var err error
	ints := map[string]*int{"clients": &o.Clients, "senders": &o.Senders, "window": &o.Window, "ramp": &o.Ramp, "history": &o.History, "probes": &o.Probes, "fill": &o.Fill}
	for name, p := range ints {
		if v, ok := c.Arg(name); ok {
			if *p, err = strconv.Atoi(v); err != nil {
				return dce.Fail(400, "-%s: want an integer, got %q", name, v)
			}
		}
	}
	if v, ok := c.Arg("rate"); ok {
		if o.Rate, err = strconv.ParseFloat(v, 64); err != nil || o.Rate < 0 {
			return dce.Fail(400, "-rate: want messages per second per sender (0: as fast as possible), got %q", v)
		}
	}
	if v, ok := c.Arg("duration"); ok {
		if o.Duration, err = time.ParseDuration(v); err != nil {
			return dce.Fail(400, "-duration: want a duration such as 20s, got %q", v)
		}
	}
	if v, ok := c.Arg("url"); ok {
		o.URL = v
	}
	if v, ok := c.Arg("mode"); ok {
		if v != "chat" && v != "rr" && v != "soak" && v != "join" && v != "flood" {
			return dce.Fail(400, "-mode: want chat, rr, join, soak or flood, got %q", v)
		}
		o.Mode = v
		if _, set := c.Arg("ramp"); v == "join" && !set {
			o.Ramp = 64 // people opening the page, 64 at a time
		}
	}
	if v, ok := c.Arg("presence"); ok {
		if v != "delta" && v != "list" {
			return dce.Fail(400, "-presence: want delta (our page) or list (the original page), got %q", v)
		}
		o.Presence = v
	}
	if strings.Contains(o.URL, ",") && o.Mode != "" && o.Mode != "chat" {
		return dce.Fail(400, "-url: a comma list of nodes works in chat mode only")
	}
	_, asJSON := c.Arg("json")
	if v, ok := c.Arg("cpuprofile"); ok { // the load tool's own profile: is it the bottleneck?
		f, err := os.Create(v)
		if err != nil {
			return dce.Fail(400, "-cpuprofile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return dce.Fail(500, "-cpuprofile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}
	if o.Mode == "soak" {
		return soak(c, o, asJSON)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Duration+5*time.Minute)
	defer cancel()
	if o.Mode == "flood" { // idle WebSockets without a login, held for -duration
		res, err := bench.Flood(ctx, o)
		return report(c, "flood", res, err, asJSON)
	}
	if asJSON {
		o.Progress = nil
	}
	res, err := bench.Run(ctx, o)
	return report(c, "bench", res, err, asJSON)
}

// report sets the body: the result as one JSON line, or its table.
func report(c *dce.Context, what string, res interface{ Table() string }, err error, asJSON bool) error {
	if err != nil {
		return dce.Fail(500, "%s: %v", what, err)
	}
	if asJSON {
		b, _ := json.Marshal(res)
		c.SetBody(string(b) + "\n")
	} else {
		c.SetBody(res.Table())
	}
	return nil
}

// soak: ./dce websocket bench -mode soak -clients 5000 -churn 50 -duration 10m
func soak(c *dce.Context, o bench.Options, asJSON bool) error {
	so := bench.SoakOptions{URL: o.URL, Clients: o.Clients, Duration: o.Duration, Status: o.Status, Churn: float64(o.Clients) / 60}
	if v, ok := c.Arg("churn"); ok {
		var err error
		if so.Churn, err = strconv.ParseFloat(v, 64); err != nil || so.Churn <= 0 {
			return dce.Fail(400, "-churn: want sessions ended per second, got %q", v)
		}
	}
	if !asJSON {
		so.Progress = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format, args...) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Duration+5*time.Minute)
	defer cancel()
	res, err := bench.Soak(ctx, so)
	return report(c, "soak", res, err, asJSON)
}
