package dce

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"dce/app/node"
)

// Transports and the command line, as they appear in node methods.
const (
	CLI       = "cli"
	WebSocket = "websocket"
	TCP       = "tcp"
	UDP       = "udp"
)

// Context is one request, on any transport, and what its action answers.
type Context struct {
	Node   *node.Node // the matched node
	Path   string     // the path as requested
	Method string     // "websocket", "tcp", "udp", "cli" or a lower-case HTTP method
	ID     int64      // request ID (socket transports), valid when HasID
	HasID  bool       // response mode: exactly one reply is sent
	Data   any        // decoded payload: map[string]any or []any, never nil
	Raw    string     // the payload as received (socket transports)
	Args   map[string][]string

	Conn   Conn          // the connection; nil for HTTP and CLI
	Hub    Hub           // the running server; nil for CLI
	HTTP   *http.Request // HTTP only
	Logger *slog.Logger

	replier Replier
	sid     string // HTTP: the request's session id
	status  Status
	replied bool
	body    string
	hasBody bool
}

// Replier is how a transport sends an explicit reply: data to the
// requester with its own path (in response mode the transport appends the
// request ID).
type Replier interface {
	Reply(path string, data any) error
}

// NewContext returns an empty request context whose Reply goes to r. The
// router fills it; tests of actions may too.
func NewContext(r Replier) *Context { return &Context{replier: r} }

// Status is the status data of a reply: only the keys set travel.
//
//	{}                                                   nothing set
//	{"data":{"id":3}}                                    Assign("id", 3)
//	{"status":false,"code":400,"message":"too long"}     Fail(400, "too long")
type Status struct {
	Status  *bool          `json:"status,omitempty"`
	Code    int            `json:"code,omitempty"`
	Message string         `json:"message,omitempty"`
	Data    map[string]any `json:"data,omitempty"`
}

// Error is an expected failure with a code, answered as status data.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Message) }

// Fail returns an *Error: `return dce.Fail(400, "nickname is required")`.
func Fail(code int, format string, args ...any) error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Code: code, Message: msg}
}

// FailStatus is the status data of a failure.
func FailStatus(code int, message string) Status {
	f := false
	return Status{Status: &f, Code: code, Message: message}
}

// Assign sets a value in the reply's data (and a template's .Data).
func (c *Context) Assign(key string, value any) {
	if c.status.Data == nil {
		c.status.Data = map[string]any{}
	}
	c.status.Data[key] = value
}

// Succeed marks the reply successful with a message: {"status":true,"message":...}.
func (c *Context) Succeed(message string) {
	t := true
	c.status.Status = &t
	c.status.Message = message
}

// SetBody sets the text a `raw` node renders.
func (c *Context) SetBody(text string) { c.body, c.hasBody = text, true }

// Body returns the text set by SetBody, or the node's extra.body.
func (c *Context) Body() string {
	if c.hasBody {
		return c.body
	}
	if c.Node != nil {
		if s, ok := c.Node.Extra["body"].(string); ok {
			return s
		}
	}
	return ""
}

// Result is the status data the action produced.
func (c *Context) Result() Status { return c.status }

// SetResult replaces the status data (used for failures).
func (c *Context) SetResult(s Status) { c.status = s }

// Reply answers explicitly, with its own path, instead of the automatic
// reply. In response mode the request ID is appended to path.
func (c *Context) Reply(path string, data any) error {
	if c.replier == nil {
		return errors.New("this transport cannot reply")
	}
	c.replied = true
	return c.replier.Reply(path, data)
}

// SessionID is the request's session: its connection's, or for HTTP the
// X-Session-Id header, then the session cookie ("" for none;
// session.auto_open gives a page request one). Use it with
// Hub.Sessions().Get/Set. Looked up when asked: a message costs nothing.
func (c *Context) SessionID() string {
	if c.sid == "" && c.Conn != nil {
		return c.Conn.SessionID()
	}
	return c.sid
}

// UseSession sets the session id of a request without a connection (the
// HTTP transport does).
func (c *Context) UseSession(sid string) { c.sid = sid }

// SetCookie adds a cookie to the HTTP response (call it before Reply). On
// other transports there are no cookies: it returns an error. After a
// login over HTTP, renew the session and hand the browser its new id:
//
//	id, err := c.Hub.Sessions().Renew(c.SessionID())
//	if err != nil {
//		return err
//	}
//	return c.SetCookie(&http.Cookie{Name: "dcesid", Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
func (c *Context) SetCookie(ck *http.Cookie) error {
	if s, ok := c.replier.(interface{ SetCookie(*http.Cookie) }); ok {
		s.SetCookie(ck)
		return nil
	}
	return errors.New("cookies travel on HTTP responses only")
}

// Replied reports whether the action answered with Reply.
func (c *Context) Replied() bool { return c.replied }

// Bind decodes the JSON payload into v (a pointer to a struct). A payload
// that is not a JSON object or array binds nothing. A wrong type is a 400
// naming the field.
func (c *Context) Bind(v any) error {
	raw := strings.TrimSpace(c.Raw)
	if raw == "" || (raw[0] != '{' && raw[0] != '[') {
		if c.Raw == "" && c.Data != nil {
			b, err := json.Marshal(c.Data) // HTTP and CLI carry data, not raw text
			if err != nil {
				return err
			}
			raw = string(b)
		} else {
			return nil
		}
	}
	err := json.Unmarshal([]byte(raw), v)
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "payload"
		}
		return Fail(400, "%s: want %s, got %s", field, te.Type.String(), te.Value)
	case errors.As(err, &se):
		return nil // invalid JSON is an empty request, as in the protocol
	}
	return Fail(400, "invalid payload: %v", err)
}

// Arg returns the last value of a CLI option or HTTP query parameter.
func (c *Context) Arg(name string) (string, bool) {
	vs := c.Args[name]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}
