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
	// SendAll queues a prepared message for every connection.
	SendAll(m *Message) int
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

// Sessions is the session manager, as in Dce: connections ↔ sessions ↔
// logged-in members. The engine keeps one in memory; a shared store (Redis)
// can implement the same interface for several server nodes.
type Sessions interface {
	// Open maps a new connection to a session.
	Open(fd uint64, sid string)
	// Close drops a closed connection's mappings (after the close hook).
	Close(fd uint64)
	// Login marks the session of fd as logged in as member.
	Login(fd uint64, member int64)
	// Logout logs the session of fd out, reporting the member it had.
	Logout(fd uint64) (member int64, ok bool)
	// Member returns the member logged in on fd.
	Member(fd uint64) (member int64, ok bool)
	// MemberConns lists the logged-in connections of a member.
	MemberConns(member int64) []uint64
	// Online lists the members with at least one logged-in connection, ascending.
	Online() []int64
	// OnlineConns lists every logged-in connection. The slice is shared:
	// do not modify it.
	OnlineConns() []uint64
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
