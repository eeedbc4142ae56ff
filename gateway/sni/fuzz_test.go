package sni

import (
	"bytes"
	"io"
	"reflect"
	"testing"
)

func FuzzReadClientHello(f *testing.F) {
	h13 := realHello(f, cfg13)
	h12 := realHello(f, cfg12)
	for _, seed := range [][]byte{
		h13, h12, realHello(f, cfgNo),
		reframe(f, h13, 300), reframe(f, h12, 1),
		append(append([]byte(nil), h12...), "\x17\x03\x03\x00\x01x"...),
		helloSpec{exts: [][]byte{sniExt(uint8(0), "a.example", uint8(0), "b.example")}}.bytes(),
		helloSpec{exts: [][]byte{host("127.1")}}.bytes(),
		helloSpec{noExtBlock: true}.bytes(),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{22, 3, 1, 0, 4, 1, 0, 0, 0},
	} {
		f.Add(seed, 0)
	}
	f.Add(h13, 64)
	f.Fuzz(func(t *testing.T, data []byte, maxSize int) {
		br := bytes.NewReader(data)
		raw, h, err := ReadClientHello(br, maxSize)
		if !bytes.HasPrefix(data, raw) {
			t.Fatal("raw is not a prefix of the input")
		}
		if len(data)-br.Len() != len(raw) {
			t.Fatalf("read %d bytes, returned %d", len(data)-br.Len(), len(raw))
		}
		limit := maxSize
		if limit <= 0 {
			limit = DefaultMaxSize
		}
		if len(raw) > max(limit, recordHeaderLen) {
			t.Fatalf("len(raw) = %d over the limit %d", len(raw), limit)
		}
		if err != nil {
			if h.ServerName != "" {
				t.Fatalf("server name %q returned with error %v", h.ServerName, err)
			}
			if err == io.EOF && len(raw) != 0 {
				t.Fatal("io.EOF after reading bytes")
			}
			return
		}
		if h.ServerName == "" {
			t.Fatal("success without a server name")
		}
		raw2, h2, err2 := ReadClientHello(bytes.NewReader(raw), maxSize)
		if err2 != nil || !bytes.Equal(raw, raw2) || !reflect.DeepEqual(h, h2) {
			t.Fatalf("re-parse differs: %v %+v vs %+v", err2, h, h2)
		}
	})
}
