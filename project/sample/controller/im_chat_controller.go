package controller

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"dce/app/dce"
	"dce/project/sample/service"
)

// ImChatController is the terminal client: ./dce sample chat -nickname NAME
// joins the chat as the page does, over WebSocket (-url) or a TCP line
// connection (-tcp host:port). Messages appear as they come; a line typed
// is sent; /who lists who is online; /quit (or end of input) leaves.
type ImChatController struct {
	env dce.Env
}

// NewImChatController chats with the server env's configuration names.
func NewImChatController(env dce.Env) *ImChatController { return &ImChatController{env: env} }

// Actions are the controller's actions, by the names nodes.yaml uses.
func (ctl *ImChatController) Actions() map[string]dce.Action {
	return map[string]dce.Action{"run": ctl.run}
}

// line is one connection speaking PATH[:ID];JSON, one message per frame or line.
type line interface {
	send(msg string) error
	recv() (string, error)
	close()
}

type wsLine struct{ c *websocket.Conn }

func (l wsLine) send(m string) error { return l.c.WriteMessage(websocket.TextMessage, []byte(m)) }
func (l wsLine) recv() (string, error) {
	_, b, err := l.c.ReadMessage()
	return string(b), err
}
func (l wsLine) close() { l.c.Close() }

type tcpLine struct {
	c net.Conn
	r *bufio.Reader
}

func (l tcpLine) send(m string) error { _, err := io.WriteString(l.c, m+"\n"); return err }
func (l tcpLine) recv() (string, error) {
	s, err := l.r.ReadString('\n')
	return strings.TrimRight(s, "\r\n"), err
}
func (l tcpLine) close() { l.c.Close() }

// chatView is what the terminal shows: the online list and who "you" are.
type chatView struct {
	loggedOut chan struct{} // closed when the logout's reply has come

	mu     sync.Mutex
	out    io.Writer
	me     int64
	online []service.Member
}

func (v *chatView) printf(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fmt.Fprintf(v.out, format, args...)
}

// run: ./dce sample chat -nickname Ada [-brief TEXT] [-url ws://127.0.0.1:20461/ | -tcp 127.0.0.1:20462]
func (ctl *ImChatController) run(c *dce.Context) error {
	nickname, _ := c.Arg("nickname")
	if strings.TrimSpace(nickname) == "" {
		return dce.Fail(400, "-nickname: who are you? ./dce sample chat -nickname Ada")
	}
	brief, _ := c.Arg("brief")
	in, out := ctl.env.Stdin, ctl.env.Stdout
	if in == nil {
		in = os.Stdin
	}
	if out == nil {
		out = os.Stdout
	}
	conn, where, err := ctl.dial(c)
	if err != nil {
		return dce.Fail(503, "%v", err)
	}
	defer conn.close()
	v := &chatView{out: out, loggedOut: make(chan struct{})}
	login, _ := json.Marshal(map[string]any{"nickname": nickname, "brief": brief, "history": 20})
	if err := conn.send("sample/im/login:1;" + string(login)); err != nil {
		return dce.Fail(503, "%s: %v", where, err)
	}
	ended := make(chan error, 1)
	go func() { ended <- ctl.receive(conn, v) }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	id := 1
	for {
		select {
		case err := <-ended:
			if err != nil {
				return dce.Fail(503, "%v", err)
			}
			return nil
		case text, ok := <-lines:
			switch t := strings.TrimSpace(text); {
			case !ok || t == "/quit":
				// Close only once the server has the logout: a close with
				// pushes still unread could reset the connection and lose it.
				if conn.send("sample/im/logout:"+strconv.Itoa(id+1)+";{}") == nil {
					select {
					case <-v.loggedOut:
					case <-ended:
					case <-time.After(2 * time.Second):
					}
				}
				return nil
			case t == "/who":
				v.who()
			case t == "":
			default:
				id++
				body, _ := json.Marshal(map[string]string{"message": text})
				if err := conn.send("sample/im/send:" + strconv.Itoa(id) + ";" + string(body)); err != nil {
					return dce.Fail(503, "%v", err)
				}
			}
		}
	}
}

func (ctl *ImChatController) dial(c *dce.Context) (line, string, error) {
	if addr, ok := c.Arg("tcp"); ok {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return nil, addr, err
		}
		return tcpLine{c: nc, r: bufio.NewReader(nc)}, addr, nil
	}
	url := "ws://127.0.0.1:20461/"
	if ctl.env.Config != nil {
		url = "ws://127.0.0.1:" + strconv.Itoa(ctl.env.Config.Websocket.Port) + "/"
	}
	if u, ok := c.Arg("url"); ok {
		url = u
	}
	wc, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		return nil, url, err
	}
	return wsLine{c: wc}, url, nil
}

// receive prints what the server pushes until the connection ends.
func (ctl *ImChatController) receive(conn line, v *chatView) error {
	for {
		frame, err := conn.recv()
		if err != nil {
			v.printf("* the connection closed\n")
			return nil
		}
		head, body, _ := strings.Cut(frame, ";")
		path, id, _ := strings.Cut(head, ":")
		switch {
		case path == service.PathUserList:
			var list []service.Member
			if json.Unmarshal([]byte(body), &list) == nil {
				v.mu.Lock()
				v.online = list
				v.mu.Unlock()
			}
		case path == service.PathMessageList:
			var msgs []service.Message
			if json.Unmarshal([]byte(body), &msgs) != nil {
				continue
			}
			for _, m := range msgs {
				who := m.Nickname
				if m.Mid == v.me {
					who += " (you)"
				}
				t := m.CreateTime
				if len(t) >= 19 {
					t = t[11:19]
				}
				v.printf("[%s] %s: %s\n", t, who, m.Message)
			}
		case path == "sample/im/logout" && id != "": // the reply to /quit's logout
			close(v.loggedOut)
		case id != "": // a reply
			var st struct {
				Status  *bool  `json:"status"`
				Message string `json:"message"`
				Data    struct {
					ID       int64  `json:"id"`
					Nickname string `json:"nickname"`
				} `json:"data"`
			}
			if json.Unmarshal([]byte(body), &st) != nil {
				continue
			}
			if st.Status != nil && !*st.Status {
				v.printf("! %s\n", st.Message)
				if path == "sample/im/login" {
					return errors.New("login refused: " + st.Message)
				}
				continue
			}
			if path == "sample/im/login" {
				v.mu.Lock()
				v.me = st.Data.ID
				v.mu.Unlock()
				v.printf("* you are %s (id %d). Type a message and Enter; /who lists who is online; /quit leaves.\n", st.Data.Nickname, st.Data.ID)
			}
		}
	}
}

// who prints the online list.
func (v *chatView) who() {
	v.mu.Lock()
	defer v.mu.Unlock()
	names := make([]string, 0, len(v.online))
	for _, m := range v.online {
		n := m.Nickname
		if m.ID == v.me {
			n += " (you)"
		}
		names = append(names, n)
	}
	fmt.Fprintf(v.out, "* online (%d): %s\n", len(names), strings.Join(names, ", "))
}
