package server

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Status is the live state printed by `./dce websocket status`.
type Status struct {
	PID           int               `json:"pid"`
	StartTime     string            `json:"start_time"`
	Uptime        string            `json:"uptime"`
	UptimeSeconds float64           `json:"uptime_seconds"`
	Listeners     []string          `json:"listeners"`
	Connections   map[string]int    `json:"connections"`
	Accepted      uint64            `json:"accepted"`
	Closed        uint64            `json:"closed"`
	Refused       uint64            `json:"refused"`
	DroppedSlow   uint64            `json:"dropped_slow"`
	Requests      uint64            `json:"requests"`
	Pushes        uint64            `json:"pushes"`
	Goroutines    int               `json:"goroutines"`
	OpenFiles     int               `json:"open_files"`
	Memory        map[string]uint64 `json:"memory"`
	CPUSeconds    float64           `json:"cpu_seconds"`
	RateLimit     float64           `json:"rate_limit"`              // messages per second per connection in force; 0 is off
	Node          string            `json:"node,omitempty"`          // in a cluster: this node's name
	ClusterNodes  []string          `json:"cluster_nodes,omitempty"` // in a cluster: the live nodes
}

// Status collects the live counters.
func (s *Server) Status() Status {
	conns := map[string]int{"websocket": 0, "tcp": 0, "total": 0}
	for _, c := range s.hub.snapshot() {
		conns[c.transport]++
		conns["total"]++
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	up := time.Since(s.started)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	st := Status{
		PID:           os.Getpid(),
		StartTime:     s.started.Format(time.RFC3339),
		Uptime:        up.Round(time.Second).String(),
		UptimeSeconds: up.Seconds(),
		Listeners:     append(append([]string{}, s.httpAddr...), s.sockAddr...),
		Connections:   conns,
		Accepted:      s.hub.stats.accepted.Load(),
		Closed:        s.hub.stats.closed.Load(),
		Refused:       s.hub.stats.refused.Load(),
		DroppedSlow:   s.hub.stats.slow.Load(),
		Requests:      s.hub.stats.requests.Load(),
		Pushes:        s.hub.stats.pushes.Load(),
		Goroutines:    runtime.NumGoroutine(),
		OpenFiles:     openFiles(),
		Memory: map[string]uint64{
			"rss_bytes":        rss(),
			"heap_alloc_bytes": ms.HeapAlloc,
			"heap_sys_bytes":   ms.HeapSys,
			"stack_bytes":      ms.StackSys,
			"sys_bytes":        ms.Sys,
		},
		CPUSeconds: cpu,
		RateLimit:  s.hub.limits().RateLimit,
	}
	if b := s.hub.bus; b != nil {
		st.Node = b.Node()
		st.ClusterNodes, _ = b.Nodes()
	}
	return st
}

// openFiles counts this process's file descriptors (-1 where /proc is missing).
func openFiles() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

// rss reads the resident set size from /proc (0 elsewhere).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
