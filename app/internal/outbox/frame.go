package outbox

import (
	"encoding/binary"

	"dce/app/codec"
	"dce/app/dce"
)

// Encoding frames messages for one transport.
type Encoding struct {
	// WebSocket puts each message in an unmasked text frame; otherwise
	// each message is one line (TCP).
	WebSocket bool
	// Codec replaces the standard text codec; nil keeps it, and lets large
	// bodies be written in place.
	Codec dce.Codec
}

// appendMessage appends one message, framed.
func (e Encoding) appendMessage(buf []byte, f frame, body []byte) []byte {
	if e.Codec != nil { // a custom codec: encode, then frame
		payload := body
		if !f.m.Bare {
			payload = e.Codec.Append(nil, f.m.Path, f.id, f.hasID, body)
		}
		if e.WebSocket {
			buf = wsHeader(buf, 0x81, len(payload))
		}
		buf = append(buf, payload...)
	} else {
		buf = e.appendHead(buf, f, len(body))
		buf = append(buf, body...)
	}
	return e.appendTail(buf)
}

// appendHead appends the frame header and the text codec's "PATH[:ID];";
// a body of bodyLen bytes follows, then appendTail.
func (e Encoding) appendHead(buf []byte, f frame, bodyLen int) []byte {
	prefix := 0
	if !f.m.Bare {
		prefix = codec.HeadLen(f.m.Path, f.id, f.hasID)
	}
	if e.WebSocket {
		buf = wsHeader(buf, 0x81, prefix+bodyLen)
	}
	if !f.m.Bare {
		buf = codec.AppendHead(buf, f.m.Path, f.id, f.hasID)
	}
	return buf
}

// appendTail ends a message: the newline of a TCP line.
func (e Encoding) appendTail(buf []byte) []byte {
	if !e.WebSocket {
		buf = append(buf, '\n')
	}
	return buf
}

// appendClose appends a WebSocket close frame (nothing for TCP).
func (e Encoding) appendClose(buf []byte, code int, reason string) []byte {
	if !e.WebSocket {
		return buf
	}
	if len(reason) > 120 {
		reason = reason[:120]
	}
	buf = wsHeader(buf, 0x88, 2+len(reason))
	buf = binary.BigEndian.AppendUint16(buf, uint16(code))
	return append(buf, reason...)
}

// pingFrame is a WebSocket ping without payload.
var pingFrame = []byte{0x89, 0}

// wsHeader appends the header of an unmasked, final frame of the given
// first byte (0x81 text, 0x88 close).
func wsHeader(buf []byte, first byte, n int) []byte {
	switch {
	case n <= 125:
		return append(buf, first, byte(n))
	case n <= 0xFFFF:
		return append(buf, first, 126, byte(n>>8), byte(n))
	}
	buf = append(buf, first, 127)
	return binary.BigEndian.AppendUint64(buf, uint64(n))
}

// mergeArrays joins the JSON array bodies of several messages into one
// array. A body that is not an array is kept as one element.
func mergeArrays(dst []byte, items []frame) []byte {
	dst = append(dst, '[')
	first := true
	for _, f := range items {
		b := f.m.Body
		inner := b
		if len(b) >= 2 && b[0] == '[' && b[len(b)-1] == ']' {
			inner = b[1 : len(b)-1]
		}
		if len(inner) == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, inner...)
	}
	return append(dst, ']')
}
