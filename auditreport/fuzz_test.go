package auditreport

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// FuzzRead feeds arbitrary bytes to the line reader and the aggregation: no panic, every line is
// accounted for exactly once (blank, record or malformed), and every format renders.
func FuzzRead(f *testing.F) {
	f.Add([]byte(lines(f, allow(0, "10.0.0.1:1", "go.microsoft.com", "go.microsoft.com", 1, 2),
		denied(1, "[::1]:3", "management.azure.com", 443, "no_rule"), refused(2, "bad", "auth_failed"))))
	f.Add([]byte("{\"time\":\"2026-11-30T10:00:00Z\"}\r\n\n{\nnot json\n\x1f\x8b"))
	f.Add([]byte{0x1f, 0x8b, 0x08, 0x00})
	p := mustPolicy(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		a := New(Options{Policy: p, ClientExactLimit: 2, MaxDenied: 2, MaxEndpoints: 2, MaxRefusals: 2, MalformedShown: 2})
		_ = a.Read(context.Background(), "fuzz", bytes.NewReader(data))
		r := a.Report()
		in := r.Inputs[0]
		if in.Lines != in.Blank+in.Records+in.Malformed {
			t.Fatalf("lines %d != blank %d + records %d + malformed %d", in.Lines, in.Blank, in.Records, in.Malformed)
		}
		// Plain text is read to its end; a stream that only starts like gzip stops with an
		// error (checked below) before any line.
		if want := int64(bytes.Count(data, []byte("\n"))); !in.Compressed && in.Error == "" && (in.Lines != want && in.Lines != want+1) {
			t.Fatalf("%d lines counted in %d bytes with %d newlines", in.Lines, len(data), want)
		}
		if isGzipMagic(data) && !in.Compressed && (in.Error == "" || in.Lines != 0) {
			t.Fatalf("gzip magic, not decompressed: error %q after %d lines; want an error and no line", in.Error, in.Lines)
		}
		if r.Totals.Records != in.Records-in.OutsidePeriod || r.Totals.Passed+r.Totals.Refused != r.Totals.Records {
			t.Fatalf("totals %+v input %+v", r.Totals, in)
		}
		for _, format := range Formats() {
			if err := r.Write(io.Discard, format); err != nil {
				t.Fatalf("%s: %v", format, err)
			}
		}
	})
}
