// Package outbox is the outgoing side of one connection: a bounded queue of
// frames, the rules by which queued messages combine (dce.Merge,
// dce.Latest), write batching under a coalescing gap, keepalive pings and
// the close sequence.
//
// Sending never blocks the caller: frames wait in the queue, and a writer
// goroutine exists only while there is something to write (an idle
// connection holds none). When the queue is full the peer reads too slowly:
// it is dropped, never waited for. The Outbox owns all of this state under
// its one mutex; the server sees only its methods.
package outbox

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"dce/app/dce"
)

// Limits are read at each use, so a reload reaches open connections.
type Limits struct {
	Queue        int           // frames waiting at most; past it the peer is dropped as slow
	WriteTimeout time.Duration // one batch's write; past it the peer is dropped
}

// Host is what an outbox needs from the server it belongs to; one Host
// serves every outbox of a server. Limits is asked at every enqueue (a
// broadcast asks it once per connection): keep it an atomic load.
type Host interface {
	Limits() Limits
	Coalesce() time.Duration // least time between two writes to one peer; 0 writes at once
	Pushed()                 // a frame was queued
	Slow()                   // a peer was dropped for a full queue
}

// Outbox is one connection's outgoing side. The zero value is not ready:
// call Init.
type Outbox struct {
	host Host
	enc  Encoding
	nc   net.Conn
	lock *sync.Mutex // shared with another writer of nc (gorilla's control frames); nil for none

	// Lock order: mu, then lock (server.Hub lists the whole order). mu is
	// never held while writing to nc: the writer takes a batch under mu,
	// releases it, then writes under lock.
	mu        sync.Mutex // guards the fields below
	queue     []frame
	lastWrite int64       // nanotime of the last batch written
	writing   bool        // a writer runs, is deferred, or the outbox is held
	deferred  bool        // the writer waits for timer to fire
	timer     *time.Timer // starts a deferred writer; made at the first deferral
	closing   bool        // no more frames are accepted
	closeCode int         // WebSocket close code sent after the queue
	reason    string      // why it closes, for the log
}

type frame struct {
	m     *dce.Message
	id    int64
	hasID bool
	kind  kind
}

type kind uint8

const (
	kindText kind = iota
	kindPing
	kindClose
)

// Init prepares the outbox. A held one queues but writes nothing until
// Attach and Release (a WebSocket whose handshake is still being written).
func (o *Outbox) Init(host Host, enc Encoding, nc net.Conn, held bool) {
	o.host, o.enc, o.nc, o.writing = host, enc, nc, held
}

// Attach sets the connection of a held outbox; lock, when not nil, is taken
// around every write (another writer shares the connection).
func (o *Outbox) Attach(nc net.Conn, lock *sync.Mutex) {
	o.mu.Lock()
	o.nc, o.lock = nc, lock
	o.mu.Unlock()
}

// Release lets a held outbox write what it queued meanwhile.
func (o *Outbox) Release() {
	o.mu.Lock()
	o.writing = false
	if len(o.queue) > 0 {
		o.writing = true
		o.startWriter()
	}
	o.mu.Unlock()
}

// Send queues a message. It reports false when the outbox is closing or
// has just dropped its peer because the queue is full.
func (o *Outbox) Send(m *dce.Message) bool {
	ok, _ := o.enqueue(frame{m: m})
	return ok
}

// Reply queues a reply carrying the request ID; it is never held back by
// the coalescing gap. It is called by the connection's own reader: when no
// writer runs, that goroutine writes the reply itself (its stack has grown
// for the request already; a new writer goroutine would grow one again for
// every round trip), and reads the next request once it is written.
func (o *Outbox) Reply(path string, id int64, hasID bool, body []byte) {
	if _, inline := o.enqueue(frame{m: &dce.Message{Path: path, Body: body}, id: id, hasID: hasID}); inline {
		o.writeInline()
	}
}

// enqueue adds f; inline reports that the caller is to run the writer (a
// reply found none running).
func (o *Outbox) enqueue(f frame) (ok, inline bool) {
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		return false, false
	}
	if f.m.Mode == dce.Latest {
		for i := len(o.queue) - 1; i >= 0; i-- {
			if q := o.queue[i].m; q != nil && q.Mode == dce.Latest && q.Path == f.m.Path {
				o.queue[i] = f
				o.mu.Unlock()
				o.host.Pushed()
				return true, false
			}
		}
	}
	lim := o.host.Limits()
	if len(o.queue) >= lim.Queue {
		o.mu.Unlock()
		o.host.Slow()
		o.Drop("send queue full: the client reads too slowly")
		return false, false
	}
	if o.queue == nil {
		o.queue = getQueue()
	}
	o.queue = append(o.queue, f)
	switch {
	case !o.writing:
		o.writing = true
		if f.hasID { // a reply is never held back: its sender writes it
			inline = true
		} else {
			o.startWriter()
		}
	case o.deferred && (f.hasID || len(o.queue) >= lim.Queue/2):
		o.deferred = false // a reply, or filling up: write now rather than after the gap
		go o.writeLoop()
	}
	o.mu.Unlock()
	o.host.Pushed()
	return true, inline
}

// startWriter starts the writer (o.mu held). A peer written to less than
// the coalescing gap ago is written when the gap has passed, by its own
// timer: under load several messages then share one write (and one frame
// when they merge), while an idle peer is still written at once. Each
// outbox keeps its own rhythm, so the writes of 10,000 connections spread
// over the gap instead of bunching at one tick.
func (o *Outbox) startWriter() {
	if gap := o.host.Coalesce(); gap > 0 {
		if wait := min(o.lastWrite+int64(gap)-nanotime(), int64(gap)); wait > 0 {
			o.deferred = true
			if o.timer == nil {
				o.timer = time.AfterFunc(time.Duration(wait), o.writeDeferred)
			} else {
				o.timer.Reset(time.Duration(wait))
			}
			return
		}
	}
	go o.writeLoop() // ends when the queue is empty
}

// writeDeferred runs on the timer's goroutine: it writes what waited,
// unless a reply, a full queue or a close already started the writer.
func (o *Outbox) writeDeferred() {
	o.mu.Lock()
	if !o.deferred {
		o.mu.Unlock()
		return
	}
	o.deferred = false
	o.mu.Unlock()
	o.writeLoop()
}

// nanotime is the wall clock in nanoseconds; a wait computed from it is
// bounded by the gap, so a clock step cannot hold a peer back.
func nanotime() int64 { return time.Now().UnixNano() }

// Ping sends a WebSocket keepalive ping. When no writer runs and the peer
// has taken everything written so far, the caller writes the two bytes
// itself: pinging 10,000 idle connections starts no goroutine.
func (o *Outbox) Ping() {
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		return
	}
	if o.writing { // the writer sends it after what is queued
		o.queue = append(o.queue, frame{kind: kindPing})
		o.mu.Unlock()
		return
	}
	if o.Unsent() > 0 {
		// The peer has not taken what was written last: an inline write
		// could wait for it and hold up the keepalive of everyone else.
		// A writer sends the ping and drops the peer after write_timeout.
		o.queue = append(o.queue, frame{kind: kindPing})
		o.writing = true
		go o.writeLoop()
		o.mu.Unlock()
		return
	}
	o.writing = true
	o.mu.Unlock()
	_ = o.nc.SetWriteDeadline(time.Now().Add(time.Second))
	err := o.write(&net.Buffers{pingFrame})
	o.mu.Lock()
	o.writing = false
	if len(o.queue) > 0 && !o.closing {
		o.writing = true
		o.startWriter()
	}
	o.mu.Unlock()
	if err != nil {
		o.Drop(writeFailure(err))
	}
}

// Unsent is the number of bytes in the socket's send queue that the peer
// has not acknowledged (SIOCOUTQ); 0 when unknown.
func (o *Outbox) Unsent() int {
	sc, ok := o.nc.(syscall.Conn)
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
// reading) is a problem.
func writeFailure(err error) string {
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) {
		return "peer gone: " + err.Error()
	}
	return "write failed: " + err.Error()
}

// Close stops accepting frames, sends what is queued, then (WebSocket) a
// close frame with code and reason, and closes: the peer gets closeGrace
// to answer before the socket closes.
func (o *Outbox) Close(code int, reason string) {
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		return
	}
	o.closing, o.closeCode, o.reason = true, code, reason
	o.queue = append(o.queue, frame{kind: kindClose})
	switch {
	case !o.writing:
		o.writing = true
		go o.writeLoop()
	case o.deferred: // closing does not wait for the gap
		o.deferred = false
		go o.writeLoop()
	}
	o.mu.Unlock()
}

// Drop closes at once, discarding the queue; the connection's reader then
// fails and cleans up.
func (o *Outbox) Drop(reason string) {
	o.mu.Lock()
	if o.reason == "" || !o.closing {
		o.reason = reason
	}
	o.closing = true
	o.queue = nil
	nc := o.nc
	o.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
}

// Shut ends the outbox when its connection's reader has ended: nothing more
// is accepted or written. It returns why the connection closed: the first
// reason given (a drop, a close) or else why.
func (o *Outbox) Shut(why string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closing = true
	o.queue = nil
	if o.reason == "" {
		o.reason = why
	}
	return o.reason
}

// Closing reports whether the outbox accepts no more frames.
func (o *Outbox) Closing() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closing
}

// Len is the number of frames waiting.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// State reports whether a writer runs (or is deferred, or the outbox is
// held) and whether it waits for the coalescing gap.
func (o *Outbox) State() (writing, deferred bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.writing, o.deferred
}

// writeInline writes one batch — the reply and whatever joined it — in the
// caller's goroutine. What is queued meanwhile (a busy room's pushes) goes
// to a writer goroutine, so the connection's reader is held for one write
// at most, never for as long as pushes keep coming.
func (o *Outbox) writeInline() {
	if o.writeOne() {
		go o.writeLoop()
	}
}

// writeLoop drains the queue in batches: one write (one syscall, writev
// for large bodies) per batch.
func (o *Outbox) writeLoop() {
	for o.writeOne() {
	}
}

// writeOne writes what is queued as one batch (o.writing set); more
// reports that frames came meanwhile and the writer is still due.
func (o *Outbox) writeOne() (more bool) {
	o.mu.Lock()
	batch := o.queue
	o.queue = nil
	if len(batch) == 0 {
		o.writing = false
		o.mu.Unlock()
		return false
	}
	code, reason := o.closeCode, o.reason
	o.lastWrite = nanotime()
	o.mu.Unlock()
	closed, err := o.writeBatch(batch, code, reason)
	putQueue(batch)
	if err != nil {
		o.Drop(writeFailure(err))
	} else if closed {
		o.finishClose()
	}
	if err != nil || closed {
		o.mu.Lock()
		o.writing = false
		o.mu.Unlock()
		return false
	}
	o.mu.Lock()
	more = len(o.queue) > 0
	if !more {
		o.writing = false
	}
	o.mu.Unlock()
	return more
}

// closeGrace is how long a WebSocket peer has to answer a close frame
// before its socket closes. A peer that answers later meets a closed
// socket, and the reset that follows discards whatever it had not read
// yet — the messages before the close among them — so this is generous: a
// client starved of CPU for a second still reads everything.
const closeGrace = 3 * time.Second

// finishClose ends a connection whose close frame has been sent: a
// WebSocket peer gets closeGrace to answer, then the socket closes.
func (o *Outbox) finishClose() {
	if !o.enc.WebSocket {
		o.nc.Close()
		return
	}
	if cw, ok := o.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = o.nc.SetReadDeadline(time.Now().Add(closeGrace))
}

const (
	maxMerge      = 512      // messages joined into one frame at most
	zeroCopyBytes = 16 << 10 // bodies this large are written in place (writev), not copied
)

var queuePool = sync.Pool{New: func() any { q := make([]frame, 0, 8); return &q }}

func getQueue() []frame { return (*queuePool.Get().(*[]frame))[:0] }

func putQueue(q []frame) {
	if cap(q) > 4096 {
		return
	}
	clear(q)
	q = q[:0]
	queuePool.Put(&q)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// writeBatch writes queued frames; it reports whether a close frame was
// among them.
func (o *Outbox) writeBatch(batch []frame, closeCode int, reason string) (closed bool, err error) {
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	var sp *[]byte // merge scratch, only when messages merge
	var scratch []byte
	var vec net.Buffers
	for i := 0; i < len(batch); {
		f := batch[i]
		j := i + 1
		switch f.kind {
		case kindPing:
			buf = append(buf, pingFrame...)
		case kindClose:
			closed = true
			buf = o.enc.appendClose(buf, closeCode, reason)
		default:
			body := f.m.Body
			if f.m.Mode == dce.Merge && !f.hasID {
				for j < len(batch) && j-i < maxMerge && batch[j].kind == kindText && batch[j].m.Mode == dce.Merge &&
					!batch[j].hasID && batch[j].m.Path == f.m.Path {
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
			if o.enc.Codec == nil && j-i == 1 && len(body) >= zeroCopyBytes {
				buf = o.enc.appendHead(buf, f, len(body))
				vec = append(vec, buf, body)
				buf = o.enc.appendTail(buf[len(buf):])
			} else {
				buf = o.enc.appendMessage(buf, f, body)
			}
		}
		i = j
	}
	if len(buf) > 0 {
		vec = append(vec, buf)
	}
	_ = o.nc.SetWriteDeadline(time.Now().Add(o.host.Limits().WriteTimeout))
	err = o.write(&vec)
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

func (o *Outbox) write(vec *net.Buffers) error {
	if o.lock != nil {
		o.lock.Lock()
		defer o.lock.Unlock()
	}
	_, err := vec.WriteTo(o.nc)
	return err
}
