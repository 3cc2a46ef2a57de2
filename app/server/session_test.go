package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"dce/app/config"
	"dce/app/redistest"
	"dce/app/servertest"
	"dce/app/session"
	"dce/app/wait"
)

// whoami asks the server which session and member the client has.
func whoami(t *testing.T, c *servertest.WS) (sid string, member int64) {
	t.Helper()
	c.Send(`srvtest/whoami:9;{}`)
	msg := c.Read()
	for !strings.HasPrefix(msg, "srvtest/whoami:9;") {
		msg = c.Read()
	}
	var r struct {
		Data struct {
			Sid    string `json:"sid"`
			Member int64  `json:"member"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(msg, "srvtest/whoami:9;")), &r); err != nil {
		t.Fatal(err)
	}
	return r.Data.Sid, r.Data.Member
}

func cookie(sid string) http.Header { return http.Header{"Cookie": {"dcesid=" + sid}} }

func login(t *testing.T, c *servertest.WS) {
	t.Helper()
	c.Send(`srvtest/login:1;{}`)
	if got := c.Read(); got != `srvtest/login:1;{}` {
		t.Fatalf("login: %s", got)
	}
}

// TestSessionIDs: SPEC §9's ids on every transport. A WebSocket presenting
// the cookie (or the query parameter) joins that session — a second tab
// and a reconnect are logged in at once; one without, or with a malformed
// id, gets a session of its own; TCP always does.
func TestSessionIDs(t *testing.T) {
	s := start(t, nil)
	addr := s.HTTPAddrs()[0]
	sid := session.NewID()
	tab1 := servertest.DialWS(t, addr, cookie(sid))
	if got, _ := whoami(t, tab1); got != sid {
		t.Fatalf("session %q; want the cookie's", got)
	}
	login(t, tab1)
	tab2 := servertest.DialWS(t, addr, cookie(sid))
	if _, m := whoami(t, tab2); m != 42 {
		t.Errorf("second tab: member %d; want 42", m)
	}
	byQuery := servertest.DialWSPath(t, addr, "/?dcesid="+sid)
	if _, m := whoami(t, byQuery); m != 42 {
		t.Errorf("query parameter: member %d; want 42", m)
	}
	tab1.Conn.Close()
	tab2.Conn.Close()
	again := servertest.DialWS(t, addr, cookie(sid))
	if _, m := whoami(t, again); m != 42 {
		t.Errorf("reconnect: member %d; want 42", m)
	}
	for _, bad := range []string{"nope", strings.ToUpper(sid), sid + "0", "../" + sid[3:]} {
		c := servertest.DialWS(t, addr, cookie(bad))
		got, m := whoami(t, c)
		if got == bad || !session.ValidID(got) || m != 0 {
			t.Errorf("cookie %q: session %q member %d; want a new valid id, not logged in", bad, got, m)
		}
	}
	tc := servertest.DialTCP(t, servertest.Sock(t, s, "tcp"))
	tc.Send(`srvtest/whoami:1;{}`)
	got := tc.Read()
	if !strings.Contains(got, `"sid":"`) || strings.Contains(got, sid) {
		t.Errorf("TCP: %s; want a session of its own", got)
	}
}

// TestHTTPSession: X-Session-Id, then the cookie; with session.auto_open a
// page request without one gets the cookie of SPEC §9.
func TestHTTPSession(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Session.AutoOpen = true })
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	base := "http://" + s.HTTPAddrs()[0] + "/srvtest/whoami"
	sid := session.NewID()
	get := func(h http.Header) (string, *http.Response) {
		req, _ := http.NewRequest("GET", base, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Data struct{ Sid string } `json:"data"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return r.Data.Sid, resp
	}
	if got, resp := get(http.Header{"X-Session-Id": {sid}, "Cookie": {"dcesid=" + session.NewID()}}); got != sid || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("header: session %q, Set-Cookie %q; want the header's, none", got, resp.Header.Get("Set-Cookie"))
	}
	if got, _ := get(cookie(sid)); got != sid {
		t.Errorf("cookie: session %q", got)
	}
	got, resp := get(nil)
	want := "dcesid=" + got + "; Path=/; HttpOnly; SameSite=Lax"
	if !session.ValidID(got) || resp.Header.Get("Set-Cookie") != want {
		t.Errorf("auto_open: session %q, Set-Cookie %q; want %q", got, resp.Header.Get("Set-Cookie"), want)
	}
}

// TestRenewOverHTTP: an HTTP action renews the request's session and sets
// the new cookie; the session's data moved with it. Over WebSocket there
// is no cookie to set: the action says so.
func TestRenewOverHTTP(t *testing.T) {
	s := start(t, nil)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	old := session.NewID()
	if err := s.Hub().Sessions().Set(old, "cart", 3); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+s.HTTPAddrs()[0]+"/srvtest/renew", nil)
	req.Header.Set("Cookie", "dcesid="+old)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Data struct{ Sid string } `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	want := "dcesid=" + r.Data.Sid + "; Path=/; HttpOnly; SameSite=Lax"
	if !session.ValidID(r.Data.Sid) || r.Data.Sid == old || resp.Header.Get("Set-Cookie") != want {
		t.Fatalf("renew: sid %q, Set-Cookie %q; want a new id and %q", r.Data.Sid, resp.Header.Get("Set-Cookie"), want)
	}
	var cart int
	if ok, _ := s.Hub().Sessions().Get(r.Data.Sid, "cart", &cart); !ok || cart != 3 {
		t.Errorf("the data did not move to the new id: %d %v", cart, ok)
	}
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	c.Send(`srvtest/renew:1;{}`)
	if got := c.Read(); !strings.Contains(got, "cookies travel on HTTP responses only") {
		t.Errorf("renew over WebSocket: %s", got)
	}
}

// TestFileSessionsSurviveRestart: with session.store file, a logged-in
// session is still logged in after the server is stopped and started again.
func TestFileSessionsSurviveRestart(t *testing.T) {
	r := root(t)
	file := func(c *config.Config) { c.Session.Store = "file" }
	s := servertest.Start(t, r, []string{"srvtest"}, file)
	sid := session.NewID()
	login(t, servertest.DialWS(t, s.HTTPAddrs()[0], cookie(sid)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s = servertest.Start(t, r, []string{"srvtest"}, file)
	if _, m := whoami(t, servertest.DialWS(t, s.HTTPAddrs()[0], cookie(sid))); m != 42 {
		t.Errorf("after the restart: member %d; want 42", m)
	}
}

// TestRedisLostWhileRunning: a private Redis stops under a server on the
// redis store: a request that needs it is answered 503, the connection
// stays and keeps working; when Redis is back, logins work again.
func TestRedisLostWhileRunning(t *testing.T) {
	redis := redistest.Start(t)
	s := start(t, func(c *config.Config) {
		c.Session.Store = "redis"
		c.Redis.URL = redis.URL()
		c.Websocket.Metrics = "on"
	})
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	// A presented session keeps its login in Redis (a connection's own
	// session does not need the store: the chat logs in during an outage).
	c := servertest.DialWS(t, s.HTTPAddrs()[0], cookie(session.NewID()))
	login(t, c)

	redis.Stop()
	c.Send(`srvtest/login:2;{}`)
	if got := c.Read(); !strings.Contains(got, `"code":503`) {
		t.Errorf("login during the outage: %s; want a 503 reply", got)
	}
	c.Send(`srvtest/echo:3;{}`)
	c.ExpectPrefix(`srvtest/echo:3;`)
	if code, body := scrape(t, "http://"+s.MetricsAddr()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the outage: %d %q; want 503", code, body)
	}
	if _, body := scrape(t, "http://"+s.MetricsAddr()+"/metrics"); !strings.Contains(body, "dce_session_store_up 0") || strings.Contains(body, "dce_redis_errors_total 0") {
		t.Errorf("/metrics during the outage lacks the store down and its errors")
	}

	redis.Restart()
	var got string
	if !wait.Until(15*time.Second, func() bool {
		c.Send(`srvtest/login:4;{}`)
		got = c.Read()
		return got == `srvtest/login:4;{}`
	}) {
		t.Fatalf("login after Redis came back: %s", got)
	}
}
