package auditreport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/scpgate/scpgate/gateway/audit"
)

// genAudit writes about size bytes of realistic audit lines to w: mostly allowed tunnels to a few
// dozen endpoints, some denied names, a few authentication refusals, from 50 clients, one
// second apart. It returns the number of lines.
func genAudit(w io.Writer, size int64) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	allowed := []struct{ host, pattern string }{
		{"go.microsoft.com", "go.microsoft.com"}, {"aka.ms", "aka.ms"}, {"download.microsoft.com", "download.microsoft.com"},
		{"sccm.manage.microsoft.com", "*.manage.microsoft.com"}, {"configmgrbits.cdn.manage.microsoft.com", "configmgrbits.cdn.manage.microsoft.com"},
		{"cmbitsstore.blob.core.windows.net", "cmbitsstore.blob.core.windows.net"}, {"download.windowsupdate.com", "download.windowsupdate.com"},
	}
	for i := range 30 {
		allowed = append(allowed, struct{ host, pattern string }{fmt.Sprintf("a%d.akamaiedge.net", i), "*.akamaiedge.net"})
	}
	t := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var written, n int64
	var line []byte
	for written < size {
		t = t.Add(time.Second)
		client := fmt.Sprintf("10.1.0.%d:%d", rng.IntN(50)+1, 10000+rng.IntN(50000))
		rec := audit.Record{Time: t, ConnID: fmt.Sprintf("gw1-%d", n), Client: client, Method: "CONNECT", Port: 443, Status: 200, Event: "close", DurationMS: rng.Float64() * 1000}
		switch x := rng.IntN(100); {
		case x < 85:
			a := allowed[rng.IntN(len(allowed))]
			rec.Host, rec.Group, rec.Pattern, rec.Decision, rec.Mode, rec.SNI = a.host, "updates-and-servicing", a.pattern, "allow", "enforce", a.host
			rec.Address, rec.BytesUp, rec.BytesDown = "203.0.113.7:443", rng.Int64N(10000), rng.Int64N(10<<20)
		case x < 97:
			rec.Host, rec.Decision, rec.Reason, rec.Status, rec.Event = fmt.Sprintf("denied%d.example.com", rng.IntN(200)), "deny", "no_rule", 403, "decision"
		default:
			rec.Host, rec.Decision, rec.Reason, rec.Status, rec.Event = "go.microsoft.com", "deny", "auth_failed", 407, "decision"
		}
		var err error
		if line, err = json.Marshal(rec); err != nil {
			return n, err
		}
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return n, err
		}
		written += int64(len(line))
		n++
	}
	return n, bw.Flush()
}

// BenchmarkAggregate is the in-process cost per audit line (decode and aggregate).
func BenchmarkAggregate(b *testing.B) {
	var buf bytes.Buffer
	n, err := genAudit(&buf, 16<<20)
	if err != nil {
		b.Fatal(err)
	}
	p := mustPolicy(b)
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		a := New(Options{Policy: p})
		if err := a.Read(context.Background(), "bench", bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
		_ = a.Report()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
