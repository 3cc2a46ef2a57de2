package server

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"dce/app/dce"
)

// conn is one WebSocket or TCP connection.
//
// Its reader goroutine owns its life: it reads, dispatches and, when reading
// ends, removes the connection from the hub. Writes never block the caller:
// messages wait in a bounded queue, and a writer goroutine exists only while
// there is something to write (an idle connection holds none). When the
// queue is full the peer is too slow: it is disconnected, never waited for.
type conn struct {
	hub       *Hub
	fd        uint64
	sid       string
	transport string
	remote    string
	ip        netip.Addr  // the remote address, for the per-address limits
	nc        net.Conn    // raw connection; writes go through writeVec
	lock      *sync.Mutex // WebSocket: shared with gorilla's control-frame writes; nil for TCP
	codec     dce.Codec
	text      bool         // codec is the standard TextCodec: bodies may be written without copying
	lastSeen  atomic.Int64 // coarse unix seconds of the last frame read
	limit     limiter      // message rate; used by the reader only

	mu        sync.Mutex // guards the fields below
	queue     []outgoing
	lastWrite int64       // nanotime of the last batch written
	writing   bool        // a writer goroutine is running, or deferred
	deferred  bool        // the writer waits for timer to fire
	timer     *time.Timer // starts a deferred writer; made at the first deferral
	closing   bool        // no more messages are accepted
	closeCode int         // WebSocket close code sent after the queue (0: none)
	reason    string      // why it closes, for the log
}

// outgoing is one queued frame.
type outgoing struct {
	m     *dce.Message
	id    int64
	hasID bool
	kind  frameKind
}

type frameKind uint8

const (
	frameText frameKind = iota
	framePing
	frameClose
)

var _ dce.Conn = (*conn)(nil)

func (c *conn) FD() uint64         { return c.fd }
func (c *conn) SessionID() string  { return c.sid }
func (c *conn) Transport() string  { return c.transport }
func (c *conn) RemoteAddr() string { return c.remote }

// Push implements dce.Conn.
func (c *conn) Push(path string, data any) error {
	m, err := dce.NewMessage(path, data, dce.Queue)
	if err != nil {
		return err
	}
	return c.Send(m)
}

// Send implements dce.Conn.
func (c *conn) Send(m *dce.Message) error {
	if !c.enqueue(outgoing{m: m}) {
		return dce.ErrClosed
	}
	return nil
}

// Close implements dce.Conn: queued messages are sent first.
func (c *conn) Close(reason string) { c.closeAfterQueue(1000, reason) }

// reply queues a reply carrying the request ID.
func (c *conn) reply(path string, id int64, hasID bool, body []byte) {
	c.enqueue(outgoing{m: &dce.Message{Path: path, Body: body}, id: id, hasID: hasID})
}

// enqueue adds a frame to the queue and starts a writer when none runs. It
// reports false when the connection is closing or was just dropped because
// its queue is full.
func (c *conn) enqueue(o outgoing) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	if o.m != nil && o.m.Mode == dce.Latest {
		for i := len(c.queue) - 1; i >= 0; i-- {
			if q := c.queue[i].m; q != nil && q.Mode == dce.Latest && q.Path == o.m.Path {
				c.queue[i] = o
				c.mu.Unlock()
				c.hub.stats.pushes.Add(1)
				return true
			}
		}
	}
	if len(c.queue) >= c.hub.limits().SendQueue && o.kind == frameText {
		c.mu.Unlock()
		c.hub.stats.slow.Add(1)
		c.drop("send queue full: the client reads too slowly")
		return false
	}
	if c.queue == nil {
		c.queue = getQueue()
	}
	c.queue = append(c.queue, o)
	switch {
	case !c.writing:
		c.writing = true
		if o.hasID { // a reply is never held back
			go c.writeLoop()
		} else {
			c.startWriter()
		}
	case c.deferred && (o.hasID || len(c.queue) >= c.hub.limits().SendQueue/2):
		c.deferred = false // a reply, or filling up: write now rather than after the gap
		go c.writeLoop()
	}
	c.mu.Unlock()
	c.hub.stats.pushes.Add(1)
	return true
}

// startWriter starts the writer goroutine (c.mu held). A connection that was
// written to less than the coalescing gap ago is written when the gap has
// passed, by its own timer: under load several messages then share one
// write (and one frame when they merge), while an idle connection is still
// written at once. Each connection keeps its own rhythm, so the writes of
// 10,000 connections spread over the gap instead of bunching at one tick.
func (c *conn) startWriter() {
	if gap := c.hub.coalesce(); gap > 0 {
		if wait := c.lastWrite + int64(gap) - nanotime(); wait > 0 {
			c.deferred = true
			if c.timer == nil {
				c.timer = time.AfterFunc(time.Duration(wait), c.writeDeferred)
			} else {
				c.timer.Reset(time.Duration(wait))
			}
			return
		}
	}
	go c.writeLoop() // ends when the queue is empty
}

// writeDeferred runs on the timer's goroutine: it writes what waited,
// unless a reply, a full queue or a close already started the writer.
func (c *conn) writeDeferred() {
	c.mu.Lock()
	if !c.deferred {
		c.mu.Unlock()
		return
	}
	c.deferred = false
	c.mu.Unlock()
	c.writeLoop()
}

var clockStart = time.Now()

// nanotime is a cheap monotonic clock.
func nanotime() int64 { return int64(time.Since(clockStart)) }

// ping sends a keepalive ping. When no writer runs, the caller writes the
// two bytes itself: pinging 10,000 idle connections starts no goroutine.
func (c *conn) ping() {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if c.writing { // the writer sends it after what is queued
		c.queue = append(c.queue, outgoing{kind: framePing})
		c.mu.Unlock()
		return
	}
	if c.unsent() > 0 {
		// The peer has not taken what was written last: an inline write
		// could wait for it and hold up the keepalive of everyone else.
		// A writer sends the ping and drops the peer after write_timeout.
		c.queue = append(c.queue, outgoing{kind: framePing})
		c.writing = true
		go c.writeLoop()
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.mu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	err := c.writeVec(&net.Buffers{pingFrame})
	c.mu.Lock()
	c.writing = false
	if len(c.queue) > 0 && !c.closing {
		c.writing = true
		c.startWriter()
	}
	c.mu.Unlock()
	if err != nil {
		c.drop(writeFailure(err))
	}
}

var pingFrame = []byte{0x89, 0}

// unsent is the number of bytes in the socket's send queue that the peer
// has not acknowledged (SIOCOUTQ); 0 when unknown.
func (c *conn) unsent() int {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = raw.Control(func(fd uintptr) {
		var v int32
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&v))); e == 0 {
			n = int(v)
		}
	})
	return n
}

// writeFailure is the close reason of a failed write: a peer that went
// away is an ordinary close, anything else (a timeout: the peer stopped
// reading) is logged as a problem.
func writeFailure(err error) string {
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) {
		return "peer gone: " + err.Error()
	}
	return "write failed: " + err.Error()
}

// closeAfterQueue stops accepting messages, sends what is queued, then the
// close frame (WebSocket) and closes.
func (c *conn) closeAfterQueue(code int, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing, c.closeCode, c.reason = true, code, reason
	c.queue = append(c.queue, outgoing{kind: frameClose})
	switch {
	case !c.writing:
		c.writing = true
		go c.writeLoop()
	case c.deferred: // closing does not wait for the gap
		c.deferred = false
		go c.writeLoop()
	}
	c.mu.Unlock()
}

// drop closes at once, discarding the queue.
func (c *conn) drop(reason string) {
	c.mu.Lock()
	if c.reason == "" || !c.closing {
		c.reason = reason
	}
	c.closing = true
	c.queue = nil
	c.mu.Unlock()
	c.nc.Close() // the reader fails and cleans up
}

func (c *conn) closeReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// writeLoop drains the queue in batches: one write (one syscall, writev for
// large bodies) per batch.
func (c *conn) writeLoop() {
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		if len(batch) == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		code := c.closeCode
		c.lastWrite = nanotime()
		c.mu.Unlock()
		closeNow, err := c.writeBatch(batch, code)
		putQueue(batch)
		if err != nil {
			c.drop(writeFailure(err))
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			return
		}
		if closeNow {
			c.finishClose()
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			return
		}
	}
}

// finishClose ends a connection whose close frame has been sent: the peer
// gets a short time to answer, then the socket closes.
func (c *conn) finishClose() {
	if c.transport != dce.WebSocket {
		c.nc.Close()
		return
	}
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
}

const (
	maxMerge      = 512      // messages joined into one frame at most
	zeroCopyBytes = 16 << 10 // bodies this large are written in place (writev), not copied
)

var queuePool = sync.Pool{New: func() any { q := make([]outgoing, 0, 8); return &q }}

func getQueue() []outgoing { return (*queuePool.Get().(*[]outgoing))[:0] }

func putQueue(q []outgoing) {
	if cap(q) > 4096 {
		return
	}
	clear(q)
	q = q[:0]
	queuePool.Put(&q)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// writeBatch writes queued frames; it reports whether a close frame was sent.
func (c *conn) writeBatch(batch []outgoing, closeCode int) (closed bool, err error) {
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	var sp *[]byte // merge scratch, only when messages merge
	var scratch []byte
	var vec net.Buffers
	for i := 0; i < len(batch); {
		o := batch[i]
		j := i + 1
		switch o.kind {
		case framePing:
			buf = append(buf, 0x89, 0)
		case frameClose:
			closed = true
			if c.transport == dce.WebSocket {
				reason := c.closeReason()
				if len(reason) > 120 {
					reason = reason[:120]
				}
				buf = append(buf, 0x88, byte(2+len(reason)))
				buf = binary.BigEndian.AppendUint16(buf, uint16(closeCode))
				buf = append(buf, reason...)
			}
		default:
			body := o.m.Body
			if o.m.Mode == dce.Merge && !o.hasID {
				for j < len(batch) && j-i < maxMerge && batch[j].kind == frameText && batch[j].m.Mode == dce.Merge &&
					!batch[j].hasID && batch[j].m.Path == o.m.Path {
					j++
				}
				if j-i > 1 {
					if sp == nil {
						sp = bufPool.Get().(*[]byte)
						scratch = (*sp)[:0]
					}
					scratch = mergeArrays(scratch[:0], batch[i:j])
					body = scratch
				}
			}
			if c.text && j-i == 1 && len(body) >= zeroCopyBytes {
				buf = c.appendHead(buf, o, len(body))
				vec = append(vec, buf, body)
				buf = buf[len(buf):]
				if c.transport == dce.TCP {
					buf = append(buf, '\n')
				}
			} else {
				buf = c.appendFrame(buf, o, body)
			}
		}
		i = j
	}
	if len(buf) > 0 {
		vec = append(vec, buf)
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.hub.limits().WriteTimeout))
	err = c.writeVec(&vec)
	if cap(buf) <= 256<<10 {
		*bp = buf[:0]
		bufPool.Put(bp)
	}
	if sp != nil && cap(scratch) <= 256<<10 {
		*sp = scratch[:0]
		bufPool.Put(sp)
	}
	return closed, err
}

func (c *conn) writeVec(vec *net.Buffers) error {
	if c.lock != nil {
		c.lock.Lock()
		defer c.lock.Unlock()
	}
	_, err := vec.WriteTo(c.nc)
	return err
}

// appendFrame appends one message framed for the transport.
func (c *conn) appendFrame(buf []byte, o outgoing, body []byte) []byte {
	if !c.text { // a custom codec: encode, then frame
		payload := body
		if !o.m.Bare {
			payload = c.codec.Append(nil, o.m.Path, o.id, o.hasID, body)
		}
		if c.transport == dce.WebSocket {
			buf = wsHeader(buf, len(payload))
		}
		buf = append(buf, payload...)
	} else {
		buf = c.appendHead(buf, o, len(body))
		buf = append(buf, body...)
	}
	if c.transport == dce.TCP {
		buf = append(buf, '\n')
	}
	return buf
}

// appendHead appends the frame header and "PATH[:ID];" of the text codec;
// the body follows.
func (c *conn) appendHead(buf []byte, o outgoing, bodyLen int) []byte {
	prefix := 0
	if !o.m.Bare {
		prefix = len(o.m.Path) + 1
		if o.hasID {
			prefix += 1 + digits(o.id)
		}
	}
	if c.transport == dce.WebSocket {
		buf = wsHeader(buf, prefix+bodyLen)
	}
	if !o.m.Bare {
		buf = append(buf, o.m.Path...)
		if o.hasID {
			buf = append(buf, ':')
			buf = strconv.AppendInt(buf, o.id, 10)
		}
		buf = append(buf, ';')
	}
	return buf
}

func digits(n int64) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// wsHeader appends the header of an unmasked, final text frame.
func wsHeader(buf []byte, n int) []byte {
	switch {
	case n <= 125:
		return append(buf, 0x81, byte(n))
	case n <= 0xFFFF:
		return append(buf, 0x81, 126, byte(n>>8), byte(n))
	}
	buf = append(buf, 0x81, 127)
	return binary.BigEndian.AppendUint64(buf, uint64(n))
}

// mergeArrays joins the JSON array bodies of several messages into one
// array. A body that is not an array is kept as one element.
func mergeArrays(dst []byte, items []outgoing) []byte {
	dst = append(dst, '[')
	first := true
	for _, o := range items {
		b := o.m.Body
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
