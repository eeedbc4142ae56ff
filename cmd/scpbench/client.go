package main

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// endpoint is how the client reaches the sink for one target: directly, or with a CONNECT
// through a proxy (plain or TLS, with or without Basic credentials), optionally with TLS
// inside the tunnel.
type endpoint struct {
	proxy     string      // proxy host:port; empty: dial target directly
	proxyTLS  *tls.Config // TLS to the proxy listener
	auth      string      // "user:password" for Proxy-Authorization: Basic
	target    string      // host:port the CONNECT asks for (or the direct address)
	tunnelTLS *tls.Config // TLS handshake with the sink through the tunnel
	timeout   time.Duration

	request []byte // the CONNECT head, built once
}

func (e *endpoint) init() {
	if e.timeout == 0 {
		e.timeout = 10 * time.Second
	}
	if e.proxy == "" {
		return
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", e.target, e.target)
	if e.auth != "" {
		fmt.Fprintf(&b, "Proxy-Authorization: Basic %s\r\n", base64.StdEncoding.EncodeToString([]byte(e.auth)))
	}
	b.WriteString("\r\n")
	e.request = b.Bytes()
}

// open sets a tunnel up and returns it with the time from the dial to the end of the proxy's
// 200 (or of the TLS handshake inside the tunnel, when there is one).
func (e *endpoint) open() (net.Conn, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(e.timeout)
	addr := e.target
	if e.proxy != "" {
		addr = e.proxy
	}
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	if e.proxy != "" {
		if e.proxyTLS != nil {
			tc := tls.Client(c, e.proxyTLS)
			_ = tc.SetDeadline(deadline)
			if err := tc.Handshake(); err != nil {
				_ = c.Close()
				return nil, 0, fmt.Errorf("TLS to the proxy: %w", err)
			}
			c = tc
		}
		_ = c.SetDeadline(deadline)
		if c, err = connect(c, e.request); err != nil {
			return nil, 0, err
		}
	}
	if e.tunnelTLS != nil {
		tc := tls.Client(c, e.tunnelTLS)
		_ = tc.SetDeadline(deadline)
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			return nil, 0, fmt.Errorf("TLS through the tunnel: %w", err)
		}
		c = tc
	}
	setup := time.Since(start)
	_ = c.SetDeadline(time.Time{})
	return c, setup, nil
}

// connect sends the CONNECT head and reads the answer's head; it returns the connection (with
// any bytes read past the head in front) or an error naming the status line.
func connect(c net.Conn, request []byte) (net.Conn, error) {
	if _, err := c.Write(request); err != nil {
		_ = c.Close()
		return nil, err
	}
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			_ = c.Close()
			return nil, errors.New("CONNECT answer head too long")
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if end := bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
			line, _, _ := bytes.Cut(buf, []byte("\r\n"))
			if !bytes.HasPrefix(line, []byte("HTTP/1.1 200")) && !bytes.HasPrefix(line, []byte("HTTP/1.0 200")) {
				_ = c.Close()
				return nil, fmt.Errorf("CONNECT refused: %q", line)
			}
			if rest := buf[end+4:]; len(rest) > 0 {
				return &prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(bytes.Clone(rest)), c)}, nil
			}
			return c, nil
		}
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("reading the CONNECT answer: %w", err)
		}
	}
}

// prefixConn replays bytes read past the CONNECT answer's head.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// echo sends mode+payload and reads the payload back.
func echo(c net.Conn, payload []byte, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	msg := append([]byte{modeEcho}, payload...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	return readEcho(c, payload)
}

// echoAgain checks an echo-mode connection still answers (no mode byte this time).
func echoAgain(c net.Conn, payload []byte, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(payload); err != nil {
		return err
	}
	return readEcho(c, payload)
}

func readEcho(c net.Conn, payload []byte) error {
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, payload) {
		return errors.New("echo returned different bytes")
	}
	return nil
}
