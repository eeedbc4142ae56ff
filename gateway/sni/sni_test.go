package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// captureConn records what a tls.Client writes and fails its first read, so a handshake stops
// right after the ClientHello without any server or goroutine.
type captureConn struct{ buf bytes.Buffer }

var errCaptured = errors.New("captured")

func (c *captureConn) Read([]byte) (int, error)         { return 0, errCaptured }
func (c *captureConn) Write(b []byte) (int, error)      { return c.buf.Write(b) }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// realHello returns the bytes crypto/tls sends as its first flight for cfg.
func realHello(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	c := &captureConn{}
	if err := tls.Client(c, cfg).Handshake(); !errors.Is(err, errCaptured) {
		tb.Fatalf("handshake: got %v, want the capture error", err)
	}
	if c.buf.Len() == 0 {
		tb.Fatal("no ClientHello captured")
	}
	return c.buf.Bytes()
}

var (
	cfg13 = &tls.Config{ServerName: "Configmgrbits.CDN.manage.microsoft.com.", NextProtos: []string{"h2", "http/1.1"}}
	cfg12 = &tls.Config{ServerName: "go.microsoft.com", MaxVersion: tls.VersionTLS12}
	cfgNo = &tls.Config{InsecureSkipVerify: true}
)

// reframe splits the handshake message carried by hello's single record into records of at
// most size bytes each, as a client may legally do.
func reframe(tb testing.TB, hello []byte, size int) []byte {
	tb.Helper()
	n := int(hello[3])<<8 | int(hello[4])
	if len(hello) != recordHeaderLen+n {
		tb.Fatalf("hello is not exactly one record")
	}
	msg := hello[recordHeaderLen:]
	var out []byte
	for len(msg) > 0 {
		k := min(size, len(msg))
		out = append(out, recordTypeHandshake, hello[1], hello[2], byte(k>>8), byte(k))
		out = append(out, msg[:k]...)
		msg = msg[k:]
	}
	return out
}

// helloSpec builds synthetic ClientHellos for the cases crypto/tls will not produce.
type helloSpec struct {
	exts        [][]byte // complete extensions (type, length, data)
	noExtBlock  bool     // omit the extensions block (TLS 1.2 allows it)
	trailing    []byte   // bytes after the extensions block, inside the ClientHello
	afterHello  []byte   // bytes after the ClientHello, inside the same record
	handshakeTy uint8
}

func (s helloSpec) bytes() []byte {
	var body cryptobyte.Builder
	body.AddUint16(tls.VersionTLS12)
	body.AddBytes(make([]byte, 32))
	body.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {})
	body.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(tls.TLS_AES_128_GCM_SHA256) })
	body.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
	if !s.noExtBlock {
		body.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range s.exts {
				b.AddBytes(e)
			}
		})
	}
	body.AddBytes(s.trailing)
	ty := s.handshakeTy
	if ty == 0 {
		ty = handshakeTypeClientHello
	}
	var msg cryptobyte.Builder
	msg.AddUint8(ty)
	msg.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(body.BytesOrPanic()) })
	payload := append(msg.BytesOrPanic(), s.afterHello...)
	var rec cryptobyte.Builder
	rec.AddUint8(recordTypeHandshake)
	rec.AddUint16(tls.VersionTLS10)
	rec.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(payload) })
	return rec.BytesOrPanic()
}

func ext(typ uint16, data []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint16(typ)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(data) })
	return b.BytesOrPanic()
}

// sniExt builds a server_name extension with the given (type, name) entries.
func sniExt(entries ...any) []byte {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for i := 0; i < len(entries); i += 2 {
			b.AddUint8(entries[i].(uint8))
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(entries[i+1].(string))) })
		}
	})
	return ext(extServerName, b.BytesOrPanic())
}

func host(name string) []byte { return sniExt(uint8(0), name) }

func TestReadClientHello(t *testing.T) {
	h13 := realHello(t, cfg13)
	h12 := realHello(t, cfg12)
	hNo := realHello(t, cfgNo)
	want13 := Hello{ServerName: "configmgrbits.cdn.manage.microsoft.com", Versions: []uint16{tls.VersionTLS13, tls.VersionTLS12}, ALPN: []string{"h2", "http/1.1"}}
	want12 := Hello{ServerName: "go.microsoft.com", Versions: []uint16{tls.VersionTLS12}}
	tail := []byte("\x17\x03\x03\x00\x05early") // what the client might send next: must stay unread

	tests := []struct {
		name    string
		input   []byte
		oneByte bool
		maxSize int
		want    Hello
		wantErr error // nil, a sentinel, or an io error
		rawLen  int   // expected len(raw); 0 means len(input)
		// truncated inputs get no tail: the reader must end inside the hello.
		truncated bool
	}{
		{name: "tls13 alpn", input: h13, want: want13},
		{name: "tls12", input: h12, want: want12},
		{name: "tls13 one byte at a time", input: h13, oneByte: true, want: want13},
		{name: "two records", input: reframe(t, h13, 100), want: want13},
		{name: "two records, one byte at a time", input: reframe(t, h12, len(h12)/2), oneByte: true, want: want12},
		{name: "handshake header spans records", input: reframe(t, h12, 1), want: want12},
		{name: "no sni", input: hNo, want: Hello{Versions: []uint16{tls.VersionTLS13, tls.VersionTLS12}}, wantErr: ErrNoServerName},
		{name: "plain http", input: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantErr: ErrNotTLS, rawLen: 5},
		{name: "sslv2 compat hello", input: []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15}, wantErr: ErrNotTLS, rawLen: 5},
		{name: "empty input", input: nil, truncated: true, wantErr: io.EOF},
		{name: "truncated header", input: h13[:3], truncated: true, wantErr: io.ErrUnexpectedEOF},
		{name: "truncated body", input: h13[:100], truncated: true, wantErr: io.ErrUnexpectedEOF},
		{name: "truncated at record boundary", input: reframe(t, h13, 100)[:105], truncated: true, wantErr: io.ErrUnexpectedEOF},
		{name: "too large", input: h13, maxSize: 200, wantErr: ErrTooLarge, rawLen: 5},
		{name: "too large, learnt from handshake header", input: reframe(t, h13, 50), maxSize: 200, wantErr: ErrTooLarge, rawLen: 55},
		{name: "exact size limit", input: h13, maxSize: len(h13), want: want13},
		{name: "record length zero", input: []byte{22, 3, 1, 0, 0}, wantErr: ErrMalformed},
		{name: "record length over 2^14", input: []byte{22, 3, 1, 0x40, 0x01}, wantErr: ErrMalformed},
		{name: "unknown record version", input: []byte{22, 3, 9, 0, 1, 1}, wantErr: ErrNotTLS, rawLen: 5},
		{name: "not a ClientHello", input: helloSpec{handshakeTy: 2, exts: [][]byte{host("a.example")}}.bytes(), wantErr: ErrMalformed},
		{name: "alert record inside hello", input: append(reframe(t, h12, 10)[:15], 21, 3, 3, 0, 2, 2, 40), wantErr: ErrMalformed, rawLen: 20},
		{name: "bytes after hello in its record", input: helloSpec{exts: [][]byte{host("a.example")}, afterHello: []byte{20, 0, 0, 0}}.bytes(), wantErr: ErrMalformed},
		{name: "bytes after extensions", input: helloSpec{exts: [][]byte{host("a.example")}, trailing: []byte{0}}.bytes(), wantErr: ErrMalformed},
		{name: "no extensions block", input: helloSpec{noExtBlock: true}.bytes(), want: Hello{Versions: []uint16{tls.VersionTLS12}}, wantErr: ErrNoServerName},
		{name: "synthetic ok", input: helloSpec{exts: [][]byte{host("A-1.Example")}}.bytes(), want: Hello{ServerName: "a-1.example", Versions: []uint16{tls.VersionTLS12}}},
		{name: "only unknown name types", input: helloSpec{exts: [][]byte{sniExt(uint8(7), "x")}}.bytes(), want: Hello{Versions: []uint16{tls.VersionTLS12}}, wantErr: ErrNoServerName},
		{name: "unknown name type skipped", input: helloSpec{exts: [][]byte{sniExt(uint8(7), "x", uint8(0), "b.example")}}.bytes(), want: Hello{ServerName: "b.example", Versions: []uint16{tls.VersionTLS12}}},
		{name: "two host names", input: helloSpec{exts: [][]byte{sniExt(uint8(0), "a.example", uint8(0), "b.example")}}.bytes(), wantErr: ErrMalformed},
		{name: "two sni extensions", input: helloSpec{exts: [][]byte{host("a.example"), host("b.example")}}.bytes(), wantErr: ErrMalformed},
		{name: "empty sni list", input: helloSpec{exts: [][]byte{ext(extServerName, []byte{0, 0})}}.bytes(), wantErr: ErrMalformed},
		{name: "empty sni extension", input: helloSpec{exts: [][]byte{ext(extServerName, nil)}}.bytes(), wantErr: ErrMalformed},
		{name: "sni underscore", input: helloSpec{exts: [][]byte{host("a_b.example")}}.bytes(), wantErr: ErrMalformed},
		{name: "sni nul", input: helloSpec{exts: [][]byte{host("a.example\x00.evil")}}.bytes(), wantErr: ErrMalformed},
		{name: "sni slash", input: helloSpec{exts: [][]byte{host("a.example/x")}}.bytes(), wantErr: ErrMalformed},
		{name: "sni empty label", input: helloSpec{exts: [][]byte{host("a..example")}}.bytes(), wantErr: ErrMalformed},
		{name: "sni two trailing dots", input: helloSpec{exts: [][]byte{host("a.example..")}}.bytes(), wantErr: ErrMalformed},
		{name: "sni only a dot", input: helloSpec{exts: [][]byte{host(".")}}.bytes(), wantErr: ErrMalformed},
		{name: "sni leading dot", input: helloSpec{exts: [][]byte{host(".a.example")}}.bytes(), wantErr: ErrMalformed},
		{name: "sni label too long", input: helloSpec{exts: [][]byte{host(strings.Repeat("a", 64) + ".example")}}.bytes(), wantErr: ErrMalformed},
		{name: "sni label 63", input: helloSpec{exts: [][]byte{host(strings.Repeat("a", 63) + ".example")}}.bytes(), want: Hello{ServerName: strings.Repeat("a", 63) + ".example", Versions: []uint16{tls.VersionTLS12}}},
		{name: "sni name too long", input: helloSpec{exts: [][]byte{host(strings.Repeat("abc.", 64) + "x")}}.bytes(), wantErr: ErrMalformed},
		{name: "sni ipv4", input: helloSpec{exts: [][]byte{host("192.0.2.1")}}.bytes(), wantErr: ErrIPServerName},
		{name: "sni ipv4 trailing dot", input: helloSpec{exts: [][]byte{host("192.0.2.1.")}}.bytes(), wantErr: ErrIPServerName},
		{name: "sni short ipv4", input: helloSpec{exts: [][]byte{host("127.1")}}.bytes(), wantErr: ErrIPServerName},
		{name: "sni decimal ipv4", input: helloSpec{exts: [][]byte{host("2130706433")}}.bytes(), wantErr: ErrIPServerName},
		{name: "sni hex ipv4", input: helloSpec{exts: [][]byte{host("0X7F.0.0.1")}}.bytes(), wantErr: ErrIPServerName},
		{name: "sni hex last label", input: helloSpec{exts: [][]byte{host("a.0xff")}}.bytes(), wantErr: ErrIPServerName},
		{name: "sni ipv6", input: helloSpec{exts: [][]byte{host("::1")}}.bytes(), wantErr: ErrMalformed},
		{name: "sni digits not last", input: helloSpec{exts: [][]byte{host("1.2.3.example")}}.bytes(), want: Hello{ServerName: "1.2.3.example", Versions: []uint16{tls.VersionTLS12}}},
		{name: "sni 0x-prefixed name", input: helloSpec{exts: [][]byte{host("a.0xg")}}.bytes(), want: Hello{ServerName: "a.0xg", Versions: []uint16{tls.VersionTLS12}}},
		{name: "alpn", input: helloSpec{exts: [][]byte{host("a.example"), ext(extALPN, []byte{0, 3, 2, 'h', '2'})}}.bytes(), want: Hello{ServerName: "a.example", Versions: []uint16{tls.VersionTLS12}, ALPN: []string{"h2"}}},
		{name: "alpn empty name", input: helloSpec{exts: [][]byte{host("a.example"), ext(extALPN, []byte{0, 1, 0})}}.bytes(), wantErr: ErrMalformed},
		{name: "alpn empty list", input: helloSpec{exts: [][]byte{host("a.example"), ext(extALPN, []byte{0, 0})}}.bytes(), wantErr: ErrMalformed},
		{name: "versions with grease", input: helloSpec{exts: [][]byte{host("a.example"), ext(extSupportedVersions, []byte{6, 0x3a, 0x3a, 3, 4, 3, 3})}}.bytes(), want: Hello{ServerName: "a.example", Versions: []uint16{tls.VersionTLS13, tls.VersionTLS12}}},
		{name: "versions odd length", input: helloSpec{exts: [][]byte{host("a.example"), ext(extSupportedVersions, []byte{3, 3, 4, 3})}}.bytes(), wantErr: ErrMalformed},
		{name: "duplicate versions", input: helloSpec{exts: [][]byte{host("a.example"), ext(extSupportedVersions, []byte{2, 3, 4}), ext(extSupportedVersions, []byte{2, 3, 4})}}.bytes(), wantErr: ErrMalformed},
		{name: "extension overruns block", input: helloSpec{exts: [][]byte{{0, 0, 0, 9, 0}}}.bytes(), wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]byte(nil), tt.input...)
			if !tt.truncated {
				in = append(in, tail...)
			}
			br := bytes.NewReader(in)
			var r io.Reader = br
			if tt.oneByte {
				r = iotest.OneByteReader(br)
			}
			raw, h, err := ReadClientHello(r, tt.maxSize)
			if !bytes.HasPrefix(in, raw) {
				t.Fatalf("raw is not a prefix of the input")
			}
			if got := len(in) - br.Len(); got != len(raw) {
				t.Fatalf("consumed %d bytes from the reader, raw has %d", got, len(raw))
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			wantRaw := tt.rawLen
			if wantRaw == 0 {
				wantRaw = len(tt.input)
			}
			if len(raw) != wantRaw {
				t.Fatalf("len(raw) = %d, want %d", len(raw), wantRaw)
			}
			if tt.wantErr == nil || errors.Is(tt.wantErr, ErrNoServerName) {
				rest, _ := io.ReadAll(br)
				if !bytes.Equal(rest, tail) {
					t.Fatalf("bytes after the hello: got %q, want %q", rest, tail)
				}
				if !reflect.DeepEqual(h, tt.want) {
					t.Fatalf("hello = %+v, want %+v", h, tt.want)
				}
			}
		})
	}
}

// TestParseErrorReadsWholeRecord pins that a parse error still leaves the reader exactly after
// the hello's records (the caller may log raw, and the connection is closed anyway).
func TestParseErrorReadsWholeRecord(t *testing.T) {
	in := helloSpec{exts: [][]byte{host("192.0.2.1")}}.bytes()
	br := bytes.NewReader(append(in, "next"...))
	raw, _, err := ReadClientHello(br, 0)
	if !errors.Is(err, ErrIPServerName) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrIPServerName and ErrMalformed", err)
	}
	if !bytes.Equal(raw, in) || br.Len() != 4 {
		t.Fatalf("raw %d bytes, %d left; want %d and 4", len(raw), br.Len(), len(in))
	}
	if strings.Contains(err.Error(), "\x00") {
		t.Fatal("error echoes raw bytes")
	}
}

// TestOverNetPipe reads a hello from a live tls.Client across a synchronous pipe, the way the
// gateway reads it from a tunnel, and checks the bytes it returns are a valid hello for a server.
func TestOverNetPipe(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	done := make(chan error, 1)
	go func() {
		defer client.Close()
		done <- tls.Client(client, cfg13).Handshake()
	}()
	_ = server.SetDeadline(time.Now().Add(10 * time.Second))
	raw, h, err := ReadClientHello(server, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h.ServerName != "configmgrbits.cdn.manage.microsoft.com" {
		t.Fatalf("server name %q", h.ServerName)
	}
	if !IsTLSRecordStart(raw) {
		t.Fatal("IsTLSRecordStart(raw) = false")
	}
	server.Close()
	if err := <-done; err == nil {
		t.Fatal("handshake succeeded without a server")
	}
}

func TestIsTLSRecordStart(t *testing.T) {
	h13 := realHello(t, cfg13)
	tests := []struct {
		in   []byte
		want bool
	}{
		{h13, true},
		{h13[:3], true},
		{h13[:5], true},
		{h13[:2], false}, // too short to tell
		{nil, false},
		{[]byte("GET / HTTP/1.1\r\n"), false},
		{[]byte("CONNECT"), false},
		{[]byte{0x80, 0x2e, 0x01, 0x03, 0x01}, false}, // SSLv2-compatible hello
		{[]byte{23, 3, 3, 0, 10}, false},              // application data
		{[]byte{22, 3, 5}, false},
		{[]byte{22, 2, 0}, false},
		{[]byte{22, 3, 0, 0, 0}, false},
		{[]byte{22, 3, 1, 0x40, 0x00}, true},
		{[]byte{22, 3, 1, 0x40, 0x01}, false},
	}
	for _, tt := range tests {
		if got := IsTLSRecordStart(tt.in); got != tt.want {
			t.Errorf("IsTLSRecordStart(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func BenchmarkReadClientHello(b *testing.B) {
	for _, bc := range []struct {
		name  string
		hello []byte
	}{
		{"tls13", realHello(b, cfg13)},
		{"tls12", realHello(b, cfg12)},
		{"tls13-3records", reframe(b, realHello(b, cfg13), 700)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := bytes.NewReader(bc.hello)
			b.SetBytes(int64(len(bc.hello)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(bc.hello)
				if _, _, err := ReadClientHello(r, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
