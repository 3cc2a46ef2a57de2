package dce

import (
	"errors"
	"log/slog"

	"dce/app/codec"
)

// Hub is the running server as projects see it: it pushes to connections
// and knows the sessions.
type Hub interface {
	// Push encodes data once and queues it for connection fd.
	Push(fd uint64, path string, data any) error
	// Send queues a prepared message for each listed connection and
	// returns how many accepted it. Unknown or closed ones are skipped.
	Send(fds []uint64, m *Message) int
	// PushMember encodes data once and queues it for every connection of
	// member (all its tabs, browsers and devices, on every node of a
	// cluster), returning how many of this node's took it.
	PushMember(member int64, path string, data any) (int, error)
	// SendAll queues a prepared message for every connection, on every
	// node of a cluster.
	SendAll(m *Message) int
	// Publish hands m to the same project on every other node of a
	// cluster (one Redis publish): there, each server type's OnPublish
	// receives it with topic and delivers it to the connections it
	// chooses. On one node it does nothing. It fails (a 503 *Error) while
	// the cluster's Redis is down.
	Publish(topic string, m *Message) error
	// Conn finds a live connection.
	Conn(fd uint64) (Conn, bool)
	// Conns lists the live connections, by fd.
	Conns() []Conn
	// Sessions maps connections to sessions and logged-in members.
	Sessions() Sessions
	Logger() *slog.Logger
}

// Conn is one client connection (WebSocket or TCP), or for UDP the sender
// of one datagram.
type Conn interface {
	FD() uint64        // increasing from 1; 0 for a UDP sender
	SessionID() string // random, per connection
	Transport() string // websocket, tcp or udp
	RemoteAddr() string
	// Push queues data for this connection.
	Push(path string, data any) error
	// Send queues a prepared message.
	Send(m *Message) error
	// Close ends the connection, after what is already queued, with a
	// reason for the log.
	Close(reason string)
}

// Mode says how a queued message may combine with others of the same path
// still waiting for a slow connection.
type Mode uint8

const (
	// Queue sends every message as it is.
	Queue Mode = iota
	// Merge joins consecutive queued messages whose bodies are JSON arrays
	// into one frame carrying one array (setMessageList).
	Merge
	// Latest replaces a queued, unsent message of the same path: the
	// receiver only needs the newest one (setUserList).
	Latest
)

// Message is an outgoing push encoded once, for any number of connections.
type Message struct {
	Path string
	Body []byte
	Mode Mode
	// Bare sends the body alone, without "PATH;".
	Bare bool
}

// NewMessage encodes data (a string as is, anything else as JSON).
func NewMessage(path string, data any, mode Mode) (*Message, error) {
	body, err := codec.Body(data)
	if err != nil {
		return nil, err
	}
	return &Message{Path: path, Body: body, Mode: mode}, nil
}

// Sessions is the session manager (SPEC §9): connections ↔ sessions ↔
// logged-in members, and session data. A session may have several
// connections (tabs), a member several sessions (browsers, devices). What
// outlives a connection — a session's login and data — is kept by the
// configured store (session.store: memory, file or redis); a store that
// fails makes the calls that need it return an error wrapping
// session.ErrUnavailable (answer 503).
type Sessions interface {
	// Open maps a new connection to session sid; presented tells that the
	// client sent that id (cookie, query), so its login is looked up.
	Open(fd uint64, sid string, presented bool)
	// Close drops a closed connection's mappings (after the close hook).
	Close(fd uint64)
	// SessionOf returns the session id of fd ("" when closed).
	SessionOf(fd uint64) string
	// Login logs in the session of fd as member: all its connections, and
	// any later connection presenting it.
	Login(fd uint64, member int64) error
	// Logout logs out the session of fd only, reporting the member it had.
	Logout(fd uint64) (member int64, ok bool, err error)
	// Member returns the member logged in on fd.
	Member(fd uint64) (member int64, ok bool)
	// MemberConns lists the logged-in connections of a member.
	MemberConns(member int64) []uint64
	// Places counts the logged-in connections of a member (loginPlaces),
	// on every node of a cluster.
	Places(member int64) int
	// Online lists the members with at least one logged-in connection,
	// on any node of a cluster, ascending. The slice is shared: do not
	// modify it.
	Online() []int64
	// OnlineConns lists every logged-in connection. The slice is shared:
	// do not modify it.
	OnlineConns() []uint64

	// Get decodes the value of key in session sid into v.
	Get(sid, key string, v any) (ok bool, err error)
	// Set stores value (as JSON) under key in session sid.
	Set(sid, key string, value any) error
	// Delete removes key from session sid.
	Delete(sid, key string) error
	// Destroy logs session sid out everywhere and forgets its data.
	Destroy(sid string) error
	// Renew moves session sid to a new id, with its data and login.
	Renew(sid string) (string, error)
	// SetSession writes key = value into every live session of member.
	SetSession(member int64, key string, value any) error
}

// Codec turns frames into messages and messages into frames.
type Codec interface {
	// Decode parses one frame; binary reports a WebSocket binary frame.
	Decode(frame []byte, binary bool) (codec.Message, error)
	// Append appends one outgoing message to dst.
	Append(dst []byte, path string, id int64, hasID bool, body []byte) []byte
}

// TextCodec is the standard PATH[:ID];PAYLOAD codec. It refuses binary frames.
type TextCodec struct{}

var _ Codec = TextCodec{}

// ErrClosed is returned by Push and Send to a connection that has closed
// (or is closing): test for it with errors.Is.
var ErrClosed = errors.New("connection closed")

// ErrBinary is returned by TextCodec for binary frames.
var ErrBinary = &Error{Code: 400, Message: "binary frames are not supported: send text PATH[:ID];JSON"}

// Decode implements Codec.
func (TextCodec) Decode(frame []byte, binary bool) (codec.Message, error) {
	if binary {
		return codec.Message{}, ErrBinary
	}
	return codec.Decode(frame)
}

// Append implements Codec.
func (TextCodec) Append(dst []byte, path string, id int64, hasID bool, body []byte) []byte {
	return codec.Append(dst, path, id, hasID, body)
}
