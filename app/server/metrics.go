package server

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"dce/app/session"
)

// metrics counts what the Prometheus endpoint (websocket.metrics) shows.
// Nothing here takes a lock on the hot path: the hub's counters are the
// atomics `status` already reads, collected at scrape time; requests by node
// are atomics in a read-mostly map; the latency histogram is
// client_golang's own (atomic); queue depths are sampled at scrape.
type metrics struct {
	latency prometheus.Histogram
	nodes   sync.Map // node path → *nodeCounts
}

type nodeCounts struct {
	ok, clientErr, serverErr atomic.Uint64 // by status class: 2xx (and pushes), 4xx, 5xx
}

func newMetrics() *metrics {
	return &metrics{latency: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "dce_request_duration_seconds",
		Help:    "Time from a request's node lookup to its answer being queued, on every transport.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	})}
}

// Served implements router.Observer.
func (m *metrics) Served(node string, code int, d time.Duration) {
	m.latency.Observe(d.Seconds())
	v, ok := m.nodes.Load(node)
	if !ok {
		v, _ = m.nodes.LoadOrStore(node, &nodeCounts{})
	}
	n := v.(*nodeCounts)
	switch {
	case code >= 500:
		n.serverErr.Add(1)
	case code >= 400:
		n.clientErr.Add(1)
	default:
		n.ok.Add(1)
	}
}

var (
	descConns     = prometheus.NewDesc("dce_connections", "Open connections by transport.", []string{"transport"}, nil)
	descAccepted  = prometheus.NewDesc("dce_connections_accepted_total", "Connections accepted.", nil, nil)
	descClosed    = prometheus.NewDesc("dce_connections_closed_total", "Connections closed.", nil, nil)
	descRefused   = prometheus.NewDesc("dce_connections_refused_total", "Connections refused before they opened (limits, files).", nil, nil)
	descRequests  = prometheus.NewDesc("dce_requests_total", "Requests by node and status class.", []string{"node", "status"}, nil)
	descPushes    = prometheus.NewDesc("dce_pushes_total", "Messages queued to connections (replies and pushes).", nil, nil)
	descSlow      = prometheus.NewDesc("dce_dropped_slow_total", "Connections dropped because they read too slowly.", nil, nil)
	descLimited   = prometheus.NewDesc("dce_rate_limited_total", "Messages refused by the per-connection rate limit.", nil, nil)
	descQueue     = prometheus.NewDesc("dce_send_queue_depth", "Messages waiting per connection, sampled at scrape.", nil, nil)
	descStoreDown = prometheus.NewDesc("dce_session_store_up", "1 when the session store answers (always 1 for memory and file).", nil, nil)
	descRedisErr  = prometheus.NewDesc("dce_redis_errors_total", "Calls that failed because Redis did not answer (redis session store).", nil, nil)
)

var queueBuckets = []float64{0, 1, 4, 16, 64, 256, 1024}

// collector reads the server's counters at scrape time.
type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConns, descAccepted, descClosed, descRefused, descRequests, descPushes, descSlow, descLimited, descQueue, descStoreDown, descRedisErr} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s, st := c.s, &c.s.hub.stats
	byTransport := map[string]int{"websocket": 0, "tcp": 0}
	counts := make(map[float64]uint64, len(queueBuckets))
	var sum float64
	conns := s.hub.snapshot()
	for _, cn := range conns {
		byTransport[cn.transport]++
		n := float64(cn.out.Len())
		sum += n
		for _, b := range queueBuckets {
			if n <= b {
				counts[b]++
			}
		}
	}
	for t, n := range byTransport {
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(n), t)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descAccepted, st.accepted.Load())
	counter(descClosed, st.closed.Load())
	counter(descRefused, st.refused.Load())
	counter(descPushes, st.pushes.Load())
	counter(descSlow, st.slow.Load())
	counter(descLimited, st.limited.Load())
	ch <- prometheus.MustNewConstHistogram(descQueue, uint64(len(conns)), sum, counts)
	s.metrics.nodes.Range(func(k, v any) bool {
		n := v.(*nodeCounts)
		for class, c := range map[string]uint64{"2xx": n.ok.Load(), "4xx": n.clientErr.Load(), "5xx": n.serverErr.Load()} {
			if c > 0 {
				ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(c), k.(string), class)
			}
		}
		return true
	})
	up := 1.0
	if !s.storeUp() {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(descStoreDown, prometheus.GaugeValue, up)
	if rs := s.redisStore(); rs != nil {
		counter(descRedisErr, rs.Errors())
	}
}

// redisStore is the session store when it is Redis, else nil.
func (s *Server) redisStore() *session.RedisStore {
	if m, ok := s.hub.sessions.(*session.Manager); ok {
		if rs, ok := m.Store().(*session.RedisStore); ok {
			return rs
		}
	}
	return nil
}

// storeUp reports whether the session store answers.
func (s *Server) storeUp() bool {
	rs := s.redisStore()
	return rs == nil || rs.Available()
}

// startMetrics serves /metrics (Prometheus text format), /healthz (the
// process answers) and /readyz (listening and the session store reachable;
// 503 while stopping) on websocket.metrics.
func (s *Server) startMetrics(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collector{s},
		s.metrics.latency,
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		switch {
		case stopping:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("stopping\n"))
		case !s.storeUp():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("session store unreachable\n"))
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.metricsAddr = ln.Addr().String()
	go func() { _ = s.metricsSrv.Serve(ln) }() // closed by Shutdown, after everything else
	return nil
}

// MetricsAddr returns the bound metrics address, or "".
func (s *Server) MetricsAddr() string { return s.metricsAddr }

var _ = strconv.Itoa
