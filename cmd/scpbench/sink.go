package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// The sink's protocol: the first byte a client sends chooses what the connection does.
const (
	modeEcho     = 'E' // echo every following byte
	modeDiscard  = 'U' // read and drop everything (bulk upload)
	modeGenerate = 'D' // send bytes until the client goes away (bulk download)
)

// sink is the benchmark's destination: a TCP (or TLS) server on loopback that echoes, swallows
// or generates bytes as each connection asks. It tracks its connections so Close ends them all.
type sink struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

// startSink listens on addr (":0" style for an ephemeral port); tlsCfg, if set, makes it a TLS sink.
func startSink(addr string, tlsCfg *tls.Config) (*sink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &sink{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var backoff time.Duration
		for {
			c, err := ln.Accept()
			if err != nil {
				// Out of descriptors is temporary: wait and go on, as net/http does.
				if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
					backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
					time.Sleep(backoff)
					continue
				}
				return
			}
			backoff = 0
			if tlsCfg != nil {
				c = tls.Server(c, tlsCfg)
			}
			if !s.add(c) {
				_ = c.Close()
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.remove(c)
				serveSink(c)
			}()
		}
	}()
	return s, nil
}

func (s *sink) Addr() *net.TCPAddr { return s.ln.Addr().(*net.TCPAddr) }

func (s *sink) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *sink) remove(c net.Conn) {
	_ = c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops accepting, closes every connection and waits for their goroutines.
func (s *sink) Close() {
	_ = s.ln.Close()
	s.mu.Lock()
	s.done = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func serveSink(c net.Conn) {
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case modeEcho:
		// Through a small buffer: io.Copy between TCP sockets would splice and hold a pipe pair
		// per idle connection, three descriptors each, and hold would run out of them here.
		buf := make([]byte, 4<<10)
		_, _ = io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf)
	case modeDiscard:
		_, _ = io.Copy(io.Discard, c)
	case modeGenerate:
		buf := make([]byte, 256<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
}

// runSink serves a sink on addr until ctx ends (the `scpbench sink` command, used by hold so
// the sink's sockets do not count against the client's file limit).
func runSink(ctx context.Context, addr string, ready func(net.Addr)) error {
	s, err := startSink(addr, nil)
	if err != nil {
		return err
	}
	ready(s.Addr())
	<-ctx.Done()
	s.Close()
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}
