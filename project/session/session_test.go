package session_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"dce/app/config"
	"dce/app/redistest"
	"dce/app/server"
	"dce/app/servertest"
	_ "dce/project/sample" // TestCookieScope runs the chat beside
	_ "dce/project/session"
)

// root is the application root: the real project/session and common/config.
const root = "../.."

// start runs the session sample alone, its members and history in memory
// (test processes share the checkout's runtime/ folder; the file store is
// tested by the restart tests, on copies of the checkout).
func start(t *testing.T, mutate ...func(*config.Config)) *server.Server {
	return servertest.StartEnv(t, root, []string{"session"}, map[string]string{"DCE_SESSION_IM_STORE": "memory"}, func(c *config.Config) {
		c.Websocket.Service = "SessionImServer"
		c.Websocket.RateLimit = 0
		for _, m := range mutate {
			m(c)
		}
	})
}

var timeRe = regexp.MustCompile(`"create_time":"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"`)

// norm replaces message times, checked for their format, with T.
func norm(frame string) string { return timeRe.ReplaceAllString(frame, `"create_time":"T"`) }

// newSID is a browser's session cookie value.
func newSID(t testing.TB) string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// page is one browser tab: a WebSocket to /session/ with the session's
// cookie, as the page opens it.
type page struct {
	t    *testing.T
	name string
	ws   *servertest.WS
}

func open(t *testing.T, name, addr, sid string) *page {
	t.Helper()
	h := http.Header{}
	if sid != "" {
		h.Set("Cookie", "dcesid="+sid)
	}
	return &page{t: t, name: name, ws: servertest.DialWSPath(t, addr, "/session/", h)}
}

func (p *page) send(frame string) { p.t.Helper(); p.ws.Send(frame) }

// next reads frames until one starts with prefix (another push may come
// first: an online list, a signer) and returns it with times normalized.
func (p *page) next(prefix string) string {
	p.t.Helper()
	for i := 0; i < 50; i++ {
		if f := p.ws.Read(); strings.HasPrefix(f, prefix) {
			return norm(f)
		}
	}
	p.t.Fatalf("%s: no frame starting with %s", p.name, prefix)
	return ""
}

// expect reads until a frame of want's path and requires it to be want.
func (p *page) expect(want string) {
	p.t.Helper()
	path := want[:strings.Index(want, ";")+1]
	if got := p.next(path); got != want {
		p.t.Fatalf("%s got\n  %s\nwant\n  %s", p.name, got, want)
	}
}

// quiet requires that no frame starting with prefix comes within d. The
// connection cannot be read after it (a read timeout ends a WebSocket).
func (p *page) quiet(prefix string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		f, err := p.ws.ReadErr(time.Until(deadline))
		if err != nil {
			return
		}
		if strings.HasPrefix(f, prefix) {
			p.t.Fatalf("%s got %s; want none", p.name, f)
		}
	}
}

// TestOriginalFrames replays the original page's frames (SPEC §11) and
// checks the pushes byte for byte.
func TestOriginalFrames(t *testing.T) {
	s := start(t)
	addr := s.HTTPAddrs()[0]
	a := open(t, "drunk", addr, newSID(t))
	a.send(`session/im/signer;""`)
	a.expect(`session/im/signer;null`)
	a.expect(`session/im/login;[]`)
	a.send(`session/im/load;{"target_mid":0}`)
	a.expect(`session/im/load;[]`)
	a.send(`session/im/login;{"nickname":"Drunk","brief":"Welcome to Dce"}`)
	a.expect(`session/im/signer;{"mid":1,"nickname":"Drunk","brief":"Welcome to Dce"}`)
	a.expect(`session/im/login;[{"mid":1,"nickname":"Drunk","brief":"Welcome to Dce","loginPlaces":1}]`)
	a.send(`session/im/send;{"target_mid":0,"message":"hi"}`)
	a.expect(`session/im/load;[{"id":1,"mid":1,"target_mid":0,"message":"hi","create_time":"T","nickname":"Drunk"}]`)
	a.send(`session/im/load;{"target_mid":0}`)
	a.expect(`session/im/load;[{"id":1,"mid":1,"target_mid":0,"message":"hi","create_time":"T","nickname":"Drunk"}]`)
	a.send(`session/im/logout;""`)
	a.expect(`session/im/signer;null`)
	a.expect(`session/im/login;[]`)
	// With ids, the same requests get replies.
	a.send(`session/im/login:5;{"nickname":"Drunk","brief":"Welcome to Dce"}`)
	a.expect(`session/im/login:5;{"data":{"brief":"Welcome to Dce","mid":1,"nickname":"Drunk"}}`)
}

// TestSessionRules: a refresh and a second tab are logged in at once;
// another browser is a guest; logout ends that session only; loginPlaces
// counts every logged-in connection; a known nickname keeps its id and
// takes its new brief; the field limits are refused with a 400.
func TestSessionRules(t *testing.T) {
	s := start(t)
	addr := s.HTTPAddrs()[0]
	sid := newSID(t)
	tab1 := open(t, "tab1", addr, sid)
	tab1.send(`session/im/login;{"nickname":"alice","brief":"first"}`)
	tab1.expect(`session/im/signer;{"mid":1,"nickname":"alice","brief":"first"}`)

	tab2 := open(t, "tab2", addr, sid) // a second tab, or the page after a refresh
	tab2.send(`session/im/signer;""`)
	tab2.expect(`session/im/signer;{"mid":1,"nickname":"alice","brief":"first"}`)
	tab2.expect(`session/im/login;[{"mid":1,"nickname":"alice","brief":"first","loginPlaces":2}]`)

	other := open(t, "other browser", addr, newSID(t))
	other.send(`session/im/signer;""`)
	other.expect(`session/im/signer;null`)
	other.next(`session/im/login;`)
	// The same nickname in another browser: the same id, the new brief,
	// three places.
	other.send(`session/im/login;{"nickname":"alice","brief":"second"}`)
	other.expect(`session/im/signer;{"mid":1,"nickname":"alice","brief":"second"}`)
	other.expect(`session/im/login;[{"mid":1,"nickname":"alice","brief":"second","loginPlaces":3}]`)
	for _, p := range []*page{tab1, tab2} { // every connection of the member hears its new brief
		p.expect(`session/im/signer;{"mid":1,"nickname":"alice","brief":"second"}`)
	}

	// Logout ends the first browser's session: both its tabs hear it; the
	// other browser stays logged in.
	tab1.send(`session/im/logout;""`)
	tab1.expect(`session/im/signer;null`)
	tab2.expect(`session/im/signer;null`)
	other.expect(`session/im/login;[{"mid":1,"nickname":"alice","brief":"second","loginPlaces":1}]`)
	other.send(`session/im/signer:1;""`)
	other.expect(`session/im/signer;{"mid":1,"nickname":"alice","brief":"second"}`)
	tab3 := open(t, "refresh after logout", addr, sid)
	tab3.send(`session/im/signer;""`)
	tab3.expect(`session/im/signer;null`)

	for _, bad := range []struct{ frame, want string }{
		{`session/im/login:2;{"nickname":"abcdefghijklmnopq","brief":""}`, `session/im/login:2;{"status":false,"code":400,"message":"nickname is longer than 16 characters"}`},
		{`session/im/login:3;{"nickname":"ok","brief":"` + strings.Repeat("b", 129) + `"}`, `session/im/login:3;{"status":false,"code":400,"message":"brief is longer than 128 characters"}`},
		{`session/im/login:4;{"nickname":"  "}`, `session/im/login:4;{"status":false,"code":400,"message":"nickname is required"}`},
		{`session/im/send:5;{"target_mid":0,"message":"hi"}`, `session/im/send:5;{"status":false,"code":401,"message":"log in first"}`},
		{`session/im/load:6;{"target_mid":1}`, `session/im/load:6;{"status":false,"code":401,"message":"log in first"}`},
	} {
		tab3.send(bad.frame)
		tab3.expect(bad.want)
	}
	// 16 characters (not bytes) are fine.
	tab3.send(`session/im/login:7;{"nickname":"一二三四五六七八九十一二三四五六","brief":""}`)
	if f := tab3.next(`session/im/login:7;`); !strings.Contains(f, `"data"`) {
		t.Fatalf("16 Chinese characters refused: %s", f)
	}
}

// TestPrivateMessages: a private message reaches every connection of both
// members and nobody else; each view's history holds only its own
// messages; after_id returns only newer ones.
func TestPrivateMessages(t *testing.T) {
	s := start(t)
	privateChat(t, s.HTTPAddrs()[0], s.HTTPAddrs()[0])
}

// privateChat runs the private-message rules with alice on addr1 and bob
// and carol on addr2 (one node, or two nodes of a cluster).
func privateChat(t *testing.T, addr1, addr2 string) {
	t.Helper()
	login := func(p *page, nick string) string {
		p.send(`session/im/login:1;{"nickname":"` + nick + `","brief":""}`)
		f := p.next(`session/im/login:1;`)
		return f[strings.Index(f, `"mid":`)+6 : strings.Index(f, `,"nickname"`)]
	}
	aliceSID := newSID(t)
	alice := open(t, "alice", addr1, aliceSID)
	aliceMid := login(alice, "alice")
	alice2 := open(t, "alice's second tab", addr2, aliceSID) // the same session on the other node
	alice2.send(`session/im/signer;""`)
	alice2.next(`session/im/signer;{"mid":` + aliceMid)
	bob := open(t, "bob", addr2, newSID(t))
	bobMid := login(bob, "bob")
	carol := open(t, "carol", addr2, newSID(t))
	login(carol, "carol")

	alice.send(`session/im/send:2;{"target_mid":` + bobMid + `,"message":"psst"}`)
	want := `"mid":` + aliceMid + `,"target_mid":` + bobMid + `,"message":"psst"`
	for _, p := range []*page{alice, alice2, bob} {
		if f := p.next(`session/im/load;`); !strings.Contains(f, want) {
			p.t.Fatalf("%s got %s; want the private message", p.name, f)
		}
	}
	bob.send(`session/im/send;{"target_mid":0,"message":"hello all"}`)
	// carol's next message is the group's: the private one never came.
	if f := carol.next(`session/im/load;`); !strings.Contains(f, `"hello all"`) {
		t.Fatalf("carol got %s; want only the group message", f)
	}
	carol.send(`session/im/load;{"target_mid":` + aliceMid + `}`)
	carol.expect(`session/im/load;[]`)
	carol.send(`session/im/load;{"target_mid":0}`)
	if f := carol.next(`session/im/load;`); strings.Contains(f, "psst") || !strings.Contains(f, "hello all") {
		t.Fatalf("carol's group history: %s", f)
	}
	// The pair's history, from either side, and after_id.
	bob.send(`session/im/send:3;{"target_mid":` + aliceMid + `,"message":"what?"}`)
	f := bob.next(`session/im/send:3;`)
	lastID := f[strings.Index(f, `"id":`)+5 : strings.Index(f, `}}`)]
	bob.send(`session/im/load;{"target_mid":` + aliceMid + `}`)
	for {
		f := bob.next(`session/im/load;`)
		if strings.Contains(f, "psst") {
			if !strings.Contains(f, "what?") || strings.Contains(f, "hello all") {
				t.Fatalf("bob's view with alice: %s", f)
			}
			break
		}
	}
	alice.send(`session/im/load;{"target_mid":` + bobMid + `,"after_id":` + lastID + `}`)
	for {
		f := alice.next(`session/im/load;`)
		if f == `session/im/load;[]` {
			break // after the newest: nothing
		}
		if strings.Contains(f, "psst") && strings.Count(f, `"id"`) > 1 {
			t.Fatalf("after_id %s returned older messages: %s", lastID, f)
		}
	}
}

// TestTCPUser: a terminal user (nc) logs in and chats in the group with a
// browser user; a TCP connection is its own session.
func TestTCPUser(t *testing.T) {
	s := start(t)
	web := open(t, "browser", s.HTTPAddrs()[0], newSID(t))
	web.send(`session/im/login;{"nickname":"web","brief":""}`)
	web.next(`session/im/signer;`)
	nc := servertest.DialTCP(t, servertest.Sock(t, s, "tcp"))
	nc.Send(`session/im/login;{"nickname":"term","brief":"nc"}`)
	nc.ExpectPrefix(`session/im/signer;{"mid":2,"nickname":"term"`)
	nc.Send(`session/im/send;{"target_mid":0,"message":"from a terminal"}`)
	if f := web.next(`session/im/load;`); !strings.Contains(f, `"from a terminal"`) {
		t.Fatal(f)
	}
	web.send(`session/im/send;{"target_mid":0,"message":"from a browser"}`)
	for {
		f := nc.Read()
		if strings.HasPrefix(f, `session/im/load;`) && strings.Contains(f, "from a browser") {
			break
		}
	}
	nc2 := servertest.DialTCP(t, servertest.Sock(t, s, "tcp")) // another connection: another session
	nc2.Send(`session/im/signer;""`)
	nc2.Expect(`session/im/signer;null`)
}

// TestCookieScope: the chat sample at / and this one run in one server;
// the session cookie is scoped to /session/, so the chat's connections
// never carry it (their logins stay per connection) and / sets none.
func TestCookieScope(t *testing.T) {
	s := servertest.StartEnv(t, root, []string{"sample", "session"}, map[string]string{"DCE_SESSION_IM_STORE": "memory"}, nil)
	res, err := http.Get("http://" + s.HTTPAddrs()[0] + "/session/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	c := res.Header.Get("Set-Cookie")
	if !strings.HasPrefix(c, "dcesid=") || !strings.Contains(c, "Path=/session/") || !strings.Contains(c, "HttpOnly") {
		t.Fatalf("GET /session/ Set-Cookie %q; want dcesid scoped to /session/", c)
	}
	res, err = http.Get("http://" + s.HTTPAddrs()[0] + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if c := res.Header.Get("Set-Cookie"); c != "" || res.StatusCode != 200 {
		t.Errorf("GET / (the chat page): %d, Set-Cookie %q; want the page and no cookie outside /session/", res.StatusCode, c)
	}
}

// TestTwoNodes: two servers of a cluster on one Redis (a private one).
// The same cookie is logged in on the other node at once; a private
// message between members on different nodes reaches both and nobody
// else; the online list is the cluster's, with places on both nodes.
func TestTwoNodes(t *testing.T) {
	redis := redistest.Start(t)
	cluster := func(c *config.Config) {
		c.Cluster.Redis = redis.URL()
		c.Cluster.DeadAfter = 3 * time.Second
	}
	node := func(name string) *server.Server {
		return start(t, cluster, func(c *config.Config) { c.Cluster.Node = name })
	}
	a, b := node("a"), node("b")
	privateChat(t, a.HTTPAddrs()[0], b.HTTPAddrs()[0])

	// One list: dave on node a, twice on node b in another browser.
	dave := open(t, "dave", a.HTTPAddrs()[0], newSID(t))
	dave.send(`session/im/login;{"nickname":"dave","brief":""}`)
	dave2 := open(t, "dave elsewhere", b.HTTPAddrs()[0], newSID(t))
	dave2.send(`session/im/login;{"nickname":"dave","brief":""}`)
	for {
		if f := dave.next(`session/im/login;`); strings.Contains(f, `"nickname":"dave","brief":"","loginPlaces":2`) {
			break
		}
	}
}

// TestBesideTheChat: the chat sample and this one in one server, sharing
// its session manager. Neither's pushes reach the other's connections,
// their member ids never meet, and a chat connection that closes does not
// log out a session of this sample.
func TestBesideTheChat(t *testing.T) {
	s := servertest.StartEnv(t, root, []string{"sample", "session"}, map[string]string{"DCE_SESSION_IM_STORE": "memory"}, func(c *config.Config) {
		c.Websocket.RateLimit = 0
	})
	addr := s.HTTPAddrs()[0]
	sid := newSID(t)
	alice := open(t, "alice", addr, sid)
	alice.send(`session/im/login;{"nickname":"alice","brief":""}`)
	alice.expect(`session/im/signer;{"mid":1,"nickname":"alice","brief":""}`)
	alice.expect(`session/im/login;[{"mid":1,"nickname":"alice","brief":"","loginPlaces":1}]`)

	chat := servertest.DialWS(t, addr) // the chat page's connection: no cookie
	chat.Send(`sample/im/login;{"nickname":"chatter","brief":"b"}`)
	if f := chat.ExpectPrefix("setUserList;"); strings.Contains(f, "alice") {
		t.Fatalf("the chat's list shows the session sample's member: %s", f)
	}
	chat.ExpectPrefix("setMessageList;")
	chat.Send(`sample/im/send;{"message":"chat only"}`)
	chat.ExpectPrefix("setMessageList;")
	alice.send(`session/im/send;{"target_mid":0,"message":"session only"}`)
	if f := alice.next(`session/im/load;`); !strings.Contains(f, "session only") {
		t.Fatal(f)
	}
	// The chat's connection got nothing of the session sample; alice
	// nothing of the chat.
	chat.Send(`sample/im/send;{"message":"second"}`)
	if f := chat.Read(); !strings.HasPrefix(f, "setMessageList;") || !strings.Contains(f, "second") {
		t.Fatalf("the chat's connection got %s", f)
	}
	alice.send(`session/im/signer;""`)
	if f := alice.next(`session/im/login;`); strings.Contains(f, "chatter") {
		t.Fatalf("the session sample's list shows the chat's member: %s", f)
	}
	alice.quiet("setMessageList;", 200*time.Millisecond) // the last read of alice: a timeout ends a WebSocket
	// A tab of alice closing (the chat's close hook runs for it too)
	// leaves her session logged in.
	tab := open(t, "alice's tab", addr, sid)
	tab.send(`session/im/signer;""`)
	tab.expect(`session/im/signer;{"mid":1,"nickname":"alice","brief":""}`)
	before := len(s.Hub().Sessions().OnlineConns())
	tab.ws.Conn.Close()
	// Its session mappings go after the close hooks ran.
	for deadline := time.Now().Add(5 * time.Second); len(s.Hub().Sessions().OnlineConns()) == before; {
		if time.Now().After(deadline) {
			t.Fatal("the closed tab is still logged in on the server")
		}
		runtime.Gosched()
	}
	again := open(t, "alice's refresh", addr, sid)
	again.send(`session/im/signer;""`)
	again.expect(`session/im/signer;{"mid":1,"nickname":"alice","brief":""}`)
}

// TestDeltaPresence: a page that asks for deltas at its signer (ours does)
// gets the whole list once, then only joins and leaves — a member whose
// places change joins again with the new count.
func TestDeltaPresence(t *testing.T) {
	s := start(t)
	addr := s.HTTPAddrs()[0]
	watcher := open(t, "watcher", addr, newSID(t))
	watcher.send(`session/im/signer;{"presence":"delta"}`)
	watcher.expect(`session/im/signer;null`)
	watcher.expect(`session/im/login;[]`)
	sid := newSID(t)
	bob := open(t, "bob", addr, sid)
	bob.send(`session/im/login;{"nickname":"bob","brief":"b"}`)
	watcher.expect(`session/im/presence;{"join":[{"mid":1,"nickname":"bob","brief":"b","loginPlaces":1}],"leave":[]}`)
	open(t, "bob's tab", addr, sid) // opens logged in: a second place
	watcher.expect(`session/im/presence;{"join":[{"mid":1,"nickname":"bob","brief":"b","loginPlaces":2}],"leave":[]}`)
	bob.send(`session/im/logout;""`) // the session's: both places
	watcher.expect(`session/im/presence;{"join":[],"leave":[1]}`)
	watcher.send(`session/im/signer:9;{"presence":"lots"}`)
	watcher.expect(`session/im/signer:9;{"status":false,"code":400,"message":"presence: want \"delta\" or \"list\", got \"lots\""}`)
}
