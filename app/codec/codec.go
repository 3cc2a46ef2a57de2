// Package codec reads and writes Dce's text wire format, used on WebSocket
// text frames, TCP lines and UDP datagrams.
//
// Client to server: PATH[:ID];PAYLOAD. The text is split at its first ';',
// then the left part at its first ':'. Text without ';' has an empty path and
// is all payload. PAYLOAD is JSON: an object or array becomes the request
// data, anything else an empty map.
//
// Server to client: PATH;DATA, PATH:ID;DATA for a reply, or DATA alone for a
// push without a path. A string DATA travels as is; anything else as JSON with
// HTML characters and non-ASCII left unescaped.
//
//	m, err := codec.Decode([]byte(`sample/im/send:7;{"message":"hi"}`))
//	// m.Path == "sample/im/send", m.ID == 7, m.HasID == true
//	out := codec.Append(nil, "sample/im/send", 7, true, []byte(`{}`))
//	// string(out) == `sample/im/send:7;{}`
package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxID is the largest request ID accepted: IDs must survive a round trip
// through a JavaScript number.
const MaxID = 1<<53 - 1

// Message is one decoded client message.
type Message struct {
	Path    string // node path; empty for a greeting
	ID      int64  // request ID, valid when HasID
	HasID   bool   // response mode: the client wants exactly one reply
	Payload string // the raw text after the first ';'
}

// ErrBadID reports an ID that is not a decimal integer in [0, MaxID].
// The message is still returned with its path so the caller can answer.
var ErrBadID = errors.New("request id must be a decimal integer between 0 and 9007199254740991")

// Decode splits a frame into path, ID and payload. It fails only for a bad
// ID; the returned Message then still carries the path.
func Decode(frame []byte) (Message, error) {
	semi := bytes.IndexByte(frame, ';')
	if semi < 0 {
		return Message{Payload: string(frame)}, nil
	}
	head := frame[:semi]
	m := Message{Payload: string(frame[semi+1:])}
	colon := bytes.IndexByte(head, ':')
	if colon < 0 {
		m.Path = string(head)
		return m, nil
	}
	m.Path = string(head[:colon])
	id, err := parseID(head[colon+1:])
	if err != nil {
		return m, fmt.Errorf("%w, got %q", ErrBadID, truncate(head[colon+1:], 32))
	}
	m.ID, m.HasID = id, true
	return m, nil
}

func parseID(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 16 {
		return 0, ErrBadID
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, ErrBadID
		}
		n = n*10 + int64(c-'0')
	}
	if n > MaxID {
		return 0, ErrBadID
	}
	return n, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// Data decodes a payload into request data: the JSON object or array it
// holds, or an empty map for anything else ("", "undefined", invalid JSON,
// a bare number or string).
func Data(payload string) any {
	p := strings.TrimLeft(payload, " \t\r\n")
	if len(p) > 0 && (p[0] == '{' || p[0] == '[') {
		var v any
		if json.Unmarshal([]byte(p), &v) == nil {
			return v
		}
	}
	return map[string]any{}
}

// Body encodes outgoing data: a string or []byte as is, anything else as
// JSON without HTML escaping.
func Body(data any) ([]byte, error) {
	switch v := data.(type) {
	case string:
		return []byte(v), nil
	case []byte:
		return v, nil
	case json.RawMessage:
		return v, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(data); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return b[:len(b)-1], nil // Encode adds a newline
}

// Append appends PATH[:ID];BODY to dst. The greeting reply to an empty path
// is ";BODY". (A push without a path is BODY alone: callers append the body.)
func Append(dst []byte, path string, id int64, hasID bool, body []byte) []byte {
	return append(AppendHead(dst, path, id, hasID), body...)
}

// AppendHead appends PATH[:ID]; — what precedes the body — to dst.
func AppendHead(dst []byte, path string, id int64, hasID bool) []byte {
	dst = append(dst, path...)
	if hasID {
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, id, 10)
	}
	return append(dst, ';')
}

// HeadLen is the length of what AppendHead appends.
func HeadLen(path string, id int64, hasID bool) int {
	n := len(path) + 1
	if hasID {
		n++
		if id < 0 {
			n++
			id = -id
		}
		for n++; id >= 10; id /= 10 {
			n++
		}
	}
	return n
}
