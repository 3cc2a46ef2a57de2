package sample_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"dce/app/config"
	"dce/app/servertest"
)

// chromium finds a Chromium binary; $DCE_CHROMIUM wins.
func chromium() string {
	if p := os.Getenv("DCE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// needChromium returns the Chromium binary; without one the test skips
// with a message, or fails when CI is set.
func needChromium(t *testing.T) string {
	t.Helper()
	bin := chromium()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("Chromium is required in CI (apt-get install chromium)")
		}
		t.Skip("Chromium not found: install it (apt-get install chromium) or set DCE_CHROMIUM to run the browser test")
	}
	return bin
}

// browser starts one headless Chromium with its own profile (a separate
// browser session) and returns a tab context.
func browser(t *testing.T, bin string, lang string, width, height int) context.Context {
	t.Helper()
	actx, cancelA := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("lang", lang),
		chromedp.Flag("accept-lang", lang),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
		chromedp.Env("LANGUAGE="+lang),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	watchDialogs(t, ctx)
	return ctx
}

// watchDialogs fails the test on any alert(): a message run as HTML.
func watchDialogs(t *testing.T, ctx context.Context) {
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			t.Errorf("a JavaScript dialog opened: %q (text was run as HTML)", ev.Message)
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
}

func run(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	return value(t, ctx, chromedp.Evaluate[T](js))
}

// waitText waits until the element's text contains (or, with absent, no
// longer contains) s.
func waitText(t *testing.T, ctx context.Context, sel, s string, absent bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var text string
	for time.Now().Before(deadline) {
		text = eval[string](t, ctx, `document.querySelector(`+strconv.Quote(sel)+`).textContent`)
		if strings.Contains(text, s) != absent {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s text %q: want %q present=%v", sel, text, s, !absent)
}

func login(t *testing.T, ctx context.Context, url, nick, brief string) {
	t.Helper()
	run(t, ctx,
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
	run(t, ctx, chromedp.SendKeys(chromedp.ID("message"), text+"\r"))
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := value(t, ctx, chromedp.FullScreenshot(100))
	dir := filepath.Join(root, "runtime", "browser-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: runtime/browser-test/%s", name)
}

// TestBrowserChat drives two separate headless Chromium sessions through
// the page: login, presence, messages on both sides (own on the right),
// text never run as HTML, logout and tab close removing the user.
func TestBrowserChat(t *testing.T) {
	bin := needChromium(t)
	s := startChat(t, nil)
	url := "http://" + s.HTTPAddrs()[0] + "/"

	ada := browser(t, bin, "en-US", 1100, 720)
	bo := browser(t, bin, "zh-CN", 375, 740) // a phone, in Chinese
	run(t, bo, chromedp.EmulateViewport(375, 740, chromedp.EmulateScale(2)))
	login(t, ada, url, "Ada", "Writes the first program")
	login(t, bo, url, "Bo", "Reads everything")

	if label := eval[string](t, bo, `document.getElementById("login-button").textContent`); label != "加入" {
		t.Errorf("the zh-CN browser shows %q; want the Chinese page (加入)", label)
	}
	waitText(t, ada, "#users", "Bo", false)
	run(t, bo, chromedp.Click(chromedp.ID("toggle-users")))
	waitText(t, bo, "#users", "Ada", false)

	say(t, ada, "Hello Bo")
	waitText(t, bo, "#messages", "Hello Bo", false)
	const evil = `<img src=x onerror=alert(1)>`
	say(t, bo, evil)
	waitText(t, ada, "#messages", evil, false)

	const ownHello = `[...document.querySelectorAll("#messages .msg.own")].filter(m => m.textContent.includes("Hello Bo")).length`
	ownAda, ownBo := eval[int](t, ada, ownHello), eval[int](t, bo, ownHello)
	if ownAda != 1 || ownBo != 0 {
		t.Errorf("'Hello Bo' is own for Ada %d, for Bo %d; want 1 and 0", ownAda, ownBo)
	}
	imgs := eval[int](t, ada, `document.querySelectorAll("#messages img").length`)
	lastBubble := eval[string](t, ada, `[...document.querySelectorAll("#messages .bubble")].pop().textContent`)
	if imgs != 0 || lastBubble != evil {
		t.Errorf("the HTML message rendered %d <img> and text %q; want literal text", imgs, lastBubble)
	}
	// The user-info panel starts with yourself; clicking a member shows them.
	if info := eval[string](t, ada, `document.getElementById("info-name").textContent`); info != "Ada" {
		t.Errorf("info panel shows %q; want Ada first", info)
	}
	run(t, ada, chromedp.Click(chromedp.CSS(`#users li[title="Reads everything"]`)))
	waitText(t, ada, "#info", "Reads everything", false)
	if w := eval[int](t, bo, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the phone page is %d px wide; want no horizontal scroll at 375 px", w)
	}

	screenshot(t, ada, "chat-desktop.png")
	screenshot(t, bo, "chat-phone-zh.png")

	// Logout removes Ada from Bo's list.
	run(t, ada, chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login")))
	waitText(t, bo, "#users", "Ada", true)

	// Log in again in a new tab, then close the tab: Ada leaves Bo's list again.
	tab, closeTab := chromedp.NewContext(ada)
	login(t, tab, url, "Ada", "Writes the first program")
	waitText(t, bo, "#users", "Ada", false)
	closeTab()
	waitText(t, bo, "#users", "Ada", true)
}

// TestBrowserRestartAndPage: a page that stays open while the server
// restarts shows exactly what the new server has (its history, then every
// new message, both ways); in a quiet room the first list already marks
// you; a failed send shows its error and then recovers; new messages are
// appended (old nodes kept) and do not pull a reader who scrolled up;
// Shift+Enter makes a new line that the message keeps.
func TestBrowserRestartAndPage(t *testing.T) {
	bin := needChromium(t)
	s := startChat(t, nil)
	addr := s.HTTPAddrs()[0]
	url := "http://" + addr + "/"
	ada := browser(t, bin, "en-US", 1000, 700)
	bo := browser(t, bin, "en-US", 1000, 700)
	login(t, ada, url, "Ada", "Writes the first program")
	waitText(t, ada, "#users", "Ada (you)", false) // quiet room: the list came before the reply
	login(t, bo, url, "Bo", "Reads everything")
	say(t, ada, "before the restart")
	waitText(t, bo, "#messages", "before the restart", false)

	// Restart on the same port under both open pages.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	s2 := startChat(t, nil, func(c *config.Config) { c.Websocket.Port, _ = strconv.Atoi(port) })
	waitText(t, ada, "#state-text", "Connected", false)
	waitText(t, bo, "#state-text", "Connected", false)
	waitText(t, ada, "#messages", "before the restart", true) // the new server's history is empty
	waitText(t, bo, "#messages", "before the restart", true)
	say(t, bo, "after the restart, from Bo")
	waitText(t, ada, "#messages", "after the restart, from Bo", false)
	say(t, ada, "after the restart, from Ada")
	waitText(t, bo, "#messages", "after the restart, from Ada", false)
	waitText(t, ada, "#users", "Bo", false)
	waitText(t, ada, "#messages", "after the restart, from Ada", false) // its own, back from the server
	if n := len(s2.Hub().Sessions().Online()); n != 2 {
		t.Errorf("%d members online on the new server; want both pages logged back in", n)
	}
	for _, ctx := range []context.Context{ada, bo} {
		if got := eval[int](t, ctx, `document.querySelectorAll("#messages .msg").length`); got != 2 {
			t.Errorf("%d messages on a page after the restart; want the new server's 2", got)
		}
	}

	// A failed send shows its reason, then the state comes back.
	run(t, ada, chromedp.Evaluate[chromedp.Void](`document.getElementById("message").value = "x".repeat(1025); document.getElementById("compose").requestSubmit()`))
	waitText(t, ada, "#state-text", "longer than 1024", false)
	waitText(t, ada, "#state-text", "Connected", false)

	// Many messages from a terminal user; Ada scrolls up; a new message
	// neither rebuilds the list nor moves her.
	term := servertest.DialTCP(t, servertest.Sock(t, s2, "tcp"))
	term.Send(`sample/im/login;{"nickname":"Term","brief":"nc"}`)
	for i := 0; i < 40; i++ {
		term.Send(fmt.Sprintf(`sample/im/send;{"message":"filler %d"}`, i))
	}
	waitText(t, ada, "#messages", "filler 39", false)
	run(t, ada, chromedp.Evaluate[chromedp.Void](`window.firstMsg = document.querySelector("#messages .msg"); document.getElementById("messages").scrollTop = 0`))
	term.Send(`sample/im/send;{"message":"while Ada reads old ones"}`)
	waitText(t, ada, "#messages", "while Ada reads old ones", false)
	if same := eval[bool](t, ada, `window.firstMsg === document.querySelector("#messages .msg")`); !same {
		t.Error("a new message rebuilt the message list; want it appended")
	}
	if top := eval[int](t, ada, `document.getElementById("messages").scrollTop`); top != 0 {
		t.Errorf("a reader scrolled to the top was moved to %d; want to stay", top)
	}

	// A newcomer gets the last 100 messages; scrolling to the top loads
	// the older ones, a page at a time.
	for i := 0; i < 120; i++ {
		term.Send(fmt.Sprintf(`sample/im/send;{"message":"more %d"}`, i))
	}
	waitText(t, ada, "#messages", "more 119", false)
	cy := browser(t, bin, "en-US", 1000, 700)
	login(t, cy, url, "Cy", "Arrives late")
	waitText(t, cy, "#messages", "more 119", false)
	if n := eval[int](t, cy, `document.querySelectorAll("#messages .msg").length`); n != 100 {
		t.Errorf("a newcomer shows %d messages; want the last 100", n)
	}
	run(t, cy, chromedp.Evaluate[chromedp.Void](`document.getElementById("messages").scrollTop = 0; document.getElementById("messages").dispatchEvent(new Event("scroll"))`))
	waitText(t, cy, "#messages", "before the restart", true)
	waitText(t, cy, "#messages", "after the restart, from Bo", false) // the oldest, from the older page
	if n, all := eval[int](t, cy, `document.querySelectorAll("#messages .msg").length`), len(s2.Hub().Sessions().Online()); n <= 100 || all == 0 {
		t.Errorf("after scrolling up %d messages; want the older page loaded too", n)
	}

	// Shift+Enter: a new line in the message, kept when shown.
	run(t, bo,
		chromedp.SendKeys(chromedp.ID("message"), "line one"),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierShift)),
		chromedp.SendKeys(chromedp.ID("message"), "line two\r"),
	)
	waitText(t, ada, "#messages", "line two", false)
	if last := eval[string](t, ada, `[...document.querySelectorAll("#messages .bubble")].pop().textContent`); last != "line one\nline two" {
		t.Errorf("last message %q; want two lines", last)
	}
	if h := eval[float64](t, ada, `[...document.querySelectorAll("#messages .bubble")].pop().getClientRects()[0].height`); h < 30 {
		t.Errorf("the two-line message is %.0f px high; want its line break shown", h)
	}
}
