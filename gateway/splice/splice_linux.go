//go:build linux

// Package splice moves a TCP connection's bytes to another with splice(2), holding a kernel
// pipe only while bytes move.
//
// io.Copy between two *net.TCPConn also splices, but the pipe it takes stays with the copy
// while the copy waits for the next byte, and afterwards Go's internal pool keeps it until the
// garbage collector drops it: an idle tunnel costs four file descriptors (two sockets, one
// pipe pair) and a burst six. Here a copier waits for readability with no pipe (through
// syscall.RawConn), takes a pipe pair from a Pool, splices until the socket would block, and
// gives the pipe back; the Pool closes pipes nobody took for a while. An idle tunnel holds its
// two sockets and nothing else.
//
// When no pipe can be had (the process is out of file descriptors), the copy goes on through
// a user-space buffer, so an open tunnel never fails for want of a pipe.
package splice

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// chunk is the most one splice call asks to move; pipes are sized to hold it (as Go's own
// splice does) so one wakeup can move up to 1 MiB.
const chunk = 1 << 20

// Defaults of NewPool.
const (
	DefaultMaxIdle = 64
	DefaultIdleFor = 2 * time.Second
)

// pipe is a pipe pair; data counts the bytes spliced in and not yet out.
type pipe struct {
	r, w int
	data int
	used time.Time // when it last went back to the pool
}

func (p *pipe) close() {
	_ = syscall.Close(p.r)
	_ = syscall.Close(p.w)
}

// Pool hands out pipe pairs and keeps at most maxIdle returned ones for reuse; a returned pipe
// nobody took again within idleFor is closed. Its zero value is not usable; call NewPool.
type Pool struct {
	maxIdle int
	idleFor time.Duration
	newPipe func() (*pipe, error) // tests replace it to simulate running out of descriptors
	noPipe  func(error)

	mu     sync.Mutex
	free   []*pipe // most recently used last
	timer  *time.Timer
	armed  bool // timer will run expire: set by put, cleared by expire when nothing is left
	closed bool

	bufs sync.Pool // *[]byte, the fallback buffers

	inUse   atomic.Int64
	waits   atomic.Int64
	noPipes atomic.Int64
}

// NewPool returns a Pool that keeps up to maxIdle pipe pairs for up to idleFor after their
// last use (zero or negative values take the defaults). noPipe, if set, is told every time a
// pipe could not be made for lack of file descriptors (the copy then goes through a buffer).
func NewPool(maxIdle int, idleFor time.Duration, noPipe func(error)) *Pool {
	if maxIdle <= 0 {
		maxIdle = DefaultMaxIdle
	}
	if idleFor <= 0 {
		idleFor = DefaultIdleFor
	}
	p := &Pool{maxIdle: maxIdle, idleFor: idleFor, newPipe: newPipe, noPipe: noPipe}
	p.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	return p
}

// Stats is a snapshot of a Pool.
type Stats struct {
	InUse   int64 // pipe pairs held by copiers now
	Idle    int   // pipe pairs kept for reuse
	Waits   int64 // times a copier went to wait for readability (holding no pipe)
	NoPipes int64 // times no pipe could be made and a buffer was used instead
}

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	idle := len(p.free)
	p.mu.Unlock()
	return Stats{InUse: p.inUse.Load(), Idle: idle, Waits: p.waits.Load(), NoPipes: p.noPipes.Load()}
}

// Close closes the idle pipes; pipes in use are closed when they come back.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, pp := range p.free {
		pp.close()
	}
	p.free = nil
	if p.timer != nil {
		p.timer.Stop()
	}
}

func newPipe() (*pipe, error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil, err
	}
	// A larger pipe moves more per wakeup; if the system refuses, the default 64 KiB works.
	_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, uintptr(fds[0]), syscall.F_SETPIPE_SZ, chunk)
	return &pipe{r: fds[0], w: fds[1]}, nil
}

func (p *Pool) get() (*pipe, error) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		pp := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		p.inUse.Add(1)
		return pp, nil
	}
	p.mu.Unlock()
	pp, err := p.newPipe()
	if err != nil {
		return nil, err
	}
	p.inUse.Add(1)
	return pp, nil
}

// put takes a pipe back; a pipe that still holds bytes (its copy failed) is closed.
func (p *Pool) put(pp *pipe) {
	p.inUse.Add(-1)
	p.mu.Lock()
	if pp.data != 0 || p.closed || len(p.free) >= p.maxIdle {
		p.mu.Unlock()
		pp.close()
		return
	}
	pp.used = time.Now()
	p.free = append(p.free, pp)
	if !p.armed {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(p.idleFor, p.expire)
		} else {
			p.timer.Reset(p.idleFor)
		}
	}
	p.mu.Unlock()
}

// expire closes the pipes returned longer than idleFor ago and re-arms for the rest.
func (p *Pool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cut := time.Now().Add(-p.idleFor)
	n := 0
	for n < len(p.free) && !p.free[n].used.After(cut) {
		p.free[n].close()
		p.free[n] = nil
		n++
	}
	p.free = append(p.free[:0], p.free[n:]...)
	if len(p.free) > 0 && !p.closed {
		p.timer.Reset(time.Until(p.free[0].used.Add(p.idleFor)) + time.Millisecond)
	} else {
		p.armed = false
	}
}

// Copy moves bytes from src to dst until src reaches EOF (then it returns a nil error; closing
// dst's write side is the caller's business) or either side fails or is closed. progress, if
// set, is called with every amount written to dst. Copy holds a pipe only while bytes move.
func (p *Pool) Copy(dst, src *net.TCPConn, progress func(int64)) (int64, error) {
	rsrc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	rdst, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	c := &copier{pool: p, src: rsrc, dst: rdst, progress: progress}
	// The callbacks are made once: a wakeup allocates nothing, and the stack a waiting copy
	// parks with stays small (it is most of what an idle tunnel costs).
	c.onReadable, c.onWritable = c.fill, c.drain
	return c.run()
}

// copier is one direction of a Copy. The RawConn callbacks leave their outcome in n and err.
type copier struct {
	pool     *Pool
	src, dst syscall.RawConn
	progress func(int64)

	onReadable, onWritable func(fd uintptr) bool

	pipe    *pipe
	buf     *[]byte // the fallback when no pipe could be made
	bufData []byte
	total   int64
	n       int   // bytes the last fill took in; 0 at EOF
	err     error // the last callback's failure
}

func (c *copier) release() {
	if c.pipe != nil {
		c.pool.put(c.pipe)
		c.pipe = nil
	}
	if c.buf != nil {
		c.pool.bufs.Put(c.buf)
		c.buf, c.bufData = nil, nil
	}
}

func (c *copier) run() (int64, error) {
	defer c.release()
	for {
		// Wait until src is readable, and take in what it has.
		if err := c.src.Read(c.onReadable); err != nil {
			return c.total, err
		}
		if c.err != nil {
			return c.total, c.err
		}
		if c.n == 0 {
			return c.total, nil // EOF
		}
		// Write everything held to dst, waiting for writability as needed.
		if err := c.dst.Write(c.onWritable); err != nil {
			return c.total, err
		}
		if c.err != nil {
			return c.total, c.err
		}
	}
}

// fill moves what src has into the pipe (or the buffer). When src would block, the pipe goes
// back to the pool before the wait (nothing is held then: every fill is drained first).
func (c *copier) fill(fd uintptr) bool {
	for {
		if c.pipe == nil && c.buf == nil && !c.take() {
			return true
		}
		var n int
		var err error
		if c.pipe != nil {
			n, err = splice(int(fd), c.pipe.w, chunk)
			if n > 0 {
				c.pipe.data += n
			}
		} else {
			n, err = syscall.Read(int(fd), *c.buf)
			if n > 0 {
				c.bufData = (*c.buf)[:n]
			}
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			c.release()
			c.pool.waits.Add(1)
			return false // wait for readability, holding nothing
		}
		c.n, c.err = max(n, 0), err
		return true
	}
}

// take gets a pipe from the pool or, out of descriptors, a buffer; false (with c.err) if neither.
func (c *copier) take() bool {
	pp, err := c.pool.get()
	switch {
	case err == nil:
		c.pipe = pp
	case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
		c.pool.noPipes.Add(1)
		if c.pool.noPipe != nil {
			c.pool.noPipe(err)
		}
		c.buf = c.pool.bufs.Get().(*[]byte)
	default:
		c.err = err
		return false
	}
	return true
}

// drain writes what fill took in to dst; false to wait for writability.
func (c *copier) drain(fd uintptr) bool {
	for {
		var n int
		var err error
		if c.pipe != nil {
			if c.pipe.data == 0 {
				return true
			}
			n, err = splice(c.pipe.r, int(fd), c.pipe.data)
			if n > 0 {
				c.pipe.data -= n
			}
		} else {
			if len(c.bufData) == 0 {
				return true
			}
			n, err = syscall.Write(int(fd), c.bufData)
			if n > 0 {
				c.bufData = c.bufData[n:]
			}
		}
		if n > 0 {
			c.total += int64(n)
			if c.progress != nil {
				c.progress(int64(n))
			}
		}
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			c.err = err
			return true
		}
	}
}

func splice(from, to, n int) (int, error) {
	m, err := syscall.Splice(from, nil, to, nil, n, spliceNonblock|spliceMove)
	return int(m), err
}

const (
	spliceMove     = 0x1 // SPLICE_F_MOVE
	spliceNonblock = 0x2 // SPLICE_F_NONBLOCK
)
