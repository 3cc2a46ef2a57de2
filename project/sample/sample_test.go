package sample_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"dce/app/config"
	"dce/app/server"
	"dce/app/servertest"
	_ "dce/project/sample/controller"
)

// root is the application root: the real project/sample and common/config.
const root = "../.."

var timeRe = regexp.MustCompile(`"create_time":"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"`)

// norm replaces message times, checked for their format, with T.
func norm(frame string) string { return timeRe.ReplaceAllString(frame, `"create_time":"T"`) }

func startChat(t *testing.T, env map[string]string, mutate ...func(*config.Config)) *server.Server {
	return servertest.StartEnv(t, root, []string{"hello", "sample"}, env, func(c *config.Config) {
		chatOnly(c)
		c.Websocket.RateLimit = 0
		for _, m := range mutate {
			m(c)
		}
	})
}

// chatOnly runs the chat's server type alone: these tests load the chat
// project without the session sample (project/session has its own).
func chatOnly(c *config.Config) { c.Websocket.Service = "ImWebsocketServer" }

type client interface {
	Send(string)
	Read() string
}

func expect(t *testing.T, who string, c client, want string) {
	t.Helper()
	if got := norm(c.Read()); got != want {
		t.Fatalf("%s got\n  %s\nwant\n  %s", who, got, want)
	}
}

// skipTo reads frames until one starts with prefix (replies may come
// before the pushes of a coalesced login).
func skipTo(t *testing.T, c client, prefix string) string {
	t.Helper()
	for i := 0; i < 20; i++ {
		if f := c.Read(); strings.HasPrefix(f, prefix) {
			return f
		}
	}
	t.Fatalf("no frame starting with %s", prefix)
	return ""
}

// collect reads frames until one starting with each prefix has come, in
// any order (a reply and the pushes of a login may interleave).
func collect(t *testing.T, c client, prefixes ...string) {
	t.Helper()
	seen := map[string]bool{}
	for i := 0; i < 20 && len(seen) < len(prefixes); i++ {
		f := c.Read()
		for _, p := range prefixes {
			if strings.HasPrefix(f, p) {
				seen[p] = true
			}
		}
	}
	if len(seen) < len(prefixes) {
		t.Fatalf("saw %v of %v", seen, prefixes)
	}
}

// fd waits for the n-th connection (from 1) and returns its number.
func fd(t *testing.T, s *server.Server, n int) uint64 {
	t.Helper()
	deadline := time.Now().Add(servertest.Timeout)
	for time.Now().Before(deadline) {
		if conns := s.Hub().Conns(); len(conns) >= n {
			return conns[n-1].FD()
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no connection %d", n)
	return 0
}

func user(id uint64, nick, brief string) string {
	return fmt.Sprintf(`{"id":%d,"nickname":%q,"brief":%q}`, id, nick, brief)
}

func list(entries ...string) string { return "setUserList;[" + strings.Join(entries, ",") + "]" }

func msg(id int, mid uint64, text, nick string) string {
	return fmt.Sprintf(`{"id":%d,"mid":%d,"message":%q,"create_time":"T","nickname":%q}`, id, mid, text, nick)
}

// TestOriginalPageFrames replays exactly what the original page sent (no
// request IDs, `sample/im/logout;undefined` included) and checks every push
// in order.
func TestOriginalPageFrames(t *testing.T) {
	s := startChat(t, nil)
	addr := s.HTTPAddrs()[0]
	drunk := servertest.DialWS(t, addr)
	drunk.Send(`sample/im/login;{"nickname":"Drunk","brief":"Never drink but always Drunk ~"}`)
	d := fd(t, s, 1)
	uDrunk := user(d, "Drunk", "Never drink but always Drunk ~")
	expect(t, "Drunk", drunk, list(uDrunk))
	expect(t, "Drunk", drunk, "setMessageList;[]")

	alice := servertest.DialWS(t, s.HTTPAddrs()[1]) // the extra port serves the same chat
	alice.Send(`sample/im/login;{"nickname":"Alice","brief":"Curious"}`)
	a := fd(t, s, 2)
	uAlice := user(a, "Alice", "Curious")
	expect(t, "Alice", alice, list(uDrunk, uAlice))
	expect(t, "Alice", alice, "setMessageList;[]")
	expect(t, "Drunk", drunk, list(uDrunk, uAlice))

	drunk.Send(`sample/im/send;{"message":"hi <img src=x onerror=alert(1)>"}`)
	m1 := "setMessageList;[" + msg(1, d, "hi <img src=x onerror=alert(1)>", "Drunk") + "]"
	expect(t, "Drunk", drunk, m1) // the sender included
	expect(t, "Alice", alice, m1)

	alice.Send(`sample/im/logout;undefined`)
	expect(t, "Drunk", drunk, list(uDrunk))

	// Logging in again with a known nickname keeps its id and stored brief.
	alice.Send(`sample/im/login;{"nickname":"Alice","brief":"Changed"}`)
	expect(t, "Alice", alice, list(uDrunk, uAlice))
	expect(t, "Alice", alice, "setMessageList;["+msg(1, d, "hi <img src=x onerror=alert(1)>", "Drunk")+"]")
	expect(t, "Drunk", drunk, list(uDrunk, uAlice))

	// Closing the connection takes Alice out of the list.
	alice.Conn.Close()
	expect(t, "Drunk", drunk, list(uDrunk))

	// A second connection of the same member: still one entry.
	drunk2 := servertest.DialWS(t, addr)
	drunk2.Send(`sample/im/login;{"nickname":"Drunk","brief":"ignored"}`)
	expect(t, "Drunk2", drunk2, list(uDrunk))
	expect(t, "Drunk2", drunk2, "setMessageList;["+msg(1, d, "hi <img src=x onerror=alert(1)>", "Drunk")+"]")
	expect(t, "Drunk", drunk, list(uDrunk))
	drunk2.Send(`sample/im/send;{"message":"from my phone"}`)
	m2 := "setMessageList;[" + msg(2, d, "from my phone", "Drunk") + "]"
	expect(t, "Drunk", drunk, m2)
	expect(t, "Drunk2", drunk2, m2)
}

// TestTCPAndWebSocketChat: a terminal user (one line per message) chats
// with a browser user and gets the same pushes.
func TestTCPAndWebSocketChat(t *testing.T) {
	s := startChat(t, nil)
	web := servertest.DialWS(t, s.HTTPAddrs()[0])
	web.Send(`sample/im/login:1;{"nickname":"Web","brief":"browser"}`)
	w := fd(t, s, 1)
	uWeb := user(w, "Web", "browser")
	expect(t, "web", web, list(uWeb))
	expect(t, "web", web, "setMessageList;[]")
	expect(t, "web", web, `sample/im/login:1;{"data":{"brief":"browser","id":`+fmt.Sprint(w)+`,"nickname":"Web"}}`)

	term := servertest.DialTCP(t, servertest.Sock(t, s, "tcp"))
	term.Send(`sample/im/login;{"nickname":"Term","brief":"nc user"}`)
	expect(t, "term", term, list(uWeb, user(w+1, "Term", "nc user")))
	expect(t, "term", term, "setMessageList;[]")
	expect(t, "web", web, list(uWeb, user(w+1, "Term", "nc user")))

	term.Send(`sample/im/send;{"message":"hello from a terminal"}`)
	m := "setMessageList;[" + msg(1, w+1, "hello from a terminal", "Term") + "]"
	expect(t, "term", term, m)
	expect(t, "web", web, m)
	web.Send(`sample/im/send:2;{"message":"hello back"}`)
	m = "setMessageList;[" + msg(2, w, "hello back", "Web") + "]"
	expect(t, "web", web, m)
	expect(t, "web", web, `sample/im/send:2;{"data":{"id":2}}`)
	expect(t, "term", term, m)
	term.Close()
	expect(t, "web", web, list(uWeb))
}

func TestLimitsAndErrors(t *testing.T) {
	s := startChat(t, map[string]string{"DCE_IM_MEMBERS_MAX": "2", "DCE_IM_HISTORY_MAX": "3"})
	addr := s.HTTPAddrs()[0]
	c := servertest.DialWS(t, addr)
	tests := []struct{ send, want string }{
		{`sample/im/send:1;{"message":"hi"}`, `sample/im/send:1;{"status":false,"code":401,"message":"log in first"}`},
		{`sample/im/login:2;{"nickname":"  ","brief":"x"}`, `sample/im/login:2;{"status":false,"code":400,"message":"nickname is required"}`},
		{`sample/im/login:3;undefined`, `sample/im/login:3;{"status":false,"code":400,"message":"nickname is required"}`},
		{`sample/im/login:4;{"nickname":5}`, `sample/im/login:4;{"status":false,"code":400,"message":"nickname: want string, got number"}`},
		{`sample/im/login:5;{"nickname":"` + strings.Repeat("名", 49) + `"}`, `sample/im/login:5;{"status":false,"code":400,"message":"nickname is longer than 48 characters"}`},
		{`sample/im/login:6;{"nickname":"a","brief":"` + strings.Repeat("b", 256) + `"}`, `sample/im/login:6;{"status":false,"code":400,"message":"brief is longer than 255 characters"}`},
	}
	for _, tt := range tests {
		c.Send(tt.send)
		expect(t, "client", c, tt.want)
	}
	c.Send(`sample/im/login:7;{"nickname":"` + strings.Repeat("名", 48) + `"}`) // exactly 48 characters is fine
	collect(t, c, `sample/im/login:7;{"data"`, "setUserList;", "setMessageList;")
	c.Send(`sample/im/send:8;{"message":"` + strings.Repeat("m", 1025) + `"}`)
	expect(t, "client", c, `sample/im/send:8;{"status":false,"code":400,"message":"message is longer than 1024 characters"}`)
	c.Send(`sample/im/send:9;{"message":""}`)
	expect(t, "client", c, `sample/im/send:9;{"status":false,"code":400,"message":"message is empty"}`)

	// members_max: a second member fits, a third is refused.
	b := servertest.DialWS(t, addr)
	b.Send(`sample/im/login:1;{"nickname":"second"}`)
	skipTo(t, b, "setUserList;")
	third := servertest.DialWS(t, addr)
	third.Send(`sample/im/login:1;{"nickname":"third"}`)
	expect(t, "third", third, `sample/im/login:1;{"status":false,"code":400,"message":"the room is full: 2 members are registered (im.members_max)"}`)

	// history_max: the oldest messages make room.
	for i := 1; i <= 5; i++ {
		c.Send(fmt.Sprintf(`sample/im/send;{"message":"m%d"}`, i))
	}
	for !strings.Contains(c.Read(), `"message":"m5"`) { // all five stored
	}
	late := servertest.DialWS(t, addr)
	late.Send(`sample/im/login;{"nickname":"second"}`) // a known member
	late.ExpectPrefix("setUserList;")
	got := norm(late.ExpectPrefix("setMessageList;"))
	if !strings.Contains(got, `"message":"m3"`) || !strings.Contains(got, `"message":"m5"`) || strings.Contains(got, `"message":"m2"`) {
		t.Errorf("history with history_max 3 = %s; want m3..m5", got)
	}
}

// TestUserListCoalesced: many members joining at once cost a few pushes of
// the newest list to a member already in, which has the complete list
// within 100 ms of the last join (a room of 41 members: the interval is
// 50 ms).
func TestUserListCoalesced(t *testing.T) {
	s := startChat(t, nil)
	addr := s.HTTPAddrs()[0]
	watcher := servertest.DialWS(t, addr)
	watcher.Send(`sample/im/login:1;{"nickname":"watcher"}`)
	collect(t, watcher, "setUserList;", "setMessageList;", "sample/im/login:1;")
	const n = 40
	clients := make([]*servertest.WS, n)
	for i := range clients {
		clients[i] = servertest.DialWS(t, addr)
	}
	var lastJoin time.Time
	for i, c := range clients {
		c.Send(fmt.Sprintf(`sample/im/login:1;{"nickname":"joiner%d"}`, i))
		c.ExpectPrefix("setUserList;") // its own list, at once
		lastJoin = time.Now()
	}
	pushes := 0
	for {
		frame := watcher.Read()
		if !strings.HasPrefix(frame, "setUserList;") {
			t.Fatalf("unexpected %s", frame)
		}
		pushes++
		if strings.Count(frame, `"id":`) == n+1 {
			if late := time.Since(lastJoin); late > 100*time.Millisecond {
				t.Errorf("the complete list came %v after the last join; want within 100 ms", late)
			}
			break
		}
	}
	if pushes > n/4 {
		t.Errorf("%d list pushes for %d joins; want them coalesced", pushes, n)
	}
}

// TestNewcomerSeesTheRoomAtOnce: in a room where a burst of joins holds the
// coalesced pushes back, a newcomer still gets its own list and history
// right after its login, before its reply, whatever the interval.
func TestNewcomerSeesTheRoomAtOnce(t *testing.T) {
	s := startChat(t, nil)
	addr := s.HTTPAddrs()[0]
	// 700 members: the whole-list interval is 50 ms, then grows with the room.
	const n = 700
	for i := 0; i < n; i++ {
		c := servertest.DialTCP(t, servertest.Sock(t, s, "tcp"))
		c.Send(fmt.Sprintf(`sample/im/login:1;{"nickname":"m%d","presence":"delta"}`, i))
		c.ExpectPrefix("setUserList;")
	}
	c := servertest.DialWS(t, addr)
	c.Send(`sample/im/send:1;{"message":"x"}`)
	c.ExpectPrefix(`sample/im/send:1;{"status":false,"code":401`)
	c.Send(`sample/im/login:2;{"nickname":"newcomer"}`) // the original protocol: whole lists
	list := c.ExpectPrefix("setUserList;")
	if got := strings.Count(list, `"id":`); got != n+1 {
		t.Errorf("the newcomer's list has %d members; want all %d and itself", got, n)
	}
	c.ExpectPrefix("setMessageList;[]")
	c.ExpectPrefix(`sample/im/login:2;{"data"`)
}

// TestDeltaPresence: a client that asks for deltas gets the whole list once
// (with its login), then only joins and leaves; the original page's
// clients keep getting whole lists, byte for byte.
func TestDeltaPresence(t *testing.T) {
	s := startChat(t, nil)
	addr := s.HTTPAddrs()[0]
	d := servertest.DialWS(t, addr)
	d.Send(`sample/im/login;{"nickname":"Delta","brief":"d","presence":"delta"}`)
	dfd := fd(t, s, 1)
	uDelta := user(dfd, "Delta", "d")
	expect(t, "delta", d, list(uDelta))
	expect(t, "delta", d, "setMessageList;[]")

	o := servertest.DialWS(t, addr)
	o.Send(`sample/im/login;{"nickname":"Orig","brief":"o"}`)
	ofd := fd(t, s, 2)
	uOrig := user(ofd, "Orig", "o")
	expect(t, "orig", o, list(uDelta, uOrig))
	expect(t, "orig", o, "setMessageList;[]")
	expect(t, "delta", d, `updateUserList;{"join":[`+uOrig+`],"leave":[]}`)

	// A second connection of a member already online: no change for the
	// delta client; the original page still gets its list after the login.
	o2 := servertest.DialWS(t, addr)
	o2.Send(`sample/im/login;{"nickname":"Orig"}`)
	expect(t, "orig2", o2, list(uDelta, uOrig))
	expect(t, "orig", o, list(uDelta, uOrig))
	o2.Conn.Close()
	expect(t, "orig", o, list(uDelta, uOrig))
	o.Send(`sample/im/logout;undefined`)
	expect(t, "delta", d, fmt.Sprintf(`updateUserList;{"join":[],"leave":[%d]}`, ofd))

	d.Send(`sample/im/login:9;{"nickname":"x","presence":"sometimes"}`)
	expect(t, "delta", d, `sample/im/login:9;{"status":false,"code":400,"message":"presence: want \"delta\" or \"list\", got \"sometimes\""}`)
}

// TestHistoryPages: "history":N at login sends the last N messages; older
// ones come a page at a time with before_id; the original login (no such
// field) gets the whole history.
func TestHistoryPages(t *testing.T) {
	s := startChat(t, map[string]string{"DCE_IM_HISTORY_MAX": "10"})
	addr := s.HTTPAddrs()[0]
	w := servertest.DialWS(t, addr)
	w.Send(`sample/im/history:1;{"before_id":5}`)
	w.Expect(`sample/im/history:1;{"status":false,"code":401,"message":"log in first"}`)
	w.Send(`sample/im/login:2;{"nickname":"writer","history":3}`)
	collect(t, w, "setUserList;", "setMessageList;[]", "sample/im/login:2;")
	for i := 1; i <= 12; i++ { // ids 1..12; 3..12 kept
		w.Send(fmt.Sprintf(`sample/im/send:%d;{"message":"m%d"}`, 100+i, i))
		skipTo(t, w, fmt.Sprintf("sample/im/send:%d;", 100+i))
	}
	ids := func(frame string) string {
		var out []string
		for _, part := range strings.Split(frame, `{"id":`)[1:] {
			id, _, _ := strings.Cut(part, ",")
			out = append(out, id)
		}
		return strings.Join(out, " ")
	}
	r := servertest.DialWS(t, addr)
	r.Send(`sample/im/login;{"nickname":"reader","history":3}`)
	r.ExpectPrefix("setUserList;")
	if got := ids(r.ExpectPrefix("setMessageList;")); got != "10 11 12" {
		t.Errorf("history 3 at login: ids %s; want 10 11 12", got)
	}
	tests := []struct {
		req, ids string
		more     bool
	}{
		{`{"before_id":10,"limit":4}`, "6 7 8 9", true},
		{`{"before_id":6,"limit":4}`, "3 4 5", false},
		{`{"before_id":4}`, "3", false},
		{`{"before_id":3}`, "", false},
		{`{"before_id":99,"limit":2}`, "11 12", true},
	}
	for i, tt := range tests {
		r.Send(fmt.Sprintf(`sample/im/history:%d;%s`, i+1, tt.req))
		got := r.ExpectPrefix(fmt.Sprintf(`sample/im/history:%d;{"data":`, i+1))
		if ids(got) != tt.ids || strings.Contains(got, `"more":true`) != tt.more {
			t.Errorf("history %s = %s; want ids %q, more %v", tt.req, got, tt.ids, tt.more)
		}
	}
	r.Send(`sample/im/history:9;{"before_id":0}`)
	r.ExpectPrefix(`sample/im/history:9;{"status":false,"code":400`)
	r.Send(`sample/im/history:10;{"before_id":5,"limit":501}`)
	r.ExpectPrefix(`sample/im/history:10;{"status":false,"code":400`)

	whole := servertest.DialWS(t, addr)
	whole.Send(`sample/im/login;{"nickname":"original"}`)
	whole.ExpectPrefix("setUserList;")
	if got := ids(whole.ExpectPrefix("setMessageList;")); got != "3 4 5 6 7 8 9 10 11 12" {
		t.Errorf("the original login's history: ids %s; want all ten kept", got)
	}
}
