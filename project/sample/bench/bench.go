// Package bench is the chat's load tool (./dce websocket bench): N clients
// connect and log in over WebSocket, S of them send messages, and every
// receiver measures the latency of each delivery from the send timestamp the
// message carries. It speaks the sample's protocol, like a browser would.
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
)

// Options of one run.
type Options struct {
	URL      string        // ws://127.0.0.1:20461/; chat mode: a comma list spreads the clients over a cluster's nodes
	Clients  int           // connections, all logged in
	Senders  int           // clients that send; 0 only holds the connections
	Rate     float64       // messages per second per sender; 0 sends as fast as the server accepts
	Window   int           // messages in flight per sender when Rate is 0
	Duration time.Duration // sending (or holding) time
	Ramp     int           // connections opened at once
	Mode     string        // "chat" (default), "rr": request/response round trips, or "join" (see Join)
	Presence string        // "delta" (default, as our page) or "list": whole setUserList pushes, as the original page
	History  int           // messages asked for at login (our page: 100); 0 the whole history, as the original page
	Probes   int           // join mode: newcomers timed one by one into the full room (default 20)
	Fill     int           // join mode: messages of the longest size sent first, to join into a full history
	MaxRate  float64       // the server's per-connection rate limit: as-fast-as-possible senders stay under it; 0: unpaced
	Status   func() (ServerStatus, error)
	Progress io.Writer // one line per second; nil for none
}

// ServerStatus is the part of `websocket status` the report uses.
type ServerStatus struct {
	Connections map[string]int    `json:"connections"`
	Memory      map[string]uint64 `json:"memory"`
	CPUSeconds  float64           `json:"cpu_seconds"`
	Goroutines  int               `json:"goroutines"`
	OpenFiles   int               `json:"open_files"`
	RateLimit   float64           `json:"rate_limit"`
}

// Result of one run; JSON field names are stable for scripts.
type Result struct {
	Mode            string  `json:"mode"`
	Clients         int     `json:"clients"`
	Senders         int     `json:"senders"`
	Rate            float64 `json:"rate"`
	PacedAt         float64 `json:"paced_at"` // as fast as possible: per-sender pace under the server's rate limit; 0 unpaced
	DurationS       float64 `json:"duration_s"`
	ConnectS        float64 `json:"connect_s"`
	Connected       int     `json:"connected"`
	Dropped         int64   `json:"dropped"`
	Sent            int64   `json:"sent"`
	Refused         int64   `json:"refused"`
	Expected        int64   `json:"expected"`
	Received        int64   `json:"received"`
	Lost            int64   `json:"lost"`       // summed per client: each client's expected minus received, when short
	Duplicates      int64   `json:"duplicates"` // summed per client: received beyond expected
	ClientsShort    int     `json:"clients_short"`
	PerSecond       float64 `json:"per_second"`
	P50ms           float64 `json:"p50_ms"`
	P95ms           float64 `json:"p95_ms"`
	P99ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	ServerRSSPerCon float64 `json:"server_rss_per_conn_kib"`
	ServerRSSMiB    float64 `json:"server_rss_mib"`
	// ServerRSSHeldPerCon is the same at the end of a hold (-senders 0):
	// the idle figure, once the server has tidied up after the joins.
	ServerRSSHeldPerCon float64 `json:"server_rss_held_per_conn_kib"`
	ServerCPU           float64 `json:"server_cpu_percent"`
	JoinResult
}

type client struct {
	id           string
	ws           *websocket.Conn
	ready        chan struct{}
	listLen      atomic.Int64  // bytes of the last online list received
	got          atomic.Int64  // deliveries of this run received by this client
	inFlight     chan struct{} // window of a sender in as-fast-as-possible mode
	refusedReply atomic.Bool   // rr: the last reply was a 429
	sendMu       sync.Mutex
}

type run struct {
	o            Options
	tag          string
	hist         histogram
	received     atomic.Int64
	refused      atomic.Int64 // messages the server refused (429: over its rate limit)
	dropped      atomic.Int64
	counting     atomic.Bool
	lastPresence atomic.Int64 // unix nanos of the last setUserList or updateUserList received
	start        time.Time
}

// Run connects, measures and reports. ctx bounds the whole run.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Mode == "rr" || o.Mode == "join" {
		o.Senders = 0 // every client takes part: senders do not apply
	}
	if o.Clients < 1 || o.Senders < 0 || o.Senders > o.Clients || o.Duration <= 0 {
		return Result{}, errors.New("want clients >= 1, 0 <= senders <= clients, duration > 0")
	}
	if o.Window < 1 {
		o.Window = 16
	}
	if o.Ramp < 1 {
		o.Ramp = 200
	}
	if o.Mode == "join" {
		return Join(ctx, o)
	}
	raiseFileLimit()
	r := &run{o: o, tag: strconv.FormatUint(rand.Uint64()%1e9, 36)}
	res := Result{Mode: o.Mode, Clients: o.Clients, Senders: o.Senders, Rate: o.Rate, DurationS: o.Duration.Seconds()}
	if (o.Rate == 0 || o.Mode == "rr") && o.MaxRate > 0 {
		res.PacedAt = o.MaxRate * 0.95
	}
	if res.Mode == "" {
		res.Mode = "chat"
	}
	before, _ := r.status()

	t0 := time.Now()
	clients, err := r.connect(ctx)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.ws.Close()
			}
		}
	}()
	res.ConnectS = time.Since(t0).Seconds()
	for _, c := range clients {
		if c != nil {
			res.Connected++
		}
	}
	if err != nil {
		return res, err
	}
	r.awaitLists(clients)
	after, okAfter := r.status()
	if okAfter {
		res.ServerRSSMiB = float64(after.Memory["rss_bytes"]) / (1 << 20)
		res.ServerRSSPerCon = (float64(after.Memory["rss_bytes"]) - float64(before.Memory["rss_bytes"])) / 1024 / float64(res.Connected)
	}

	r.counting.Store(true)
	r.start = time.Now()
	var sent atomic.Int64
	sendCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var wg sync.WaitGroup
	if res.Mode == "rr" {
		for _, c := range clients {
			wg.Add(1)
			go func() { defer wg.Done(); r.roundTrips(sendCtx, c, &sent) }()
		}
	} else {
		for i := 0; i < o.Senders; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); r.send(sendCtx, clients[i], i, &sent) }()
		}
	}
	stopProgress := r.progress(&sent)
	if res.Mode == "chat" && o.Senders == 0 { // hold the connections, counting drops
		<-sendCtx.Done()
		if held, ok := r.status(); ok && okAfter {
			res.ServerRSSHeldPerCon = (float64(held.Memory["rss_bytes"]) - float64(before.Memory["rss_bytes"])) / 1024 / float64(res.Connected)
		}
	}
	wg.Wait()
	sendEnd := time.Now()
	res.Sent = sent.Load()
	res.Refused = r.refused.Load()
	res.Expected = (res.Sent - res.Refused) * int64(res.Connected)
	if res.Mode == "rr" {
		res.Expected = res.Sent - res.Refused
	}
	// Wait for what is still on the way, at most 10 s: every client must
	// have had each accepted message once.
	perClient := res.Sent - res.Refused
	complete := func() bool {
		if res.Mode == "rr" {
			return r.received.Load() >= res.Expected
		}
		for _, c := range clients {
			if c != nil && c.got.Load() < perClient {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !complete() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(r.start)
	if complete() {
		elapsed = max(sendEnd.Sub(r.start), r.hist.lastAt().Sub(r.start))
	}
	stopProgress()
	r.counting.Store(false) // closing our own clients is no drop
	end, okEnd := r.status()
	res.Received = r.received.Load()
	if res.Mode == "rr" {
		res.Lost = max(0, res.Expected-res.Received)
	} else {
		for _, c := range clients {
			if c == nil {
				continue
			}
			switch got := c.got.Load(); {
			case got < perClient:
				res.Lost += perClient - got
				res.ClientsShort++
			case got > perClient:
				res.Duplicates += got - perClient
			}
		}
	}
	res.Dropped = r.dropped.Load()
	res.PerSecond = float64(res.Received) / elapsed.Seconds()
	res.P50ms, res.P95ms, res.P99ms, res.MaxMs = r.hist.quantile(0.50), r.hist.quantile(0.95), r.hist.quantile(0.99), r.hist.maxMs()
	if okAfter && okEnd {
		res.ServerCPU = 100 * (end.CPUSeconds - after.CPUSeconds) / time.Since(r.start).Seconds()
	}
	return res, nil
}

func (r *run) status() (ServerStatus, bool) {
	if r.o.Status == nil {
		return ServerStatus{}, false
	}
	st, err := r.o.Status()
	return st, err == nil
}

func (r *run) progress(sent *atomic.Int64) (stop func()) {
	if r.o.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-done:
				return
			case <-t.C:
				got := r.received.Load()
				fmt.Fprintf(r.o.Progress, "%5.0fs  sent %d  received %d  (%d/s)  p99 %.1f ms  dropped %d\n",
					time.Since(r.start).Seconds(), sent.Load(), got, got-last, r.hist.quantile(0.99), r.dropped.Load())
				last = got
			}
		}
	}()
	return func() { close(done); <-finished }
}

// connect opens and logs in every client, o.Ramp at a time; with several
// URLs (a cluster's nodes), client i goes to the (i mod n)-th.
func (r *run) connect(ctx context.Context) ([]*client, error) {
	var nodes []*url.URL
	for _, s := range strings.Split(r.o.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, u)
	}
	u := nodes[0]
	clients := make([]*client, r.o.Clients)
	var firstErr error
	var errMu sync.Mutex
	var done atomic.Int64
	loopback := isLoopback(u.Hostname())
	ramped(ctx, r.o.Clients, r.o.Ramp, func(i int) {
		c, err := r.dial(ctx, nodes[i%len(nodes)], i, loopback)
		if err != nil {
			errMu.Lock()
			if firstErr == nil {
				firstErr = fmt.Errorf("client %d: %w", i, err)
			}
			errMu.Unlock()
			return
		}
		clients[i] = c
		if n := done.Add(1); r.o.Progress != nil && n%1000 == 0 {
			fmt.Fprintf(r.o.Progress, "connected %d/%d\n", n, r.o.Clients)
		}
	})
	if firstErr == nil {
		firstErr = awaitReady(ctx, clients)
	}
	return clients, firstErr
}

// dial connects one client from its own 127.0.0.x source address (20,000
// clients per address keep clear of the ephemeral port range) and logs in.
func (r *run) dial(ctx context.Context, u *url.URL, i int, loopback bool) (*client, error) {
	ws, _, err := dialer(i, loopback, 4096).DialContext(ctx, u.String(), nil)
	if err != nil {
		return nil, err
	}
	c := &client{id: strconv.FormatInt(int64(i), 36), ws: ws, ready: make(chan struct{}), inFlight: make(chan struct{}, r.o.Window)}
	go r.read(c)
	login := r.loginFrame(fmt.Sprintf("bench-%s-%d", r.tag, i), "")
	if r.o.Mode == "rr" {
		login = r.loginFrame(fmt.Sprintf("bench-%s-%d", r.tag, i), ":0")
	}
	if err := c.write(login); err != nil {
		ws.Close()
		return nil, err
	}
	return c, nil
}

// ramped runs f(0) … f(n-1), at most width at a time (connections opened
// as people would, not all in one instant), and waits for them; it starts
// no more once ctx ends.
func ramped(ctx context.Context, n, width int, f func(i int)) {
	sem := make(chan struct{}, max(width, 1))
	var wg sync.WaitGroup
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}

// dialer is the WebSocket dialer of client i: from its own loopback source
// address when the server is on loopback, with read buffers of buf bytes.
func dialer(i int, loopback bool, buf int) *websocket.Dialer {
	d := &websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: buf, WriteBufferSize: min(buf, 1024)}
	if loopback {
		d.NetDialContext = loopbackDialer(i)
	}
	return d
}

// addrBase picks this run's 127.x.0.0 block: the ports a previous run left
// in TIME_WAIT belong to other source addresses.
var addrBase = byte(1 + rand.IntN(250))

// loopbackDialer dials from client i's own source address: 20,000
// clients per 127.x.0.y keep clear of the ephemeral port range.
func loopbackDialer(i int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	local := &net.TCPAddr{IP: net.IPv4(127, addrBase, 0, byte(1+i/20000))}
	nd := &net.Dialer{LocalAddr: local, Timeout: 30 * time.Second}
	return nd.DialContext
}

// loginFrame is the login a client sends: the page's (delta presence, a
// page of history) unless the options ask for the original page's.
func (r *run) loginFrame(nick, id string) string {
	extra := ""
	if r.o.Presence != "list" {
		extra += `,"presence":"delta"`
	}
	if r.o.History > 0 {
		extra += `,"history":` + strconv.Itoa(r.o.History)
	}
	return `sample/im/login` + id + `;{"nickname":"` + nick + `","brief":"load test client"` + extra + `}`
}

// awaitReady waits until every client got its history after login.
func awaitReady(ctx context.Context, clients []*client) error {
	deadline := time.After(2 * time.Minute)
	for i, c := range clients {
		if c == nil {
			continue
		}
		select {
		case <-c.ready:
		case <-deadline:
			return fmt.Errorf("client %d: no history within 2 minutes of the logins", i)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// awaitLists waits until the pushes of the joins are over: with whole
// lists, every client holds the longest list seen (10,000 lists of 600 KB
// take a while); with deltas, no presence push arrived for 1.5 s (a change
// reaches everyone within 1 s).
func (r *run) awaitLists(clients []*client) {
	if r.o.Presence != "list" {
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if time.Since(time.Unix(0, r.lastPresence.Load())) > 1500*time.Millisecond {
				return
			}
		}
		return
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var longest, behind int64
		for _, c := range clients {
			if c != nil {
				longest = max(longest, c.listLen.Load())
			}
		}
		for _, c := range clients {
			if c != nil && c.listLen.Load() < longest {
				behind++
			}
		}
		if behind == 0 {
			return
		}
	}
}

func (c *client) write(s string) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, []byte(s))
}

var marker = []byte(`"message":"b `)

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// read counts deliveries: each message of this run found in a
// setMessageList frame (frames may carry several), with its latency.
func (r *run) read(c *client) {
	ready := false
	buf := make([]byte, 0, 4096)
	for {
		_, rd, err := c.ws.NextReader()
		if err != nil {
			if !ready {
				close(c.ready)
			}
			if r.counting.Load() && !websocket.IsCloseError(err, websocket.CloseNormalClosure) && !errors.Is(err, net.ErrClosed) {
				r.dropped.Add(1)
			}
			return
		}
		// Read the start of the frame; only message lists are read whole
		// (an online list of 10,000 members is 600 KB: skipped unread).
		buf = buf[:0]
		head := buf[:min(cap(buf), 64)]
		n, _ := io.ReadFull(rd, head)
		buf = head[:n]
		if hasPrefix(buf, "setUserList;") || hasPrefix(buf, "updateUserList;") {
			rest, _ := io.Copy(io.Discard, rd)
			c.listLen.Store(int64(n) + rest)
			r.lastPresence.Store(time.Now().UnixNano())
			continue
		}
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := rd.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err != nil {
				break
			}
		}
		if r.o.Mode == "rr" {
			switch {
			case hasPrefix(buf, "sample/im/login:0;"):
				if !ready {
					ready = true
					close(c.ready)
				}
			case hasPrefix(buf, "sample/im/login:"):
				if bytes.Contains(buf, []byte(`"code":429`)) {
					c.refusedReply.Store(true)
				}
				c.inFlight <- struct{}{}
			}
			continue
		}
		if hasPrefix(buf, "sample/im/send;") { // only errors come back in push mode
			if r.counting.Load() && bytes.Contains(buf, []byte(`"code":429`)) {
				r.refused.Add(1)
				select {
				case <-c.inFlight:
				default:
				}
			}
			continue
		}
		if !hasPrefix(buf, "setMessageList;") {
			continue
		}
		if !ready { // the first list is the history
			ready = true
			close(c.ready)
			continue
		}
		r.count(buf[len("setMessageList;"):], c)
	}
}

// count parses `"message":"b TAG SENDER NANOS"` occurrences without
// allocating: the tool must stay cheaper than the server it measures.
func (r *run) count(b []byte, c *client) {
	now := time.Now().UnixNano()
	for {
		i := bytes.Index(b, marker)
		if i < 0 {
			return
		}
		b = b[i+len(marker):]
		end := bytes.IndexByte(b, '"')
		if end < 0 {
			return
		}
		f := b[:end]
		b = b[end:]
		tag, rest, ok1 := bytes.Cut(f, []byte{' '})
		sender, nanos, ok2 := bytes.Cut(rest, []byte{' '})
		if !ok1 || !ok2 || string(tag) != r.tag {
			continue
		}
		ts, ok := atoi(nanos)
		if !ok {
			continue
		}
		r.received.Add(1)
		c.got.Add(1)
		r.hist.add(now-ts, now)
		if string(sender) == c.id {
			select {
			case <-c.inFlight:
			default:
			}
		}
	}
}

func atoi(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// send is one sender: at a fixed rate, or as fast as its window allows.
func (r *run) send(ctx context.Context, c *client, i int, sent *atomic.Int64) {
	var tick *time.Ticker
	if r.o.Rate > 0 {
		// Senders are spread over the interval, as independent people would
		// be, instead of all firing in the same instant.
		interval := time.Duration(float64(time.Second) / r.o.Rate)
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval * time.Duration(i) / time.Duration(r.o.Senders)):
		}
		tick = time.NewTicker(interval)
		defer tick.Stop()
	}
	id := c.id
	var pace time.Duration // as fast as possible, but under the server's rate limit
	if r.o.MaxRate > 0 {
		pace = time.Duration(float64(time.Second) / (r.o.MaxRate * 0.95))
	}
	next := time.Now()
	for {
		if pace > 0 && tick == nil {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(pace)
		}
		if tick != nil {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case c.inFlight <- struct{}{}:
			}
		}
		msg := `sample/im/send;{"message":"b ` + r.tag + " " + id + " " + strconv.FormatInt(time.Now().UnixNano(), 10) + `"}`
		if err := c.write(msg); err != nil {
			return
		}
		sent.Add(1)
	}
}

// roundTrips keeps one request in flight: login again (idempotent), await
// its reply, repeat. Latency is the round trip. Under the server's rate
// limit it is paced just below it (and says so); a 429 reply is counted as
// refused, not as a round trip.
func (r *run) roundTrips(ctx context.Context, c *client, sent *atomic.Int64) {
	var pace time.Duration
	if r.o.MaxRate > 0 {
		pace = time.Duration(float64(time.Second) / (r.o.MaxRate * 0.95))
	}
	next := time.Now()
	for i := 1; ctx.Err() == nil; i++ {
		if pace > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(pace)
		}
		t := time.Now()
		if err := c.write(`sample/im/login:` + strconv.Itoa(i) + `;{"nickname":"rr"}`); err != nil {
			return
		}
		sent.Add(1)
		select {
		case <-c.inFlight:
		case <-time.After(10 * time.Second):
			return
		}
		if c.refusedReply.Swap(false) {
			r.refused.Add(1)
			continue
		}
		r.received.Add(1)
		now := time.Now()
		r.hist.add(now.Sub(t).Nanoseconds(), now.UnixNano())
	}
}

// histogram is log-linear: 64 sub-buckets per power of two of nanoseconds,
// lock-free.
type histogram struct {
	b    [64 * 64]atomic.Uint64
	max  atomic.Int64
	last atomic.Int64
}

func (h *histogram) add(ns, at int64) {
	if ns < 1 {
		ns = 1
	}
	h.b[bucket(ns)].Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			break
		}
	}
	if at > h.last.Load() {
		h.last.Store(at)
	}
}

func (h *histogram) lastAt() time.Time { return time.Unix(0, h.last.Load()) }

func bucket(ns int64) int {
	e := 63 - bits.LeadingZeros64(uint64(ns))
	if e < 6 {
		return int(ns)
	}
	return (e-5)*64 + int((uint64(ns)>>(e-6))&63)
}

func bucketValue(i int) float64 {
	if i < 64 {
		return float64(i)
	}
	e := i/64 + 5
	return float64(uint64(64+i%64) << (e - 6))
}

func (h *histogram) quantile(q float64) float64 {
	var total uint64
	for i := range h.b {
		total += h.b[i].Load()
	}
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	var acc uint64
	for i := range h.b {
		acc += h.b[i].Load()
		if acc >= want {
			return bucketValue(i) / 1e6
		}
	}
	return h.maxMs()
}

func (h *histogram) maxMs() float64 { return float64(h.max.Load()) / 1e6 }

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// raiseFileLimit lifts the soft open-file limit to the hard one.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// Table renders a result for people.
func (res Result) Table() string {
	var sb strings.Builder
	w := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', tabwriter.AlignRight)
	row := func(k, v string) { fmt.Fprintf(w, "%s\t%s\t\n", k, v) }
	row("mode", res.Mode)
	if res.Mode == "join" {
		row("clients in", fmt.Sprintf("%d / %d in %.1f s, %d failed", res.Connected, res.Clients, res.AllInS, res.Failures))
		row("join wait p50 / p99 / max", fmt.Sprintf("%.1f / %.1f / %.1f ms", res.JoinP50ms, res.JoinP99ms, res.JoinMaxMs))
		row("join wait p99, last 1,000", fmt.Sprintf("%.1f ms", res.JoinLastP99ms))
		row("probe into the full room p50 / p99", fmt.Sprintf("%.1f / %.1f ms", res.ProbeP50ms, res.ProbeP99ms))
		if res.CPUmsPerJoin > 0 {
			row("server CPU per join", fmt.Sprintf("%.2f ms", res.CPUmsPerJoin))
			row("server RSS", fmt.Sprintf("%.1f MiB", res.ServerRSSMiB))
		}
		w.Flush()
		return sb.String()
	}
	row("clients connected", fmt.Sprintf("%d / %d in %.2f s", res.Connected, res.Clients, res.ConnectS))
	if res.Mode == "chat" && res.Senders == 0 {
		row("held", fmt.Sprintf("%.0f s, no sender", res.DurationS))
	}
	if res.Mode == "chat" {
		rate := "as fast as possible, unpaced"
		if res.PacedAt > 0 {
			rate = fmt.Sprintf("as fast as possible, paced at %.0f msg/s each under the server's rate limit", res.PacedAt)
		}
		if res.Rate > 0 {
			rate = fmt.Sprintf("%g msg/s each", res.Rate)
		}
		row("senders", fmt.Sprintf("%d, %s, %.0f s", res.Senders, rate, res.DurationS))
	}
	if res.Mode == "rr" && res.PacedAt > 0 {
		row("round trips", fmt.Sprintf("paced at %.0f/s per connection under the server's rate limit", res.PacedAt))
	}
	row("messages sent", strconv.FormatInt(res.Sent, 10))
	row("refused by the rate limit", strconv.FormatInt(res.Refused, 10))
	row("deliveries expected", strconv.FormatInt(res.Expected, 10))
	row("deliveries received", strconv.FormatInt(res.Received, 10))
	row("lost (per client)", fmt.Sprintf("%d, at %d clients", res.Lost, res.ClientsShort))
	row("duplicates", strconv.FormatInt(res.Duplicates, 10))
	row("connections dropped", strconv.FormatInt(res.Dropped, 10))
	row("deliveries per second", fmt.Sprintf("%.0f", res.PerSecond))
	row("latency p50 / p95 / p99", fmt.Sprintf("%.2f / %.2f / %.2f ms", res.P50ms, res.P95ms, res.P99ms))
	row("latency max", fmt.Sprintf("%.2f ms", res.MaxMs))
	if res.ServerRSSMiB > 0 {
		row("server RSS", fmt.Sprintf("%.1f MiB, %.1f KiB per connection", res.ServerRSSMiB, res.ServerRSSPerCon))
		if res.ServerRSSHeldPerCon > 0 {
			row("server RSS at the end of the hold", fmt.Sprintf("%.1f KiB per connection", res.ServerRSSHeldPerCon))
		}
		row("server CPU", fmt.Sprintf("%.0f %% (of one core)", res.ServerCPU))
	}
	w.Flush()
	return sb.String()
}
