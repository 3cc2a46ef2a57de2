package session_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"dce/app/browsertest"
	"dce/app/config"
	"dce/app/redistest"
	"dce/app/server"
	"dce/app/wait"
)

// logIn logs the page in through its dialog.
func logIn(t *testing.T, ctx context.Context, nick, brief string) {
	t.Helper()
	browsertest.Run(t, ctx,
		chromedp.Click(chromedp.ID("login-open")),
		chromedp.WaitVisible(chromedp.ID("nickname")),
		chromedp.SendKeys(chromedp.ID("nickname"), nick),
		chromedp.SendKeys(chromedp.ID("brief"), brief),
		chromedp.Click(chromedp.ID("login-button")),
		chromedp.WaitVisible(chromedp.ID("logout")),
	)
}

// say types a message in the current view.
func say(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	browsertest.Run(t, ctx, chromedp.SendKeys(chromedp.ID("message"), text+"\r"))
}

// member clicks a member of the online list.
func member(t *testing.T, ctx context.Context, nick string) {
	t.Helper()
	browsertest.WaitText(t, ctx, "#users", nick, false)
	browsertest.Eval[bool](t, ctx, `(() => { for (const li of document.querySelectorAll("#users li")) if (li.querySelector(".name").textContent === `+strconv.Quote(nick)+`) { li.click(); return true } return false })()`)
}

// TestBrowserSession: two nodes of a cluster (a private Redis), one
// headless Chromium with four browser contexts (each its own cookies).
// alice on node 1 and bob on node 2 chat privately while carol, in the
// group, sees none of it; alice refreshes and is still logged in, with her
// history; a fourth context is a guest who reads the group and is asked to
// log in when it types; a node restarts under open pages, which come back
// logged in and fetch what they missed.
func TestBrowserSession(t *testing.T) {
	bin := browsertest.Need(t)
	redis := redistest.Start(t)
	node := func(name string, more ...func(*config.Config)) *server.Server {
		return start(t, append([]func(*config.Config){func(c *config.Config) {
			c.Cluster.Redis, c.Cluster.Node, c.Cluster.DeadAfter = redis.URL(), name, 3*time.Second
		}}, more...)...)
	}
	one, two := node("one"), node("two")
	url1 := "http://" + one.HTTPAddrs()[0] + "/session/"
	url2 := "http://" + two.HTTPAddrs()[0] + "/session/"

	chrome := browsertest.Browser(t, bin, "en-US", 1100, 720)
	alice := browsertest.NewContext(t, chrome)
	bob := browsertest.NewContext(t, chrome)
	carol := browsertest.NewContext(t, chrome)
	guest := browsertest.NewContext(t, chrome)
	for _, p := range []struct {
		ctx context.Context
		url string
	}{{alice, url1}, {bob, url2}, {carol, url1}, {guest, url2}} {
		browsertest.Run(t, p.ctx, chromedp.Navigate(p.url), chromedp.WaitVisible(chromedp.ID("messages")))
	}
	logIn(t, alice, "alice", "on node one")
	logIn(t, bob, "bob", "on node two")
	logIn(t, carol, "carol", "in the group")
	for _, ctx := range []context.Context{alice, bob, carol, guest} {
		browsertest.WaitText(t, ctx, "#users", "carol", false)
		browsertest.WaitText(t, ctx, "#users", "bob", false)
		browsertest.WaitText(t, ctx, "#users", "alice", false)
	}

	// The group: everyone sees it, the guest too.
	say(t, carol, "hello group")
	for _, ctx := range []context.Context{alice, bob, guest} {
		browsertest.WaitText(t, ctx, "#messages", "hello group", false)
	}

	// alice opens a private chat with bob (bob is on the other node).
	member(t, alice, "bob")
	browsertest.WaitText(t, alice, "#view-title", "Chat with bob", false)
	say(t, alice, "just for bob <b>x</b>")
	// bob, still in the group view, gets an unread mark on alice.
	if !wait.Until(10*time.Second, func() bool {
		return browsertest.Eval[bool](t, bob, `!!document.querySelector('#users li[data-mid] .unread')`)
	}) {
		t.Fatal("bob has no unread mark for alice's private message")
	}
	member(t, bob, "alice")
	browsertest.WaitText(t, bob, "#messages", "just for bob <b>x</b>", false) // as text, not HTML
	if n := browsertest.Eval[int](t, bob, `document.querySelectorAll("#messages b").length`); n != 0 {
		t.Errorf("a message was rendered as HTML (%d <b> elements)", n)
	}
	browsertest.WaitText(t, bob, "#messages", "hello group", true) // the private view holds only its own
	say(t, bob, "got it")
	browsertest.WaitText(t, alice, "#messages", "got it", false)
	if own := browsertest.Eval[bool](t, alice, `[...document.querySelectorAll("#messages .msg.own")].some(m => m.textContent.includes("just for bob"))`); !own {
		t.Error("alice's own message is not on the right (.own)")
	}
	// carol, in the group, saw none of it.
	say(t, carol, "anyone?")
	browsertest.WaitText(t, alice, "#users", "carol", false)
	browsertest.WaitText(t, carol, "#messages", "anyone?", false)
	if last := browsertest.Eval[string](t, carol, `[...document.querySelectorAll("#messages .bubble")].pop().textContent`); last != "anyone?" {
		t.Errorf("the last message reads %q; want exactly what was typed", last)
	}
	browsertest.WaitText(t, carol, "#messages", "just for bob", true)
	browsertest.WaitText(t, carol, "#messages", "got it", true)
	if marks := browsertest.Eval[int](t, carol, `document.querySelectorAll("#users .unread").length`); marks != 0 {
		t.Errorf("carol has %d unread marks; the private chat is not hers", marks)
	}
	browsertest.Screenshot(t, alice, root, "session-alice.png")

	// alice refreshes: still logged in, her private chat's history there.
	browsertest.Run(t, alice, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("logout")))
	browsertest.WaitText(t, alice, "#who", "alice", false)
	member(t, alice, "bob")
	browsertest.WaitText(t, alice, "#messages", "got it", false)
	browsertest.WaitText(t, alice, "#users", "alice", false)
	member(t, alice, "bob") // again: back to the group
	browsertest.WaitText(t, alice, "#view-title", "Group chat", false)
	browsertest.WaitText(t, alice, "#messages", "hello group", false)
	browsertest.WaitText(t, alice, "#messages", "got it", true)

	// Node one restarts under alice's and carol's open pages (everything
	// is in Redis); meanwhile bob, on node two, writes to the group. Their
	// pages reconnect, are still logged in, and fetch what they missed
	// (after_id).
	member(t, bob, "alice") // bob back to the group view
	browsertest.WaitText(t, bob, "#view-title", "Group chat", false)
	addr1 := one.HTTPAddrs()[0]
	if err := one.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	say(t, bob, "while node one was down")
	_, port, _ := strings.Cut(addr1, ":")
	node("one", func(c *config.Config) { c.Websocket.Port, _ = strconv.Atoi(port) })
	for _, ctx := range []context.Context{alice, carol} {
		browsertest.WaitText(t, ctx, "#state-text", "Connected", false)
		browsertest.WaitText(t, ctx, "#messages", "while node one was down", false)
		browsertest.WaitText(t, ctx, "#messages", "hello group", false) // kept, not replaced
		browsertest.Run(t, ctx, chromedp.WaitVisible(chromedp.ID("logout")))
	}

	// The guest reads the group; typing asks it to log in; cancel closes
	// the dialog and it is still a guest.
	browsertest.WaitText(t, guest, "#messages", "anyone?", false)
	browsertest.Run(t, guest, chromedp.Click(chromedp.ID("message")), chromedp.WaitVisible(chromedp.ID("login-dialog")))
	browsertest.Run(t, guest, chromedp.Click(chromedp.ID("login-cancel")), chromedp.WaitNotVisible(chromedp.ID("login-dialog")))
	if guestMode := browsertest.Eval[bool](t, guest, `!document.getElementById("login-open").classList.contains("hidden")`); !guestMode {
		t.Error("after cancel the guest is not a guest any more")
	}
	browsertest.Screenshot(t, guest, root, "session-guest.png")

	// A phone in Chinese: the page in Chinese, the online list behind a
	// button.
	phone := browsertest.Browser(t, bin, "zh-CN", 375, 740)
	browsertest.Run(t, phone, chromedp.EmulateViewport(375, 740, chromedp.EmulateScale(2)),
		chromedp.Navigate(url1), chromedp.WaitVisible(chromedp.ID("messages")))
	if label := browsertest.Eval[string](t, phone, `document.getElementById("login-open").textContent`); label != "登录" {
		t.Errorf("the zh-CN phone shows %q; want the Chinese page (登录)", label)
	}
	if hidden := browsertest.Eval[bool](t, phone, `getComputedStyle(document.getElementById("side")).display === "none"`); !hidden {
		t.Error("on a phone the online list should open from its button")
	}
	browsertest.Run(t, phone, chromedp.Click(chromedp.ID("toggle-users")))
	browsertest.WaitText(t, phone, "#users", "carol", false)
	browsertest.Screenshot(t, phone, root, "session-phone.png")
}
