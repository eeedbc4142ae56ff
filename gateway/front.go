package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/scpgate/scpgate/gateway/linger"
)

// The front reads the first request of every proxy connection itself, so that a CONNECT (all
// of an SCP's traffic) costs no more than its request: a pooled reader, the parsed request, a
// small response writer. net/http's server gives every connection a goroutine-long state, a
// 4 KiB reader and a 4 KiB writer, and a cancelable context per request, which is most of
// what a short tunnel allocates (docs/bench/profile-after.md).
//
// Anything the front does not answer itself goes to a net/http server with every byte it read
// replayed, so that server answers it exactly as it would have: a first request that is not
// CONNECT (plain HTTP, with keep-alive), a malformed or oversized head (400, 431, 505), an
// Expect header (417). The front parses with net/http's own parser (http.ReadRequest) and only
// serves what that server would have passed to the handler unchanged.

const (
	// frontReadSize is the front's read buffer: a CONNECT head is a few hundred bytes; a
	// longer one is still read whole (the parser reads lines across refills).
	frontReadSize = 2 << 10
	// lingerAfterRefusal bounds how long a refused connection is drained before it is closed,
	// so that the close does not reset the answer away (net/http waits as long).
	lingerAfterRefusal = 500 * time.Millisecond
	// handoffGrace is how long requests mid-flight get to finish when Serve stops.
	handoffGrace = 5 * time.Second
)

// recorder is the connection's reader during the head: it keeps every byte read, so that a
// head the front does not serve can be replayed to net/http, and stops at limit (net/http's
// own: max header bytes plus 4 KiB).
type recorder struct {
	src   io.Reader // the connection
	buf   []byte
	limit int
	err   error // the connection's read error, if reading failed
}

var errHeadTooLarge = errors.New("gateway: request head over the limit")

func (r *recorder) Read(p []byte) (int, error) {
	if len(r.buf) >= r.limit {
		return 0, errHeadTooLarge
	}
	p = p[:min(len(p), r.limit-len(r.buf))]
	n, err := r.src.Read(p)
	r.buf = append(r.buf, p[:n]...)
	if err != nil {
		r.err = err
	}
	return n, err
}

// front serves the proxy connections of one listener.
type front struct {
	g       *Gateway
	handoff *handoffListener
	log     *slog.Logger

	mu      sync.Mutex
	reading map[net.Conn]struct{} // connections whose head is being read
	closed  bool
	wg      sync.WaitGroup
}

var (
	frontReaders   = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, frontReadSize) }}
	frontRecorders = sync.Pool{New: func() any { return &recorder{buf: make([]byte, 0, frontReadSize)} }}
)

// serve accepts on ln until it fails or is closed, backing off on temporary errors (running out
// of file descriptors) as net/http does.
func (f *front) serve(ln net.Listener) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // the accept loop's own test, as in net/http
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				f.log.Debug("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !f.track(c) {
			_ = c.Close()
			continue
		}
		go f.serveConn(c)
	}
}

func (f *front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.reading[c] = struct{}{}
	f.wg.Add(1)
	return true
}

func (f *front) stopped() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// headRead takes c off the list of connections whose head is being read.
func (f *front) headRead(c net.Conn) {
	f.mu.Lock()
	delete(f.reading, c)
	f.mu.Unlock()
}

// stop ends the reading of heads at once (their connections are closed) and waits up to grace
// for requests being handled; tunnels already established are not the front's.
func (f *front) stop(grace time.Duration) {
	f.mu.Lock()
	f.closed = true
	for c := range f.reading {
		_ = c.SetReadDeadline(time.Now())
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// serveConn reads the first request head of c and serves it if it is a CONNECT the handler
// takes as it is; anything else goes to net/http with the bytes read so far.
func (f *front) serveConn(c net.Conn) {
	defer f.wg.Done()
	rec := frontRecorders.Get().(*recorder)
	rec.src, rec.buf, rec.limit, rec.err = c, rec.buf[:0], f.g.opts.Limits.MaxHeaderBytes+4096, nil
	br := frontReaders.Get().(*bufio.Reader)
	br.Reset(rec)
	defer func() {
		br.Reset(nil)
		frontReaders.Put(br)
		rec.src = nil
		if cap(rec.buf) <= 4*frontReadSize { // an oversized head's buffer is not kept
			frontRecorders.Put(rec)
		}
	}()

	// The head, and a TLS client's handshake before it, must be complete by headDeadline, here
	// and in net/http if the connection goes there (replayConn).
	headDeadline := time.Now().Add(f.g.opts.Timeouts.ReadHeader)
	tc, isTLS := c.(*tls.Conn)
	if isTLS {
		_ = c.SetDeadline(headDeadline)
	} else {
		_ = c.SetReadDeadline(headDeadline)
	}
	// stop may have cut this head short before the deadline above replaced its own: look once
	// more, after the deadline is set, so that every head is cut or sees the stop.
	if f.stopped() {
		f.headRead(c)
		_ = c.Close()
		return
	}
	if isTLS {
		if err := tc.HandshakeContext(context.Background()); err != nil {
			f.headRead(c)
			f.log.Debug("TLS handshake failed", "client", c.RemoteAddr().String(), "err", err)
			_ = c.Close()
			return
		}
		_ = c.SetWriteDeadline(time.Time{})
	}
	req, ok := f.readConnect(br, rec)
	f.headRead(c)
	if !ok {
		if rec.err != nil {
			// The client went away or sent its head too slowly: net/http closes too.
			_ = c.Close()
			return
		}
		f.handoff.give(&replayConn{Conn: c, pending: bytes.Clone(rec.buf), headDeadline: headDeadline, capNext: true})
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	req.RemoteAddr = c.RemoteAddr().String()
	w := &frontWriter{conn: c, br: br}
	f.g.ServeHTTP(w, req)
	if w.hijacked {
		return
	}
	// Every refusal says Connection: close: answer, then close without a reset.
	_ = c.SetWriteDeadline(time.Now().Add(f.g.opts.Timeouts.ReadHeader))
	_ = w.finish(req)
	linger.Close(c, lingerAfterRefusal)
}

// readConnect parses the head in br as a CONNECT that net/http's server would hand to the
// handler unchanged; false when it is anything else or reading failed.
func (f *front) readConnect(br *bufio.Reader, rec *recorder) (*http.Request, bool) {
	method, err := br.Peek(len("CONNECT "))
	if err != nil || string(method) != "CONNECT " {
		return nil, false
	}
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, false
	}
	// The checks net/http's server makes after parsing (it answers 505, 400 or 417 itself).
	if req.ProtoMajor != 1 || req.Header.Get("Expect") != "" {
		return nil, false
	}
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, false
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, false
			}
		}
	}
	// http.ReadRequest drops the Host header; the server first checks it is single and valid.
	if !validHostHeaders(rec.buf[:len(rec.buf)-br.Buffered()]) {
		return nil, false
	}
	return req, true
}

// validHostHeaders reports whether the raw request head has at most one Host header field,
// with a valid value. It reads the fields as net/textproto does: a line that starts with a space
// or a tab continues the field before it (obs-fold), joined with one space.
func validHostHeaders(head []byte) bool {
	var hosts []string
	current := -1 // index in hosts of the field being read, -1 when it is not a Host field
	lines := strings.Split(string(head), "\n")
	for _, line := range lines[1:] {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break // the end of the head
		}
		if line[0] == ' ' || line[0] == '\t' {
			if current >= 0 {
				hosts[current] += " " + strings.TrimSpace(line)
			}
			continue
		}
		current = -1
		if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Host") {
			hosts = append(hosts, strings.TrimSpace(value))
			current = len(hosts) - 1
		}
	}
	if len(hosts) > 1 {
		return false
	}
	for _, h := range hosts {
		if !httpguts.ValidHostHeader(h) {
			return false
		}
	}
	return true
}

// frontWriter is the http.ResponseWriter of a request the front serves. A refusal's head and
// body are written in one piece when the handler returns; a CONNECT that is allowed hijacks the
// connection and writes its own answer.
type frontWriter struct {
	conn     net.Conn
	br       *bufio.Reader
	header   http.Header
	status   int
	body     []byte
	hijacked bool
}

// Header is made on first use: an allowed CONNECT never asks for it.
func (w *frontWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header, 6)
	}
	return w.header
}

func (w *frontWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *frontWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// Hijack hands the connection to the caller. The reader holds what the client sent after the
// head; it is the front's and is valid only until the handler returns. There is no writer:
// write to the connection.
func (w *frontWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	return w.conn, bufio.NewReadWriter(w.br, nil), nil
}

func (w *frontWriter) finish(req *http.Request) error {
	w.WriteHeader(http.StatusOK)
	h := w.Header()
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	resp := &http.Response{
		StatusCode: w.status, ProtoMajor: 1, ProtoMinor: 1, Header: h, Close: true,
		ContentLength: int64(len(w.body)), Body: io.NopCloser(bytes.NewReader(w.body)), Request: req,
	}
	return resp.Write(w.conn)
}

// replayConn is a connection whose first reads return bytes already read from it. The first
// read deadline net/http sets is its header timeout for the first request; it is held to the
// front's, so a slow head gets one header timeout in all, not one here and one there.
type replayConn struct {
	net.Conn
	pending      []byte
	headDeadline time.Time
	capNext      bool
}

func (c *replayConn) SetReadDeadline(t time.Time) error {
	if c.capNext {
		c.capNext = false
		if t.IsZero() || t.After(c.headDeadline) {
			t = c.headDeadline
		}
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// handoffListener is the net/http server's listener: it accepts the connections the front
// gives it.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// give passes c to the server, or closes it once the server has stopped.
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
