package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"dce/app/redistest"
)

// sessionTab opens the session sample's WebSocket (/session/) with the
// page's cookie, as a browser tab does.
func sessionTab(t *testing.T, name, addr, sid string) *chatClient {
	t.Helper()
	return dialWS(t, name, "ws://"+addr+"/session/", http.Header{"Cookie": {"dcesid=" + sid}})
}

// pageCookie loads the page at /session/ and returns the session id its
// cookie carries.
func pageCookie(t *testing.T, addr string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/session/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, c := range res.Cookies() {
		if c.Name == "dcesid" {
			return c.Value
		}
	}
	t.Fatalf("GET /session/ set no dcesid cookie: %v", res.Header)
	return ""
}

// chatBefore logs alice and bob in on addr, has bob send a group and
// a private message, and returns alice's session id.
func chatBefore(t *testing.T, addr string) string {
	t.Helper()
	aliceSID, bobSID := pageCookie(t, addr), pageCookie(t, addr)
	alice := sessionTab(t, "alice", addr, aliceSID)
	bob := sessionTab(t, "bob", addr, bobSID)
	_ = alice.send(`session/im/login;{"nickname":"alice","brief":"a"}`)
	alice.next(t, `session/im/signer;{"mid":1`, 5*time.Second)
	_ = bob.send(`session/im/login;{"nickname":"bob","brief":"b"}`)
	bob.next(t, `session/im/signer;{"mid":2`, 5*time.Second)
	_ = bob.send(`session/im/send:1;{"target_mid":0,"message":"to everyone"}`)
	bob.next(t, `session/im/send:1;{"data"`, 5*time.Second)
	_ = bob.send(`session/im/send:2;{"target_mid":1,"message":"to alice only"}`)
	bob.next(t, `session/im/send:2;{"data"`, 5*time.Second)
	return aliceSID
}

// checkAfter: alice's session, opened again on addr, is logged in at once
// and finds both views' history.
func checkAfter(t *testing.T, addr, aliceSID string) {
	t.Helper()
	alice := sessionTab(t, "alice again", addr, aliceSID)
	_ = alice.send(`session/im/signer;""`)
	if f := alice.next(t, `session/im/signer;`, 5*time.Second); f != `session/im/signer;{"mid":1,"nickname":"alice","brief":"a"}` {
		t.Fatalf("alice after: %s", f)
	}
	_ = alice.send(`session/im/load;{"target_mid":0}`)
	if f := alice.next(t, `session/im/load;`, 5*time.Second); !strings.Contains(f, `"to everyone"`) || strings.Contains(f, "alice only") {
		t.Fatalf("group history: %s", f)
	}
	_ = alice.send(`session/im/load;{"target_mid":2}`)
	if f := alice.next(t, `session/im/load;`, 5*time.Second); !strings.Contains(f, `"to alice only"`) {
		t.Fatalf("private history with bob: %s", f)
	}
}

// TestSessionSampleSurvivesRestart: with the default file stores, logins,
// members and history survive `stop` + `start`.
func TestSessionSampleSurvivesRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, ports := copyApp(t)
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	first, _ := startLimited(t, dir, 4096, nil)
	aliceSID := chatBefore(t, addr)
	checkAfter(t, addr, aliceSID) // a second tab, before the restart (closed again: the login must stay)
	if out, code := dce(t, dir, "websocket", "stop"); code != 0 {
		t.Fatalf("stop: %d %s", code, out)
	}
	waitExit(t, first)
	_, log := startLimited(t, dir, 4096, []string{"DCE_LOG_LEVEL=debug"})
	defer func() {
		if t.Failed() {
			t.Logf("the restarted server's log:\n%s", log.String())
		}
	}()
	checkAfter(t, addr, aliceSID)
}

// TestSessionSampleSurvivesKill: on a cluster, a node killed with SIGKILL
// loses nothing: alice's cookie on the other node is logged in, with the
// history.
func TestSessionSampleSurvivesKill(t *testing.T) {
	dir, ports := clusterApp(t)
	redis := redistest.StartPersistent(t)
	one, _ := startNode(t, dir, ports[0], redis.URL())
	startNode(t, dir, ports[0]+10, redis.URL())
	aliceSID := chatBefore(t, "127.0.0.1:"+strconv.Itoa(ports[0]))
	if err := one.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = one.Wait()
	checkAfter(t, "127.0.0.1:"+strconv.Itoa(ports[0]+10), aliceSID)
}
