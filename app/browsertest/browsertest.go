// Package browsertest drives headless Chromium for the pages' tests
// (chromedp): a browser per test, separate browser contexts (each its own
// cookies, like separate browsers) and small helpers to act and wait.
package browsertest

import (
	"context"
	"dce/app/wait"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
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

// Need returns the Chromium binary; without one the test skips
// with a message, or fails when CI is set.
func Need(t *testing.T) string {
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

// Browser starts one headless Chromium with its own profile (a separate
// browser session) and returns a tab context.
func Browser(t *testing.T, bin string, lang string, width, height int) context.Context {
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
	WatchDialogs(t, ctx)
	return ctx
}

// WatchDialogs fails the test on any alert(): a message run as HTML.
func WatchDialogs(t *testing.T, ctx context.Context) {
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

// Run runs steps, failing the test after 15 s or on an error.
func Run(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// Value runs one action and returns its result.
func Value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Eval evaluates js in the page.
func Eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	return Value(t, ctx, chromedp.Evaluate[T](js))
}

// WaitText waits until the element's text contains (or, with absent, no
// longer contains) s.
func WaitText(t *testing.T, ctx context.Context, sel, s string, absent bool) {
	t.Helper()
	var text string
	if wait.Until(10*time.Second, func() bool {
		text = Eval[string](t, ctx, `document.querySelector(`+strconv.Quote(sel)+`).textContent`)
		return strings.Contains(text, s) != absent
	}) {
		return
	}
	t.Fatalf("%s text %q: want %q present=%v", sel, text, s, !absent)
}

// NewContext opens a tab in a new browser context of parent's browser:
// its own cookies and storage, as another browser would have.
func NewContext(t *testing.T, parent context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("new browser context: %v", err)
	}
	WatchDialogs(t, ctx)
	return ctx
}

// Screenshot saves the whole page as root/runtime/browser-test/name.
func Screenshot(t *testing.T, ctx context.Context, root, name string) {
	t.Helper()
	png := Value(t, ctx, chromedp.FullScreenshot(100))
	dir := filepath.Join(root, "runtime", "browser-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: runtime/browser-test/%s", name)
}
