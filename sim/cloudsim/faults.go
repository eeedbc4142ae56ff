package cloudsim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Fault kinds.
const (
	// FaultSlow delays the response. With AfterBytes 0 it waits Delay before the handler runs
	// (before any header); with AfterBytes > 0 it sends that many body bytes, then stalls for
	// Delay before the rest (a trickle). Delay 0 means stall until the client goes away or the
	// cloud closes, so tests can use a client deadline instead of sleeping; such a request ends
	// with the connection closed and no (further) answer.
	FaultSlow = "slow"
	// FaultReset lets the handler run (its side effects, such as storing an upload, happen),
	// passes at most AfterBytes body bytes to the client (headers only if at least one byte
	// passes) and then resets the TCP connection (SO_LINGER 0), so the client sees a reset. If
	// the body is shorter, the reset comes after it.
	FaultReset = "reset"
	// FaultCorrupt flips every bit of the body byte at offset AfterBytes of the response body as
	// sent (so of the range, for a 206). Shorter bodies pass unchanged.
	FaultCorrupt = "corrupt"
	// FaultStatus answers Status (default 503) without running the handler.
	FaultStatus = "status"
	// FaultWrongCert presents, in the TLS handshake for the host, a certificate for another name
	// from the same CA, so the client's name check fails. The path prefix is ignored (the path
	// is not known during the handshake) and Count counts handshakes.
	FaultWrongCert = "wrongcert"
)

// WrongCertName is the only name in the certificate a wrongcert fault presents.
const WrongCertName = "wrong-name.cloudsim.invalid"

// Fault is an injected failure; see the Fault* kinds for what each field means.
type Fault struct {
	Kind       string
	Status     int
	Delay      time.Duration
	AfterBytes int64
	// Count is how many matching requests (handshakes for wrongcert) the fault applies to;
	// 0 means until cleared.
	Count int
}

type faultEntry struct {
	host, prefix string
	f            Fault
	remaining    int // for Count > 0
	seq          uint64
}

// SetFault injects f into requests for host (""; every host) whose path starts with
// pathPrefix. It replaces a fault with the same host and prefix. When several match, the
// longest prefix wins, then the most recently set. A fault already applied to a running request
// stays with that request.
func (c *Cloud) SetFault(host, pathPrefix string, f Fault) error {
	switch f.Kind {
	case FaultSlow, FaultReset, FaultCorrupt, FaultWrongCert:
	case FaultStatus:
		if f.Status == 0 {
			f.Status = http.StatusServiceUnavailable
		}
		if f.Status < 200 || f.Status > 599 {
			return fmt.Errorf("cloudsim: fault status %d out of range 200..599", f.Status)
		}
	default:
		return fmt.Errorf("cloudsim: unknown fault kind %q", f.Kind)
	}
	if f.Delay < 0 || f.AfterBytes < 0 || f.Count < 0 {
		return errors.New("cloudsim: fault Delay, AfterBytes and Count must not be negative")
	}
	if host != "" {
		h, ok := normalizeHost(host)
		if !ok || !c.serves(h) {
			return fmt.Errorf("cloudsim: fault for host %q, which the cloud does not serve", host)
		}
		host = h
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faultSeq++
	e := faultEntry{host: host, prefix: pathPrefix, f: f, remaining: f.Count, seq: c.faultSeq}
	for i := range c.faults {
		if c.faults[i].host == host && c.faults[i].prefix == pathPrefix {
			c.faults[i] = e
			return nil
		}
	}
	c.faults = append(c.faults, e)
	return nil
}

// ClearFaults removes every fault.
func (c *Cloud) ClearFaults() {
	c.mu.Lock()
	c.faults = nil
	c.mu.Unlock()
}

// takeFault returns the fault for this request (or handshake, when wrongCert) and uses up one
// of its Count.
func (c *Cloud) takeFault(host, path string, wrongCert bool) (Fault, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	best := -1
	for i, e := range c.faults {
		if (e.f.Kind == FaultWrongCert) != wrongCert {
			continue
		}
		if e.host != "" && e.host != host {
			continue
		}
		if !wrongCert && !strings.HasPrefix(path, e.prefix) {
			continue
		}
		if best < 0 || len(e.prefix) > len(c.faults[best].prefix) ||
			len(e.prefix) == len(c.faults[best].prefix) && e.seq > c.faults[best].seq {
			best = i
		}
	}
	if best < 0 {
		return Fault{}, false
	}
	f := c.faults[best].f
	if f.Count > 0 {
		c.faults[best].remaining--
		if c.faults[best].remaining == 0 {
			c.faults = append(c.faults[:best], c.faults[best+1:]...)
		}
	}
	return f, true
}

// errReset is what the handler's Write returns once the connection has been reset.
var errReset = errors.New("cloudsim: connection reset by fault injection")

// respWriter sits between a handler and net/http: it records what reached the client and
// applies a response fault (slow trickle, reset, corrupt).
type respWriter struct {
	w     http.ResponseWriter
	ctx   context.Context
	fault *Fault

	status     int   // as set by the handler
	headerSent bool  // passed to the underlying writer
	offset     int64 // body bytes the handler has written
	sent       int64 // body bytes passed to the client
	stalled    bool  // the trickle stall has happened
	aborted    bool  // the connection has been reset
}

func (rw *respWriter) Header() http.Header { return rw.w.Header() }

func (rw *respWriter) WriteHeader(code int) {
	if rw.aborted || rw.status != 0 || code < 200 {
		return // 1xx are not used by the cloud; a second WriteHeader is a no-op like net/http's
	}
	rw.status = code
	// A reset that may strike before the first body byte must not have sent the header yet.
	if rw.fault == nil || rw.fault.Kind != FaultReset || rw.fault.AfterBytes > 0 {
		rw.sendHeader()
	}
}

func (rw *respWriter) sendHeader() {
	if !rw.headerSent {
		rw.headerSent = true
		rw.w.WriteHeader(rw.status)
	}
}

func (rw *respWriter) Write(p []byte) (int, error) {
	if rw.aborted {
		return 0, errReset
	}
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	f := rw.fault
	switch {
	case f != nil && f.Kind == FaultReset:
		remain := f.AfterBytes - rw.offset
		if int64(len(p)) < remain {
			return rw.pass(p)
		}
		n, err := rw.pass(p[:remain])
		if err != nil {
			return n, err
		}
		rw.reset()
		return n, errReset
	case f != nil && f.Kind == FaultCorrupt && f.AfterBytes >= rw.offset && f.AfterBytes < rw.offset+int64(len(p)):
		q := append([]byte(nil), p...) // never modify the handler's buffer
		q[f.AfterBytes-rw.offset] ^= 0xff
		return rw.pass(q)
	case f != nil && f.Kind == FaultSlow && f.AfterBytes > 0 && !rw.stalled && rw.offset+int64(len(p)) >= f.AfterBytes:
		head := f.AfterBytes - rw.offset
		n, err := rw.pass(p[:head])
		if err != nil {
			return n, err
		}
		rw.stalled = true
		rw.flush()
		if !wait(rw.ctx, f.Delay) {
			rw.drop(false)
			return n, rw.ctx.Err()
		}
		m, err := rw.pass(p[head:])
		return n + m, err
	default:
		return rw.pass(p)
	}
}

func (rw *respWriter) pass(p []byte) (int, error) {
	if len(p) == 0 {
		// Even an empty Write makes net/http commit the header, which a pending reset must avoid.
		return 0, nil
	}
	rw.sendHeader()
	n, err := rw.w.Write(p)
	rw.offset += int64(n)
	rw.sent += int64(n)
	return n, err
}

func (rw *respWriter) flush() {
	rw.sendHeader()
	_ = http.NewResponseController(rw.w).Flush()
}

// Flush lets handlers that stream flush through the wrapper.
func (rw *respWriter) Flush() {
	if rw.aborted || rw.fault != nil && rw.fault.Kind == FaultReset && !rw.headerSent {
		return
	}
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	rw.flush()
}

// finish runs after the handler: a pending header goes out, and a reset that the body was too
// short to trigger happens now.
func (rw *respWriter) finish() {
	if rw.aborted {
		return
	}
	if rw.fault != nil && rw.fault.Kind == FaultReset {
		rw.reset()
		return
	}
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	rw.sendHeader()
}

// reset flushes what may be sent, takes the connection from net/http and closes the TCP socket
// with SO_LINGER 0 (an RST, not a FIN and not a TLS close_notify), which is what a middlebox or
// crashed server looks like to the client.
func (rw *respWriter) reset() { rw.drop(true) }

// drop takes the connection from net/http and closes it, with an RST when rst is set. It is
// also how a stalled request ends without an answer: if the handler merely returned, net/http
// would send an implicit "200 OK", and a client that is closing its connection at that moment
// can still receive it.
func (rw *respWriter) drop(rst bool) {
	rw.aborted = true
	if rw.headerSent {
		_ = http.NewResponseController(rw.w).Flush()
	}
	conn, _, err := http.NewResponseController(rw.w).Hijack()
	if err != nil {
		// Cannot happen over HTTP/1.1 (the only protocol the cloud speaks); make net/http drop
		// the connection instead.
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn() // no close_notify: the peer must not see an orderly end
	}
	if tcp, ok := raw.(*net.TCPConn); ok && rst {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}

// wait blocks for d, or until ctx is done when d is 0. It reports whether the wait ran its
// course (false: the client went away or the cloud is closing).
func wait(ctx context.Context, d time.Duration) bool {
	if d == 0 {
		<-ctx.Done()
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
