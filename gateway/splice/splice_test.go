//go:build linux

package splice

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scpgate/scpgate/internal/testnet"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// relay is client <-> (cIn | uOut) ... two sockets pairs joined by two Copy calls, like a tunnel.
type relay struct {
	client, upstream *net.TCPConn // the outer ends the test talks to
	up, down         chan result
}

type result struct {
	n   int64
	err error
}

func startRelay(t *testing.T, p *Pool) *relay {
	client, gwClient := tcpPair(t)
	gwUpstream, upstream := tcpPair(t)
	r := &relay{client: client, upstream: upstream, up: make(chan result, 1), down: make(chan result, 1)}
	go func() {
		n, err := p.Copy(gwUpstream, gwClient, nil)
		_ = gwUpstream.CloseWrite()
		r.up <- result{n, err}
	}()
	go func() {
		n, err := p.Copy(gwClient, gwUpstream, nil)
		_ = gwClient.CloseWrite()
		r.down <- result{n, err}
	}()
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testnet.WaitFor(t, what, 10*time.Second, cond)
}

func openFDs(t *testing.T) int { return testnet.CountFDs(t, os.Getpid()) }

func TestIdleHoldsNoPipe(t *testing.T) {
	p := NewPool(4, time.Hour, nil)
	defer p.Close()
	before := openFDs(t)
	r := startRelay(t, p)
	// Both copiers are waiting for readability.
	waitFor(t, "both copiers to wait", func() bool { return p.Stats().Waits >= 2 })
	if s := p.Stats(); s.InUse != 0 || s.Idle > 2 {
		t.Fatalf("idle relay: %+v, want no pipe in use", s)
	}
	// The four sockets of the two pairs, plus whatever pipes the pool keeps.
	if got, want := openFDs(t)-before, 4+2*p.Stats().Idle; got != want {
		t.Fatalf("idle relay holds %d fds, want %d", got, want)
	}

	// Bytes still move both ways, and afterwards the copiers wait again without pipes.
	if _, err := r.client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(r.upstream, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("upstream read %q, %v", buf, err)
	}
	if _, err := r.upstream.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r.client, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	waitFor(t, "the copiers to wait again", func() bool { return p.Stats().Waits >= 4 && p.Stats().InUse == 0 })
	if s := p.Stats(); s.Idle < 1 {
		t.Fatalf("no pipe went back to the pool: %+v", s)
	}
}

func TestBulkBothWaysAndHalfClose(t *testing.T) {
	p := NewPool(0, 0, nil)
	defer p.Close()
	r := startRelay(t, p)
	const size = 16 << 20
	up, down := make([]byte, size), make([]byte, size)
	_, _ = rand.Read(up)
	_, _ = rand.Read(down)

	send := func(c *net.TCPConn, b []byte) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := c.Write(b)
			if err == nil {
				err = c.CloseWrite() // half-close: the other direction goes on
			}
			done <- err
		}()
		return done
	}
	recv := func(c *net.TCPConn) chan [32]byte {
		done := make(chan [32]byte, 1)
		go func() {
			h := sha256.New()
			_, _ = io.Copy(h, c)
			var sum [32]byte
			copy(sum[:], h.Sum(nil))
			done <- sum
		}()
		return done
	}
	gotUp, gotDown := recv(r.upstream), recv(r.client)
	if err := <-send(r.client, up); err != nil {
		t.Fatal(err)
	}
	// Upstream → client still works after the client half-closed.
	if err := <-send(r.upstream, down); err != nil {
		t.Fatal(err)
	}
	if sum := <-gotUp; sum != sha256.Sum256(up) {
		t.Fatal("bytes up differ")
	}
	if sum := <-gotDown; sum != sha256.Sum256(down) {
		t.Fatal("bytes down differ")
	}
	for name, ch := range map[string]chan result{"up": r.up, "down": r.down} {
		res := <-ch
		if res.err != nil || res.n != size {
			t.Fatalf("%s: Copy = %d, %v; want %d, nil (EOF)", name, res.n, res.err, size)
		}
	}
	waitFor(t, "pipes back in the pool", func() bool { return p.Stats().InUse == 0 })
}

func TestCloseEndsAWaitingCopy(t *testing.T) {
	p := NewPool(0, 0, nil)
	defer p.Close()
	_, b := tcpPair(t)
	c, _ := tcpPair(t)
	done := make(chan result, 1)
	go func() {
		n, err := p.Copy(c, b, nil)
		done <- result{n, err}
	}()
	waitFor(t, "the copier to wait", func() bool { return p.Stats().Waits >= 1 })
	_ = b.Close()
	res := <-done
	if !errors.Is(res.err, net.ErrClosed) {
		t.Fatalf("Copy after close = %v, want net.ErrClosed", res.err)
	}
}

func TestProgressCounts(t *testing.T) {
	p := NewPool(0, 0, nil)
	defer p.Close()
	a, b := tcpPair(t)
	c, d := tcpPair(t)
	var seen int64
	done := make(chan result, 1)
	go func() {
		n, err := p.Copy(c, b, func(n int64) { seen += n })
		done <- result{n, err}
	}()
	msg := bytes.Repeat([]byte("x"), 100000)
	go func() { _, _ = a.Write(msg); _ = a.CloseWrite() }()
	got, _ := io.ReadAll(io.LimitReader(d, int64(len(msg))))
	res := <-done
	if res.err != nil || res.n != int64(len(msg)) || seen != res.n || !bytes.Equal(got, msg) {
		t.Fatalf("Copy = %d, %v; progress saw %d; read %d bytes", res.n, res.err, seen, len(got))
	}
}

func TestNoPipeFallsBackToABuffer(t *testing.T) {
	var told atomic.Int64
	p := NewPool(0, 0, func(err error) {
		if errors.Is(err, syscall.EMFILE) {
			told.Add(1)
		}
	})
	defer p.Close()
	p.newPipe = func() (*pipe, error) { return nil, syscall.EMFILE }
	r := startRelay(t, p)
	msg := bytes.Repeat([]byte("0123456789"), 50000)
	go func() { _, _ = r.client.Write(msg); _ = r.client.CloseWrite() }()
	got, err := io.ReadAll(r.upstream)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(msg))
	}
	if res := <-r.up; res.err != nil || res.n != int64(len(msg)) {
		t.Fatalf("Copy = %d, %v", res.n, res.err)
	}
	if s := p.Stats(); s.NoPipes == 0 || told.Load() == 0 {
		t.Fatalf("stats %+v, noPipe told %d times: the buffer path was not taken", s, told.Load())
	}
}

func TestPoolExpiresIdlePipes(t *testing.T) {
	p := NewPool(8, 20*time.Millisecond, nil)
	defer p.Close()
	before := openFDs(t)
	var held []*pipe
	for range 3 {
		pp, err := p.get()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, pp)
	}
	if got := openFDs(t) - before; got != 6 {
		t.Fatalf("3 pipe pairs = %d fds, want 6", got)
	}
	held[0].data = 5 // a pipe with bytes left in it is closed, not reused
	for _, pp := range held {
		p.put(pp)
	}
	if s := p.Stats(); s.Idle != 2 || s.InUse != 0 {
		t.Fatalf("after put: %+v, want 2 idle", s)
	}
	waitFor(t, "idle pipes to be closed", func() bool { return p.Stats().Idle == 0 })
	if got := openFDs(t); got != before {
		t.Fatalf("%d fds after expiry, want %d", got, before)
	}
}

func TestPoolKeepsAtMostMaxIdle(t *testing.T) {
	p := NewPool(1, time.Hour, nil)
	defer p.Close()
	a, _ := p.get()
	b, _ := p.get()
	p.put(a)
	p.put(b)
	if s := p.Stats(); s.Idle != 1 {
		t.Fatalf("idle = %d, want 1", s.Idle)
	}
}

// BenchmarkCopy moves 64 MiB one way through a relay: the pool's Copy against io.Copy (Go's
// own splice, which keeps its pipe). Both splice; the difference is the cost of taking the
// pipe back and forth and of waiting through RawConn.
func BenchmarkCopy(b *testing.B) {
	for _, tc := range []struct {
		name string
		copy func(p *Pool, dst, src *net.TCPConn) (int64, error)
	}{
		{"pool", func(p *Pool, dst, src *net.TCPConn) (int64, error) { return p.Copy(dst, src, nil) }},
		{"io.Copy", func(_ *Pool, dst, src *net.TCPConn) (int64, error) { return io.Copy(dst, src) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := NewPool(0, 0, nil)
			defer p.Close()
			const size = 64 << 20
			buf := make([]byte, 256<<10)
			b.SetBytes(size)
			for b.Loop() {
				client, gwIn := tcpPair(b)
				gwOut, server := tcpPair(b)
				done := make(chan error, 1)
				go func() {
					_, err := tc.copy(p, gwOut, gwIn)
					_ = gwOut.CloseWrite()
					done <- err
				}()
				go func() {
					for sent := 0; sent < size; sent += len(buf) {
						if _, err := client.Write(buf); err != nil {
							return
						}
					}
					_ = client.CloseWrite()
				}()
				n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{server}, buf)
				if err != nil || n != size {
					b.Fatalf("moved %d bytes, %v", n, err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				_ = client.Close()
				_ = server.Close()
				_ = gwIn.Close()
				_ = gwOut.Close()
			}
		})
	}
}
