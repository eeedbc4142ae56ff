//go:build !linux

package splice

import (
	"io"
	"net"
	"sync/atomic"
	"time"
)

// Defaults of NewPool.
const (
	DefaultMaxIdle = 64
	DefaultIdleFor = 2 * time.Second
)

// Pool has no pipes where splice(2) does not exist (the gateway runs on Linux; this keeps the
// package building for tools cross-compiled for the SCP's Windows): Copy is io.Copy.
type Pool struct {
	inUse atomic.Int64
}

// NewPool returns a Pool; the arguments matter only on Linux.
func NewPool(int, time.Duration, func(error)) *Pool { return &Pool{} }

// Stats is a snapshot of a Pool.
type Stats struct {
	InUse   int64
	Idle    int
	Waits   int64
	NoPipes int64
}

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats { return Stats{InUse: p.inUse.Load()} }

// Close does nothing: there are no pipes.
func (p *Pool) Close() {}

// Copy moves bytes from src to dst until src reaches EOF or either side fails; progress, if
// set, is called with every amount written to dst.
func (p *Pool) Copy(dst, src *net.TCPConn, progress func(int64)) (int64, error) {
	p.inUse.Add(1)
	defer p.inUse.Add(-1)
	return io.Copy(progressWriter{dst, progress}, src)
}

type progressWriter struct {
	w        io.Writer
	progress func(int64)
}

func (w progressWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	if w.progress != nil && n > 0 {
		w.progress(int64(n))
	}
	return n, err
}
