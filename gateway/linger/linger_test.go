package linger

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestCloseDoesNotReset: a server that answers and closes with the client's bytes unread still
// gets its whole answer to the client, then EOF; without the drain the client reads a reset.
func TestCloseDoesNotReset(t *testing.T) {
	const answer = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
	for _, tc := range []struct {
		name  string
		close func(net.Conn)
		// lingers: the server drains until the client closes, so the client reads before it
		// waits for the server; a plain close is waited for first, so its reset has arrived.
		lingers bool
	}{
		{"linger.Close", func(c net.Conn) { Close(c, 10*time.Second) }, true},
		{"plain Close (the reset this package avoids)", func(c net.Conn) { _ = c.Close() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			served := make(chan struct{})
			go func() {
				defer close(served)
				c, err := ln.Accept()
				if err != nil {
					return
				}
				// Read only the first line, so the rest of what the client sent is unread.
				if _, err := bufio.NewReaderSize(c, 16).ReadString('\n'); err != nil {
					_ = c.Close()
					return
				}
				_, _ = io.WriteString(c, answer)
				tc.close(c)
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "CONNECT a:443 HTTP/1.1\r\n"+strings.Repeat("x", 64<<10)); err != nil {
				t.Fatal(err)
			}
			if tc.lingers {
				got, err := io.ReadAll(c)
				_ = c.Close()
				<-served
				if err != nil || string(got) != answer {
					t.Fatalf("read %q, %v; want the answer, then EOF", got, err)
				}
				return
			}
			<-served
			got, err := io.ReadAll(c)
			if err == nil {
				t.Fatalf("read %q and EOF: the plain close did not reset; this test proves nothing here", got)
			}
		})
	}
}
