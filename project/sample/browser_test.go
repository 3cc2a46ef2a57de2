package sample_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"dce/app/browsertest"
	"dce/app/config"
	"dce/app/servertest"
)

func login(t *testing.T, ctx context.Context, url, nick, brief string) {
	t.Helper()
	browsertest.Run(t, ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("nickname")),
		chromedp.SendKeys(chromedp.ID("nickname"), nick),
		chromedp.SendKeys(chromedp.ID("brief"), brief),
		chromedp.Click(chromedp.ID("login-button")),
		chromedp.WaitVisible(chromedp.ID("chat")),
	)
}

func say(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	browsertest.Run(t, ctx, chromedp.SendKeys(chromedp.ID("message"), text+"\r"))
}

// TestBrowserChat drives two separate headless Chromium sessions through
// the page: login, presence, messages on both sides (own on the right),
// text never run as HTML, logout and tab close removing the user.
func TestBrowserChat(t *testing.T) {
	bin := browsertest.Need(t)
	s := startChat(t, nil)
	url := "http://" + s.HTTPAddrs()[0] + "/"

	ada := browsertest.Browser(t, bin, "en-US", 1100, 720)
	bo := browsertest.Browser(t, bin, "zh-CN", 375, 740) // a phone, in Chinese
	browsertest.Run(t, bo, chromedp.EmulateViewport(375, 740, chromedp.EmulateScale(2)))
	login(t, ada, url, "Ada", "Writes the first program")
	login(t, bo, url, "Bo", "Reads everything")

	if label := browsertest.Eval[string](t, bo, `document.getElementById("login-button").textContent`); label != "加入" {
		t.Errorf("the zh-CN browser shows %q; want the Chinese page (加入)", label)
	}
	browsertest.WaitText(t, ada, "#users", "Bo", false)
	browsertest.Run(t, bo, chromedp.Click(chromedp.ID("toggle-users")))
	browsertest.WaitText(t, bo, "#users", "Ada", false)

	say(t, ada, "Hello Bo")
	browsertest.WaitText(t, bo, "#messages", "Hello Bo", false)
	const evil = `<img src=x onerror=alert(1)>`
	say(t, bo, evil)
	browsertest.WaitText(t, ada, "#messages", evil, false)

	const ownHello = `[...document.querySelectorAll("#messages .msg.own")].filter(m => m.textContent.includes("Hello Bo")).length`
	ownAda, ownBo := browsertest.Eval[int](t, ada, ownHello), browsertest.Eval[int](t, bo, ownHello)
	if ownAda != 1 || ownBo != 0 {
		t.Errorf("'Hello Bo' is own for Ada %d, for Bo %d; want 1 and 0", ownAda, ownBo)
	}
	imgs := browsertest.Eval[int](t, ada, `document.querySelectorAll("#messages img").length`)
	lastBubble := browsertest.Eval[string](t, ada, `[...document.querySelectorAll("#messages .bubble")].pop().textContent`)
	if imgs != 0 || lastBubble != evil {
		t.Errorf("the HTML message rendered %d <img> and text %q; want literal text", imgs, lastBubble)
	}
	// The user-info panel starts with yourself; clicking a member shows them.
	if info := browsertest.Eval[string](t, ada, `document.getElementById("info-name").textContent`); info != "Ada" {
		t.Errorf("info panel shows %q; want Ada first", info)
	}
	browsertest.Run(t, ada, chromedp.Click(chromedp.CSS(`#users li[title="Reads everything"]`)))
	browsertest.WaitText(t, ada, "#info", "Reads everything", false)
	if w := browsertest.Eval[int](t, bo, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the phone page is %d px wide; want no horizontal scroll at 375 px", w)
	}

	browsertest.Screenshot(t, ada, root, "chat-desktop.png")
	browsertest.Screenshot(t, bo, root, "chat-phone-zh.png")

	// Logout removes Ada from Bo's list.
	browsertest.Run(t, ada, chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login")))
	browsertest.WaitText(t, bo, "#users", "Ada", true)

	// Log in again in a new tab, then close the tab: Ada leaves Bo's list again.
	tab, closeTab := chromedp.NewContext(ada)
	login(t, tab, url, "Ada", "Writes the first program")
	browsertest.WaitText(t, bo, "#users", "Ada", false)
	closeTab()
	browsertest.WaitText(t, bo, "#users", "Ada", true)
}

// TestBrowserRestartAndPage: a page that stays open while the server
// restarts shows exactly what the new server has (its history, then every
// new message, both ways); in a quiet room the first list already marks
// you; a failed send shows its error and then recovers; new messages are
// appended (old nodes kept) and do not pull a reader who scrolled up;
// Shift+Enter makes a new line that the message keeps.
func TestBrowserRestartAndPage(t *testing.T) {
	bin := browsertest.Need(t)
	s := startChat(t, nil)
	addr := s.HTTPAddrs()[0]
	url := "http://" + addr + "/"
	ada := browsertest.Browser(t, bin, "en-US", 1000, 700)
	bo := browsertest.Browser(t, bin, "en-US", 1000, 700)
	login(t, ada, url, "Ada", "Writes the first program")
	browsertest.WaitText(t, ada, "#users", "Ada (you)", false) // quiet room: the list came before the reply
	login(t, bo, url, "Bo", "Reads everything")
	say(t, ada, "before the restart")
	browsertest.WaitText(t, bo, "#messages", "before the restart", false)

	// Restart on the same port under both open pages.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	s2 := startChat(t, nil, func(c *config.Config) { c.Websocket.Port, _ = strconv.Atoi(port) })
	browsertest.WaitText(t, ada, "#state-text", "Connected", false)
	browsertest.WaitText(t, bo, "#state-text", "Connected", false)
	browsertest.WaitText(t, ada, "#messages", "before the restart", true) // the new server's history is empty
	browsertest.WaitText(t, bo, "#messages", "before the restart", true)
	say(t, bo, "after the restart, from Bo")
	browsertest.WaitText(t, ada, "#messages", "after the restart, from Bo", false)
	say(t, ada, "after the restart, from Ada")
	browsertest.WaitText(t, bo, "#messages", "after the restart, from Ada", false)
	browsertest.WaitText(t, ada, "#users", "Bo", false)
	browsertest.WaitText(t, ada, "#messages", "after the restart, from Ada", false) // its own, back from the server
	if n := len(s2.Hub().Sessions().Online()); n != 2 {
		t.Errorf("%d members online on the new server; want both pages logged back in", n)
	}
	for _, ctx := range []context.Context{ada, bo} {
		if got := browsertest.Eval[int](t, ctx, `document.querySelectorAll("#messages .msg").length`); got != 2 {
			t.Errorf("%d messages on a page after the restart; want the new server's 2", got)
		}
	}

	// A failed send shows its reason, then the state comes back.
	browsertest.Run(t, ada, chromedp.Evaluate[chromedp.Void](`document.getElementById("message").value = "x".repeat(1025); document.getElementById("compose").requestSubmit()`))
	browsertest.WaitText(t, ada, "#state-text", "longer than 1024", false)
	browsertest.WaitText(t, ada, "#state-text", "Connected", false)

	// Many messages from a terminal user; Ada scrolls up; a new message
	// neither rebuilds the list nor moves her.
	term := servertest.DialTCP(t, servertest.Sock(t, s2, "tcp"))
	term.Send(`sample/im/login;{"nickname":"Term","brief":"nc"}`)
	for i := 0; i < 40; i++ {
		term.Send(fmt.Sprintf(`sample/im/send;{"message":"filler %d"}`, i))
	}
	browsertest.WaitText(t, ada, "#messages", "filler 39", false)
	browsertest.Run(t, ada, chromedp.Evaluate[chromedp.Void](`window.firstMsg = document.querySelector("#messages .msg"); document.getElementById("messages").scrollTop = 0`))
	term.Send(`sample/im/send;{"message":"while Ada reads old ones"}`)
	browsertest.WaitText(t, ada, "#messages", "while Ada reads old ones", false)
	if same := browsertest.Eval[bool](t, ada, `window.firstMsg === document.querySelector("#messages .msg")`); !same {
		t.Error("a new message rebuilt the message list; want it appended")
	}
	if top := browsertest.Eval[int](t, ada, `document.getElementById("messages").scrollTop`); top != 0 {
		t.Errorf("a reader scrolled to the top was moved to %d; want to stay", top)
	}

	// A newcomer gets the last 100 messages; scrolling to the top loads
	// the older ones, a page at a time.
	for i := 0; i < 120; i++ {
		term.Send(fmt.Sprintf(`sample/im/send;{"message":"more %d"}`, i))
	}
	browsertest.WaitText(t, ada, "#messages", "more 119", false)
	cy := browsertest.Browser(t, bin, "en-US", 1000, 700)
	login(t, cy, url, "Cy", "Arrives late")
	browsertest.WaitText(t, cy, "#messages", "more 119", false)
	if n := browsertest.Eval[int](t, cy, `document.querySelectorAll("#messages .msg").length`); n != 100 {
		t.Errorf("a newcomer shows %d messages; want the last 100", n)
	}
	browsertest.Run(t, cy, chromedp.Evaluate[chromedp.Void](`document.getElementById("messages").scrollTop = 0; document.getElementById("messages").dispatchEvent(new Event("scroll"))`))
	browsertest.WaitText(t, cy, "#messages", "before the restart", true)
	browsertest.WaitText(t, cy, "#messages", "after the restart, from Bo", false) // the oldest, from the older page
	if n, all := browsertest.Eval[int](t, cy, `document.querySelectorAll("#messages .msg").length`), len(s2.Hub().Sessions().Online()); n <= 100 || all == 0 {
		t.Errorf("after scrolling up %d messages; want the older page loaded too", n)
	}

	// Shift+Enter: a new line in the message, kept when shown.
	browsertest.Run(t, bo,
		chromedp.SendKeys(chromedp.ID("message"), "line one"),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierShift)),
		chromedp.SendKeys(chromedp.ID("message"), "line two\r"),
	)
	browsertest.WaitText(t, ada, "#messages", "line two", false)
	if last := browsertest.Eval[string](t, ada, `[...document.querySelectorAll("#messages .bubble")].pop().textContent`); last != "line one\nline two" {
		t.Errorf("last message %q; want two lines", last)
	}
	if h := browsertest.Eval[float64](t, ada, `[...document.querySelectorAll("#messages .bubble")].pop().getClientRects()[0].height`); h < 30 {
		t.Errorf("the two-line message is %.0f px high; want its line break shown", h)
	}
}
