package sample_test

import (
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"dce/app/dce"
	"dce/app/servertest"
	"dce/app/wait"
	"dce/project/sample/controller"
)

// output is a terminal's screen: safe to read while the client writes.
type output struct {
	mu sync.Mutex
	b  strings.Builder
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) waitFor(t *testing.T, want string) {
	t.Helper()
	var s string
	if !wait.Until(servertest.Timeout, func() bool {
		o.mu.Lock()
		s = o.b.String()
		o.mu.Unlock()
		return strings.Contains(s, want)
	}) {
		t.Fatalf("the terminal never showed %q; it shows:\n%s", want, s)
	}
}

// TestTerminalChat: `./dce sample chat` joins the chat from a terminal
// (scripted stdin, over WebSocket and over TCP) and talks with a page's
// client: its lines are sent, others' messages and /who are shown, /quit
// leaves.
func TestTerminalChat(t *testing.T) {
	s := startChat(t, nil)
	bo := servertest.DialWS(t, s.HTTPAddrs()[0])
	bo.Send(`sample/im/login:1;{"nickname":"Bo"}`)
	skipTo(t, bo, `sample/im/login:1;{"data"`)

	for _, via := range []struct{ name, key, addr string }{
		{"websocket", "url", "ws://" + s.HTTPAddrs()[0] + "/"},
		{"tcp", "tcp", servertest.Sock(t, s, "tcp")},
	} {
		t.Run(via.name, func(t *testing.T) {
			stdin, typing := io.Pipe()
			screen := &output{}
			ctl := controller.NewImChatController(dce.Env{Config: s.Config(), Stdin: stdin, Stdout: screen})
			c := dce.NewContext(nil)
			c.Args = map[string][]string{"nickname": {"Cy"}, via.key: {via.addr}}
			done := make(chan error, 1)
			go func() { done <- ctl.Actions()["run"](c) }()
			screen.waitFor(t, "* you are Cy")

			io.WriteString(typing, "hello from a terminal\n")
			for !strings.Contains(skipTo(t, bo, "setMessageList;"), `"message":"hello from a terminal","create_time"`) {
			}
			bo.Send(`sample/im/send;{"message":"hi Cy"}`)
			screen.waitFor(t, "] Bo: hi Cy")
			screen.waitFor(t, "] Cy (you): hello from a terminal")

			io.WriteString(typing, "/who\n")
			screen.waitFor(t, "* online (2): ")
			screen.waitFor(t, "Cy (you)")

			io.WriteString(typing, "/quit\n")
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("the client ended with %v", err)
				}
			case <-time.After(servertest.Timeout):
				t.Fatal("/quit did not end the client")
			}
			typing.Close()
		})
	}
}
