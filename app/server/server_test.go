package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"dce/app/codec"
	"dce/app/config"
	"dce/app/dce"
	"dce/app/server"
	"dce/app/servertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const nodes = `
- path: echo
  methods: [websocket, tcp, udp, get, post]
  controller: T->echo
- path: pushall
  methods: [websocket, tcp]
  controller: T->pushall
- path: boom
  methods: [websocket, tcp, udp]
  controller: T->boom
- path: oops
  methods: [websocket, tcp]
  controller: T->oops
- path: bad
  methods: [websocket, tcp]
  controller: T->bad
- path: explicit
  methods: [websocket, tcp]
  controller: T->explicit
- path: flood
  methods: [websocket]
  controller: T->flood
- path: login
  methods: [websocket]
  controller: T->login
- path: merge
  methods: [websocket]
  controller: T->merge
- path: whoami
  methods: [websocket, tcp, get]
  controller: T->whoami
- path: renew
  methods: [post, websocket]
  controller: T->renew
- path: wsonly
  methods: [websocket]
  controller: T->echo
- path: hold
  methods: [get]
  controller: T->hold
- path: page
  methods: [get]
  render: page.html
  extra: {title: "<Page>"}
`

// hooks records what the custom server saw.
type hooks struct {
	mu      sync.Mutex
	opened  []uint64
	closed  []string // "fd member-still-mapped"
	started bool
}

var recorded = &hooks{}

func (h *hooks) BeforeStart(dce.Hub) error { h.mu.Lock(); h.started = true; h.mu.Unlock(); return nil }
func (h *hooks) OnOpen(c dce.Conn, _ *http.Request) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.opened = append(h.opened, c.FD())
	return nil
}
func (h *hooks) OnClose(c dce.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = append(h.closed, fmt.Sprint(c.FD(), " ", memberOf(c)))
}

var (
	holdEntered = make(chan struct{})
	holdRelease = make(chan struct{})
)

var (
	sessionsMu sync.Mutex
	lastHub    dce.Hub
)

func memberOf(c dce.Conn) string {
	sessionsMu.Lock()
	defer sessionsMu.Unlock()
	if lastHub == nil {
		return "?"
	}
	if m, ok := lastHub.Sessions().Member(c.FD()); ok {
		return fmt.Sprint(m)
	}
	return "none"
}

// binaryCodec routes binary frames "path\x00payload" and answers in text.
type binaryCodec struct{ dce.TextCodec }

func (binaryCodec) Decode(frame []byte, binary bool) (codec.Message, error) {
	if !binary {
		return codec.Decode(frame)
	}
	path, payload, _ := strings.Cut(string(frame), "\x00")
	return codec.Message{Path: path, Payload: payload, ID: 1, HasID: true}, nil
}

func init() {
	dce.Register("srvtest", "T", map[string]dce.Action{
		"echo": func(c *dce.Context) error {
			c.Assign("echo", c.Data)
			c.Assign("transport", c.Method)
			return nil
		},
		"pushall": func(c *dce.Context) error {
			m, err := dce.NewMessage("broadcast", c.Data, dce.Queue)
			if err != nil {
				return err
			}
			c.Hub.SendAll(m)
			return nil
		},
		"hold": func(c *dce.Context) error { // an HTTP request in flight until the test releases it
			holdEntered <- struct{}{}
			<-holdRelease
			c.Assign("held", true)
			return nil
		},
		"boom":     func(*dce.Context) error { panic("secret detail") },
		"oops":     func(*dce.Context) error { return errors.New("database password is wrong") },
		"bad":      func(*dce.Context) error { return dce.Fail(400, "bad input") },
		"explicit": func(c *dce.Context) error { return c.Reply("custom/path", map[string]int{"x": 1}) },
		"flood": func(c *dce.Context) error {
			for i := 0; i < 200; i++ {
				_ = c.Conn.Push("n", i)
			}
			return nil
		},
		"merge": func(c *dce.Context) error { // one Merge-mode push of the request's array
			m, err := dce.NewMessage("list", c.Data, dce.Merge)
			if err != nil {
				return err
			}
			return c.Conn.Send(m)
		},
		"login": func(c *dce.Context) error {
			sessionsMu.Lock()
			lastHub = c.Hub
			sessionsMu.Unlock()
			return c.Hub.Sessions().Login(c.Conn.FD(), 42)
		},
		"renew": func(c *dce.Context) error { // a login over HTTP renews the session
			id, err := c.Hub.Sessions().Renew(c.SessionID())
			if err != nil {
				return err
			}
			if err := c.SetCookie(&http.Cookie{Name: "dcesid", Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}); err != nil {
				return dce.Fail(400, "%v", err)
			}
			c.Assign("sid", id)
			return nil
		},
		"whoami": func(c *dce.Context) error {
			c.Assign("sid", c.SessionID())
			if c.Conn != nil {
				if m, ok := c.Hub.Sessions().Member(c.Conn.FD()); ok {
					c.Assign("member", m)
				}
			}
			return nil
		},
	})
	dce.RegisterProject("srvbroken", "", dce.NoConfig{}, func(dce.Env, dce.NoConfig) (*dce.Project[dce.NoConfig], error) {
		return nil, errors.New("no such table: members")
	})
	dce.RegisterProject("srvtest", "", dce.NoConfig{}, func(dce.Env, dce.NoConfig) (*dce.Project[dce.NoConfig], error) {
		return &dce.Project[dce.NoConfig]{Servers: map[string]*dce.Server{
			"SrvtestServer":      {BeforeStart: recorded.BeforeStart, OnOpen: recorded.OnOpen, OnClose: recorded.OnClose},
			"SrvtestCodecServer": {Codec: binaryCodec{}},
		}}, nil
	})
}

func root(t testing.TB) string {
	r := servertest.Root(t, map[string]string{
		"secret.txt":                           "TOP SECRET",
		"project/srvtest/config/nodes.yaml":    nodes,
		"project/srvtest/template/page.html":   "<h1>{{.Extra.title}}</h1><script nonce=\"{{.Nonce}}\"></script>",
		"www/static/hello.txt":                 "static hello",
		"common/config/websocket.yaml":         "websocket: {enable_http: true, enable_tcp_ports: [{host: 127.0.0.1, port: 0, sock_type: tcp}, {host: 127.0.0.1, port: 0, sock_type: udp}], extra_ports: [{host: 127.0.0.1, port: 1}]}\n",
		"common/config/config.yaml":            "log: {access: true}\n",
		"project/srvtest/config/config.yaml":   "",
		"project/srvtest/template/unused.html": "",
	})
	if err := os.Symlink(filepath.Join(r, "secret.txt"), filepath.Join(r, "www/static/escape.txt")); err != nil {
		t.Fatal(err)
	}
	return r
}

func start(t testing.TB, mutate func(*config.Config)) *server.Server {
	return servertest.Start(t, root(t), []string{"srvtest"}, mutate)
}

func TestWebSocketProtocol(t *testing.T) {
	s := start(t, nil)
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	steps := []struct{ send, want string }{
		{`srvtest/echo:1;{"a":"<b>é"}`, `srvtest/echo:1;{"data":{"echo":{"a":"<b>é"},"transport":"websocket"}}`},
		{`srvtest/echo:2;undefined`, `srvtest/echo:2;{"data":{"echo":{},"transport":"websocket"}}`},
		{`srvtest/echo:3;[1,2]`, `srvtest/echo:3;{"data":{"echo":[1,2],"transport":"websocket"}}`},
		{`srvtest/nothing:4;{}`, `srvtest/nothing:4;{"status":false,"code":404,"message":"no node for path srvtest/nothing"}`},
		{`srvtest/page:5;{}`, `srvtest/page:5;{"status":false,"code":404,"message":"no node for path srvtest/page on websocket"}`},
		{`srvtest/boom:6;{}`, `srvtest/boom:6;{"status":false,"code":500,"message":"internal server error"}`},
		{`srvtest/oops:7;{}`, `srvtest/oops:7;{"status":false,"code":500,"message":"internal server error"}`},
		{`srvtest/bad:8;{}`, `srvtest/bad:8;{"status":false,"code":400,"message":"bad input"}`},
		{`srvtest/explicit:9;{}`, `custom/path:9;{"x":1}`},
		{`;x`, `;{"data":{"info":"` + dce.Product + ` ` + dce.Version + `: send PATH[:ID];JSON"}}`},
		{`no separator`, `;{"data":{"info":"` + dce.Product + ` ` + dce.Version + `: send PATH[:ID];JSON"}}`},
		{`:10;`, `:10;{"data":{"info":"` + dce.Product + ` ` + dce.Version + `: send PATH[:ID];JSON"}}`},
		{`srvtest/echo:x1;{}`, `srvtest/echo;{"status":false,"code":400,"message":"request id must be a decimal integer between 0 and 9007199254740991, got \"x1\""}`},
		{`srvtest/echo:99999999999999999999;{}`, `srvtest/echo;{"status":false,"code":400,"message":"request id must be a decimal integer between 0 and 9007199254740991, got \"99999999999999999999\""}`},
	}
	for _, st := range steps {
		c.Send(st.send)
		c.Expect(st.want)
	}
	// Push mode: nothing comes back, even for errors; the connection lives on.
	c.Send(`srvtest/echo;{}`)
	c.Send(`srvtest/nothing;{}`)
	c.Send(`srvtest/boom;{}`)
	c.Send(`srvtest/echo:11;{}`)
	c.ExpectPrefix(`srvtest/echo:11;`)
	// Binary frames are refused with a clear error.
	if err := c.Conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	c.Expect(`;{"status":false,"code":400,"message":"binary frames are not supported: send text PATH[:ID];JSON"}`)
}

func TestPushAllTransports(t *testing.T) {
	s := start(t, nil)
	a := servertest.DialWS(t, s.HTTPAddrs()[0])
	b := servertest.DialWS(t, s.HTTPAddrs()[1]) // an extra port
	tc := servertest.DialTCP(t, servertest.Sock(t, s, "tcp"))
	tc.Send(`:1;`) // the TCP connection is registered once it answers
	tc.ExpectPrefix(`:1;`)
	a.Send(`srvtest/pushall;{"hello":"all"}`)
	for _, c := range []*servertest.WS{a, b} {
		c.Expect(`broadcast;{"hello":"all"}`)
	}
	tc.Expect(`broadcast;{"hello":"all"}`)
	// TCP: replies end with \n, \r\n is accepted, blank lines are ignored.
	tc.Write([]byte("srvtest/echo:2;{\"t\":1}\r\n\n\r\n"))
	tc.Expect(`srvtest/echo:2;{"data":{"echo":{"t":1},"transport":"tcp"}}`)
	tc.Send(`srvtest/wsonly:3;{}`)
	tc.Expect(`srvtest/wsonly:3;{"status":false,"code":404,"message":"no node for path srvtest/wsonly on tcp"}`)
	tc.Send(`srvtest/boom:4;{}`)
	tc.Expect(`srvtest/boom:4;{"status":false,"code":500,"message":"internal server error"}`)
}

func TestUDP(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Websocket.MaxFrameBytes = 1024 })
	addr := servertest.Sock(t, s, "udp")
	tests := []struct{ send, want string }{
		{`srvtest/echo:1;{"u":1}`, `srvtest/echo:1;{"data":{"echo":{"u":1},"transport":"udp"}}`},
		{`srvtest/pushall:2;{}`, `srvtest/pushall:2;{"status":false,"code":404,"message":"no node for path srvtest/pushall on udp"}`},
		{`srvtest/boom:3;{}`, `srvtest/boom:3;{"status":false,"code":500,"message":"internal server error"}`},
		{``, `;{"data":{"info":"` + dce.Product + ` ` + dce.Version + `: send PATH[:ID];JSON"}}`},
		{strings.Repeat("x", 2000), `;{"status":false,"code":413,"message":"datagram longer than 1024 bytes"}`},
		{"\xff\xfe;", `;{"status":false,"code":400,"message":"invalid UTF-8"}`},
	}
	for _, tt := range tests {
		if got := servertest.UDP(t, addr, tt.send); got != tt.want {
			t.Errorf("udp %.40q: got %s; want %s", tt.send, got, tt.want)
		}
	}
}

func TestHTTPOnWebSocketPort(t *testing.T) {
	s := start(t, nil)
	base := "http://" + s.HTTPAddrs()[0]
	get := func(method, path string) (int, string, http.Header) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(`{"k":"v"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	tests := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/static/hello.txt", 200, "static hello"},
		{"GET", "/srvtest/echo", 200, `{"data":{"echo":{"k":"v"},"transport":"get"}}`},
		{"POST", "/srvtest/echo", 200, `{"data":{"echo":{"k":"v"},"transport":"post"}}`},
		{"GET", "/srvtest/page", 200, "<h1>&lt;Page&gt;</h1>"},
		{"GET", "/nothing/here", 404, "No page at /nothing/here"},
		{"DELETE", "/srvtest/echo", 405, "DELETE is not allowed"},
		{"GET", "/srvtest/wsonly", 405, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			code, body, _ := get(tt.method, tt.path)
			if code != tt.code || !strings.Contains(body, tt.body) {
				t.Errorf("%s %s = %d %q; want %d containing %q", tt.method, tt.path, code, body, tt.code, tt.body)
			}
		})
	}
	// A real file outside www/, and a link inside www/ pointing at it:
	// neither raw nor encoded traversal, nor the link, reads it.
	for _, p := range []string{
		"/../secret.txt", "/static/../../secret.txt", "/static/..%2f..%2fsecret.txt", "/%2e%2e/secret.txt",
		"/static/%2e%2e/%2e%2e/secret.txt", "/..%5csecret.txt", "/static/escape.txt", "/static/../static/escape.txt",
	} {
		if code, body := rawGet(t, s.HTTPAddrs()[0], p); code == 200 || strings.Contains(body, "TOP SECRET") {
			t.Errorf("GET %s = %d %q; want a refusal that reads nothing outside www/", p, code, body)
		}
	}
	_, body, h := get("GET", "/srvtest/page")
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self' 'nonce-") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q; want scripts limited to self and the nonce", csp)
	}
	nonce := csp[strings.Index(csp, "'nonce-")+7:]
	nonce = nonce[:strings.IndexByte(nonce, '\'')]
	if !strings.Contains(body, `nonce="`+nonce+`"`) {
		t.Errorf("page %q does not carry the CSP nonce %s", body, nonce)
	}
	// Oversized headers are refused by the HTTP server.
	req, _ := http.NewRequest("GET", base+"/static/hello.txt", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized header: %d; want 431", resp.StatusCode)
	}
}

// rawGet sends path exactly as written (no client-side cleaning) and
// returns the status code and body.
func rawGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(servertest.Timeout))
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr)
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTPOff(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Websocket.EnableHTTP = false })
	resp, err := http.Get("http://" + s.HTTPAddrs()[0] + "/static/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("HTTP with enable_http off: %d; want 404", resp.StatusCode)
	}
	c := servertest.DialWS(t, s.HTTPAddrs()[0]) // WebSocket still works
	c.Send(`srvtest/echo:1;{}`)
	c.ExpectPrefix(`srvtest/echo:1;{"data"`)
}

func TestOrigin(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Websocket.AllowedOrigins = []string{"https://trusted.example"} })
	addr := s.HTTPAddrs()[0]
	tests := []struct {
		origin string
		ok     bool
	}{
		{"", true}, // non-browser clients send none
		{"http://" + addr, true},
		{"https://trusted.example", true},
		{"https://evil.example", false},
		{"null", false},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.origin != "" {
			h.Set("Origin", tt.origin)
		}
		c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", h)
		if tt.ok != (err == nil) {
			t.Errorf("origin %q: err %v; want allowed %v", tt.origin, err, tt.ok)
		}
		if err == nil {
			c.Close()
		} else if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q refused without 403: %v", tt.origin, resp)
		}
	}
}

func TestOversizeFrameCloses1009(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Websocket.MaxFrameBytes = 1024 })
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	other := servertest.DialWS(t, s.HTTPAddrs()[0])
	c.Send("srvtest/echo;" + strings.Repeat("x", 2048))
	if code := c.CloseCode(); code != websocket.CloseMessageTooBig {
		t.Errorf("close code %d; want 1009", code)
	}
	other.Send(`srvtest/echo:1;{}`)
	other.ExpectPrefix(`srvtest/echo:1;`)
	tc := servertest.DialTCP(t, servertest.Sock(t, s, "tcp"))
	tc.Send(strings.Repeat("y", 5000))
	tc.Expect(`;{"status":false,"code":413,"message":"line longer than 1024 bytes: dropped"}`)
	tc.Send(`srvtest/echo:2;{}`) // the connection survives
	tc.ExpectPrefix(`srvtest/echo:2;`)
}

func TestInvalidUTF8Closes1007(t *testing.T) {
	s := start(t, nil)
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	if err := c.Conn.WriteMessage(websocket.TextMessage, []byte("srvtest/echo;\xff")); err != nil {
		t.Fatal(err)
	}
	if code := c.CloseCode(); code != websocket.CloseInvalidFramePayloadData {
		t.Errorf("close code %d; want 1007", code)
	}
}

// A client that stops reading is disconnected once its queue is full, and
// the others keep receiving everything.
func TestSlowReaderDropped(t *testing.T) {
	s := start(t, func(c *config.Config) {
		c.Websocket.SendQueue = 64
		c.Websocket.WriteTimeout = time.Second
		c.Websocket.RateLimit = 0
	})
	addr := s.HTTPAddrs()[0]
	slow := servertest.DialWSNarrow(t, addr) // never reads
	fast := servertest.DialWS(t, addr)
	sender := servertest.DialWS(t, addr)
	go func() { // the sender reads (and ignores) its own broadcasts
		for {
			if _, _, err := sender.Conn.NextReader(); err != nil {
				return
			}
		}
	}()
	big := strings.Repeat("z", 16<<10)
	const n = 400
	go func() {
		for i := 0; i < n; i++ {
			_ = sender.Conn.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`srvtest/pushall;{"i":%d,"pad":"%s"}`, i, big)))
		}
	}()
	for i := 0; i < n; i++ {
		got := fast.Read()
		if !strings.HasPrefix(got, fmt.Sprintf(`broadcast;{"i":%d,`, i)) {
			t.Fatalf("fast reader got %.40s; want message %d", got, i)
		}
	}
	deadline := time.Now().Add(servertest.Timeout)
	for s.Status().DroppedSlow == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.Status().DroppedSlow; n != 1 {
		t.Fatalf("%d connections dropped as slow; want exactly the slow reader", n)
	}
	// The dropped one is the slow reader: it reads what reached it, then
	// the end; the fast one still answers.
	for {
		if _, err := slow.ReadErr(servertest.Timeout); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the slow reader's connection is still open")
			}
			break
		}
	}
	fast.Send(`srvtest/echo:1;{}`)
	for !strings.HasPrefix(fast.Read(), `srvtest/echo:1;`) {
	}
}

// Graceful stop sends what is queued, then closes every WebSocket with 1001.
func TestGracefulStop(t *testing.T) {
	s := start(t, nil)
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	c.Send(`srvtest/flood;{}`) // 200 pushes queued at once
	c.Send(`srvtest/echo:1;{}`)
	waitFor(t, "the pushes and the reply queued", func() bool { return s.Status().Pushes >= 201 })
	done := make(chan error)
	go func() { done <- s.Shutdown(context.Background()) }()
	got := 0
	code := 0
	for {
		msg, err := c.ReadErr(servertest.Timeout)
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			break
		}
		if strings.HasPrefix(msg, "n;") {
			got++
		}
	}
	if got != 200 || code != websocket.CloseGoingAway {
		t.Errorf("got %d of 200 queued pushes and close %d; want all and 1001", got, code)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", s.HTTPAddrs()[0], time.Second); err == nil {
		t.Error("still accepting after shutdown")
	}
}

// Write coalescing: an idle connection is written at once; what comes
// within write_coalesce of that write waits for the gap and travels as one
// merged frame; a stop does not wait for the gap.
func TestWriteCoalescing(t *testing.T) {
	const gap = time.Second
	s := start(t, func(c *config.Config) { c.Websocket.WriteCoalesce = gap })
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	c.Send(`srvtest/merge;[1]`)
	c.Expect(`list;[1]`)
	first := time.Now()
	fd := s.Hub().Conns()[0].FD()
	waitFor(t, "the writer to end", func() bool { w, _ := s.Hub().WriterState(fd); return !w }) // the next message starts a new write
	c.Send(`srvtest/merge;[2]`)
	c.Send(`srvtest/merge;[3]`)
	c.Expect(`list;[2,3]`)
	if waited := time.Since(first); waited < gap*8/10 {
		t.Errorf("second write %v after the first; want it held for write_coalesce (%v)", waited, gap)
	}
	waitFor(t, "the writer to end", func() bool { w, _ := s.Hub().WriterState(fd); return !w })
	c.Send(`srvtest/merge;[4]`) // held for the gap again
	waitFor(t, "the message held for the gap", func() bool { _, d := s.Hub().WriterState(fd); return d })
	stopAt := time.Now()
	go func() { _ = s.Shutdown(context.Background()) }()
	c.Expect(`list;[4]`)
	if code := c.CloseCode(); code != websocket.CloseGoingAway {
		t.Errorf("close %d; want 1001", code)
	}
	if took := time.Since(stopAt); took >= gap*8/10 {
		t.Errorf("the held message and the close came %v after the stop; a stop should not wait for the gap", took)
	}
}

func TestHooksAndSessions(t *testing.T) {
	recorded.mu.Lock()
	recorded.opened, recorded.closed, recorded.started = nil, nil, false
	recorded.mu.Unlock()
	s := start(t, func(c *config.Config) { c.Websocket.Service = "SrvtestServer" })
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	c.Send(`srvtest/login:1;{}`)
	c.ExpectPrefix(`srvtest/login:1;`)
	fd := s.Hub().Conns()[0].FD()
	if m := s.Hub().Sessions().MemberConns(42); len(m) != 1 || m[0] != fd {
		t.Errorf("MemberConns(42) = %v; want [%d]", m, fd)
	}
	c.Conn.Close()
	deadline := time.Now().Add(servertest.Timeout)
	for time.Now().Before(deadline) {
		recorded.mu.Lock()
		n := len(recorded.closed)
		recorded.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	recorded.mu.Lock()
	defer recorded.mu.Unlock()
	if !recorded.started || len(recorded.opened) != 1 {
		t.Errorf("before start %v, opened %v", recorded.started, recorded.opened)
	}
	if len(recorded.closed) != 1 || recorded.closed[0] != fmt.Sprint(fd, " 42") {
		t.Errorf("OnClose saw %v; want [%d 42]: the session mapping still present", recorded.closed, fd)
	}
	if got := s.Hub().Sessions().Online(); len(got) != 0 {
		t.Errorf("Online after close = %v", got)
	}
}

func TestCustomCodec(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Websocket.Service = "SrvtestCodecServer" })
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	if err := c.Conn.WriteMessage(websocket.BinaryMessage, []byte("srvtest/echo\x00{\"bin\":true}")); err != nil {
		t.Fatal(err)
	}
	c.Expect(`srvtest/echo:1;{"data":{"echo":{"bin":true},"transport":"websocket"}}`)
}

// TestSeveralServerTypes: websocket.service may name several server types
// (of one project or of several); each one's hooks run, and the codec is
// the first one given.
func TestSeveralServerTypes(t *testing.T) {
	recorded.mu.Lock()
	recorded.opened, recorded.closed, recorded.started = nil, nil, false
	recorded.mu.Unlock()
	s := start(t, func(c *config.Config) { c.Websocket.Service = "SrvtestServer, SrvtestCodecServer" })
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	if err := c.Conn.WriteMessage(websocket.BinaryMessage, []byte("srvtest/echo\x00{\"bin\":true}")); err != nil {
		t.Fatal(err)
	}
	c.Expect(`srvtest/echo:1;{"data":{"echo":{"bin":true},"transport":"websocket"}}`)
	recorded.mu.Lock()
	defer recorded.mu.Unlock()
	if !recorded.started || len(recorded.opened) != 1 {
		t.Errorf("SrvtestServer's hooks: before start %v, opened %v", recorded.started, recorded.opened)
	}
}

// TestBrokenProjectStopsStart: a project whose constructor fails stops
// server.New with the project's name, before anything listens.
func TestBrokenProjectStopsStart(t *testing.T) {
	r := root(t)
	projects := []string{"srvtest", "srvbroken"}
	cfg, err := config.Load(config.Source{Root: r, Projects: projects, Env: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = server.New(server.Options{Root: r, Projects: projects, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "project srvbroken: no such table: members") {
		t.Fatalf("server.New = %v; want the project's name and its error", err)
	}
}

func TestRateLimit(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Websocket.RateLimit = 1; c.Websocket.RateBurst = 5 })
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	began := time.Now()
	for i := 0; i < 30; i++ {
		c.Send(fmt.Sprintf(`srvtest/echo:%d;{}`, i))
	}
	ok, limited := 0, 0
	for {
		msg, err := c.ReadErr(servertest.Timeout)
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
				t.Errorf("ended with %v; want close 1008", err)
			}
			break
		}
		switch {
		case strings.Contains(msg, `"code":429`):
			limited++
		case strings.Contains(msg, `"data"`):
			ok++
		}
	}
	// The burst of 5, and one more per second (1/s) while the frames came in.
	if most := 5 + int(time.Since(began).Seconds()+1); ok < 5 || ok > most || limited == 0 || ok+limited > 30 {
		t.Errorf("%d answered, %d limited; want the burst of 5 (at most %d with refills) answered, then 429s", ok, limited, most)
	}
}

func TestMaxConnections(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Websocket.MaxConnections = 2 })
	addr := s.HTTPAddrs()[0]
	servertest.DialWS(t, addr)
	servertest.DialWS(t, addr)
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("third connection: %v %v; want 503 before the upgrade", err, resp)
	}
	tc, err := net.Dial("tcp", servertest.Sock(t, s, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	b, _ := io.ReadAll(tc)
	if !strings.Contains(string(b), `"code":503`) {
		t.Errorf("TCP over the limit got %q; want a 503 line and a close", b)
	}
}

// TestHandshakesAreBounded: connections accepted on the WebSocket port but
// not yet answered hold files too. Past max_connections plus a bounded room
// for them, the listener answers 503 itself, so a flood of peers that never
// send their request cannot run the server out of files; once they go,
// pages load again.
func TestHandshakesAreBounded(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Websocket.MaxConnections = 2 })
	addr := s.HTTPAddrs()[0]
	var idle []net.Conn
	for range 40 { // more than max_connections + the room for handshakes
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	page := func() (int, string) {
		resp, err := http.Get("http://" + addr + "/static/hello.txt")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var code int
	var body string
	waitFor(t, "a page refused while the silent peers hold the room", func() bool {
		code, body = page()
		return code == http.StatusServiceUnavailable
	})
	if body != "too many connections\n" {
		t.Errorf("refusal body %q", body)
	}
	if s.Status().Refused == 0 {
		t.Error("the refusal is not counted in status")
	}
	for _, c := range idle {
		c.Close()
	}
	waitFor(t, "the page served once the peers left", func() bool {
		code, body = page()
		return code == http.StatusOK && body == "static hello"
	})
}

func TestKeepaliveDropsSilentClient(t *testing.T) {
	s := start(t, func(c *config.Config) {
		c.Websocket.PingInterval = 500 * time.Millisecond
		c.Websocket.PongTimeout = time.Second
	})
	// A raw TCP connection that upgrades and then never answers a ping.
	nc, err := net.Dial("tcp", s.HTTPAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	live := servertest.DialWS(t, s.HTTPAddrs()[0]) // answers pings: its reader runs
	go func() {
		for {
			if _, _, err := live.Conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	// The silent one has upgraded: it reads its 101 response.
	br := bufio.NewReader(nc)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("silent client's upgrade: %v %v", resp, err)
	}
	waitFor(t, "both connected", func() bool { return s.Status().Connections["websocket"] == 2 })
	waitFor(t, "the silent client dropped", func() bool { return s.Status().Connections["websocket"] == 1 })
	// The one dropped is the silent one: its socket ends, the live one answers.
	_ = nc.SetReadDeadline(time.Now().Add(servertest.Timeout))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Errorf("the silent client's socket: %v; want it closed by the server", err)
	}
	live.Send(`srvtest/echo:1;{}`) // its reader above discards the answer; the write must succeed
	waitFor(t, "the live client's request", func() bool { return s.Status().Requests >= 1 })
}

// waitFor polls cond until it holds, failing the test after servertest.Timeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * servertest.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReloadKeepsConnections(t *testing.T) {
	r := root(t)
	s := servertest.Start(t, r, []string{"srvtest"}, nil)
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	c.Send(`srvtest/added:1;{}`)
	c.ExpectPrefix(`srvtest/added:1;{"status":false,"code":404`)
	f := filepath.Join(r, "project/srvtest/config/nodes.yaml")
	b, _ := os.ReadFile(f)
	if err := os.WriteFile(f, append(b, "- path: added\n  methods: [websocket]\n  extra: {new: true}\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	c.Send(`srvtest/added:2;{}`)
	c.Expect(`srvtest/added:2;{"data":{"new":true}}`)
	// A broken node file is refused and the old nodes stay.
	if err := os.WriteFile(f, []byte("- path: x\n  controller: Nope->y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err == nil {
		t.Error("reload with an unresolved controller succeeded")
	}
	c.Send(`srvtest/added:3;{}`)
	c.Expect(`srvtest/added:3;{"data":{"new":true}}`)
}

func TestControlSocket(t *testing.T) {
	s := start(t, nil)
	dir := t.TempDir()
	if err := s.ListenControl(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, server.SocketFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v, %v; want 0600", st.Mode(), err)
	}
	out, err := server.Control(dir, "status")
	if err != nil || !strings.Contains(out, `"connections"`) || !strings.Contains(out, `"goroutines"`) {
		t.Errorf("status = %q, %v", out, err)
	}
	if _, err := server.Control(dir, "dance"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v", err)
	}
	if err := s.ListenControl(dir); !errors.Is(err, server.ErrRunning) {
		t.Errorf("second ListenControl = %v; want ErrRunning", err)
	}
	if _, err := server.Control(t.TempDir(), "status"); !errors.Is(err, server.ErrNotRunning) {
		t.Errorf("Control with nothing running = %v; want ErrNotRunning", err)
	}
	if out, err := server.Control(dir, "stop"); err != nil || !strings.Contains(out, "stopping") {
		t.Errorf("stop = %q, %v", out, err)
	}
	select {
	case <-s.Done():
	case <-time.After(servertest.Timeout):
		t.Fatal("server did not stop")
	}
}

func TestAPI(t *testing.T) {
	s := start(t, func(c *config.Config) {
		c.Websocket.APIHost, c.Websocket.APIPassword = "127.0.0.1", "s3cret"
		c.Websocket.APIPort = servertest.FreePort(t)
	})
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	c.Send(`:1;`)
	c.ExpectPrefix(`:1;`)
	post := func(password, body string) int {
		req, _ := http.NewRequest("POST", "http://"+s.APIAddr()+"/push", strings.NewReader(body))
		if password != "" {
			req.Header.Set("Authorization", "Bearer "+password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("", `{"all":true,"path":"x","data":1}`); code != 401 {
		t.Errorf("no password: %d; want 401", code)
	}
	if code := post("s3cret0", `{"all":true,"path":"x","data":1}`); code != 401 {
		t.Errorf("wrong password: %d; want 401", code)
	}
	if code := post("s3cret", `{"all":true,"path":"news","data":{"n":1}}`); code != 200 {
		t.Errorf("right password: %d; want 200", code)
	}
	c.Expect(`news;{"n":1}`)
}

// TestStopFinishesHTTPRequests: a stop waits (within shutdown_timeout) for
// an HTTP request in flight instead of cutting it, and accepts no new one.
func TestStopFinishesHTTPRequests(t *testing.T) {
	s := start(t, nil)
	addr := s.HTTPAddrs()[0]
	type result struct {
		code int
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/srvtest/hold")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- result{code: resp.StatusCode, body: string(b)}
	}()
	<-holdEntered
	stopped := make(chan error, 1)
	go func() { stopped <- s.Shutdown(context.Background()) }()
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	holdRelease <- struct{}{}
	r := <-got
	if r.err != nil || r.code != 200 || !strings.Contains(r.body, `"held":true`) {
		t.Errorf("request in flight during stop: %d %q %v; want it answered", r.code, r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestReloadReachesOpenConnections: a reload's rate and frame limits apply
// to connections that were open before it, not only to new ones.
func TestReloadReachesOpenConnections(t *testing.T) {
	r := root(t)
	s := servertest.Start(t, r, []string{"srvtest"}, nil)
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	big := `srvtest/echo:1;{"pad":"` + strings.Repeat("x", 2000) + `"}`
	c.Send(big)
	c.ExpectPrefix(`srvtest/echo:1;{"data"`)
	f := filepath.Join(r, "common/config/websocket.yaml")
	b, _ := os.ReadFile(f)
	cfg := strings.Replace(string(b), "websocket: {", "websocket: {rate_limit: 1, rate_burst: 2, max_frame_bytes: 1024, ", 1)
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 6; i++ {
		c.Send(fmt.Sprintf(`srvtest/echo:%d;{}`, i))
	}
	c.ExpectPrefix(`srvtest/echo:2;{"data"`)
	c.ExpectPrefix(`srvtest/echo:3;{"data"`)
	c.ExpectPrefix(`srvtest/echo:4;{"status":false,"code":429`)
	c.Send(big)
	for {
		if _, err := c.ReadErr(servertest.Timeout); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
				t.Errorf("a frame over the reloaded limit: %v; want close 1009", err)
			}
			break
		}
	}
}

// TestRateLimitInPushMode: a message without ID over the rate still gets a
// 429 on its path (a deliberate exception to "push mode sends nothing":
// a flooding client must learn why it is ignored and then closed).
func TestRateLimitInPushMode(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Websocket.RateLimit = 1; c.Websocket.RateBurst = 1 })
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	c.Send(`srvtest/echo;{}`) // push mode: no reply
	c.Send(`srvtest/echo;{}`) // over the rate
	c.Expect(`srvtest/echo;{"status":false,"code":429,"message":"too many messages: slow down"}`)
}

// dialFrom opens a WebSocket from a chosen loopback source address.
func dialFrom(src, addr string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: servertest.Timeout, NetDial: func(network, a string) (net.Conn, error) {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return nd.Dial(network, a)
	}}
	return d.Dial("ws://"+addr+"/", nil)
}

// TestPerAddressLimits: one source address cannot hold more than its share
// (503 before the upgrade, a 503 line on TCP) while another still connects;
// connecting too fast from one address is refused with 429; loopback can be
// exempt.
func TestPerAddressLimits(t *testing.T) {
	s := start(t, func(c *config.Config) {
		c.Websocket.MaxConnsPerIP, c.Websocket.ConnectRate, c.Websocket.PerIPExempt = 3, 0, nil
	})
	addr := s.HTTPAddrs()[0]
	for i := 0; i < 3; i++ {
		c, _, err := dialFrom("127.0.0.2", addr)
		if err != nil {
			t.Fatalf("connection %d from 127.0.0.2: %v", i+1, err)
		}
		defer c.Close()
	}
	_, resp, err := dialFrom("127.0.0.2", addr)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a fourth connection from 127.0.0.2: %v %v; want 503 before the upgrade", err, resp)
	}
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	tc, err := nd.Dial("tcp", servertest.Sock(t, s, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetReadDeadline(time.Now().Add(servertest.Timeout))
	if b, _ := io.ReadAll(tc); !strings.Contains(string(b), `"code":503`) || !strings.Contains(string(b), "your address") {
		t.Errorf("TCP from the full address got %q; want a 503 line", b)
	}
	other, _, err := dialFrom("127.0.0.3", addr)
	if err != nil {
		t.Fatalf("another address is refused too: %v", err)
	}
	other.Close()

	// The rate of new connections per address.
	r := start(t, func(c *config.Config) {
		c.Websocket.MaxConnsPerIP, c.Websocket.ConnectRate, c.Websocket.PerIPExempt = 0, 2, nil
	})
	refused := 0
	for i := 0; i < 10; i++ {
		c, resp, err := dialFrom("127.0.0.4", r.HTTPAddrs()[0])
		if err == nil {
			c.Close()
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("connection %d: %v %v; want success or 429", i, err, resp)
		}
		refused++
	}
	if refused < 4 {
		t.Errorf("%d of 10 quick connections refused at 2 per second (burst 4); want at least 4", refused)
	}
	// Loopback exempt (the default): many connections from one address.
	e := start(t, func(c *config.Config) { c.Websocket.MaxConnsPerIP, c.Websocket.ConnectRate = 1, 1 })
	for i := 0; i < 5; i++ {
		c, _, err := dialFrom("127.0.0.5", e.HTTPAddrs()[0])
		if err != nil {
			t.Fatalf("exempt loopback refused at %d: %v", i, err)
		}
		defer c.Close()
	}
}

// TestAPIFromFiles: an API configured in the files gets a free loopback
// port from servertest (port 0 would turn it off).
func TestAPIFromFiles(t *testing.T) {
	r := root(t)
	servertest.WriteFiles(t, r, map[string]string{"common/config/config.yaml": "websocket: {api_port: 20465, api_password: pw}\n"})
	s := servertest.Start(t, r, []string{"srvtest"}, nil)
	if s.APIAddr() == "" {
		t.Fatal("the API configured in the files is off")
	}
	req, _ := http.NewRequest("GET", "http://"+s.APIAddr()+"/status", nil)
	req.Header.Set("Authorization", "Bearer pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("API status: %d", resp.StatusCode)
	}
}
