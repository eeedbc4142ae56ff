package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/internal/loadstat"
)

func TestParseSamples(t *testing.T) {
	names := []string{"go_goroutines", "go_threads"}
	tests := []struct {
		name    string
		in      string
		want    []float64
		wantErr string
	}{
		{"present", "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 9012\ngo_threads 7\n", []float64{9012, 7}, ""},
		{"float", "go_threads 1.5e+01\ngo_goroutines 12.0\n", []float64{12, 15}, ""},
		{"prefix of another name", "go_goroutines_total 3\ngo_threads 1\n", nil, "no go_goroutines"},
		{"missing", "go_goroutines 7\n", nil, "no go_threads"},
		{"garbage", "go_goroutines lots\ngo_threads 1\n", nil, "not a count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSamples(strings.NewReader(tc.in), names...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != 2 || got[0] != tc.want[0] || got[1] != tc.want[1] {
				t.Fatalf("parseSamples = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func FuzzParseSamples(f *testing.F) {
	f.Add("go_goroutines 9012\n")
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := parseSamples(strings.NewReader(s), "go_goroutines"); err == nil && v[0] < 0 {
			t.Fatalf("negative value %v", v[0])
		}
	})
}

// TestConnectAnswer feeds connect() canned proxy answers over a pipe.
func TestConnectAnswer(t *testing.T) {
	tests := []struct {
		name    string
		answer  string
		wantErr string
		rest    string
	}{
		{"established", "HTTP/1.1 200 Connection established\r\nX-Scpgate-Conn: a-1\r\n\r\n", "", ""},
		{"bytes behind the head", "HTTP/1.0 200 OK\r\n\r\nhello", "", "hello"},
		{"refused", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", `"HTTP/1.1 403 Forbidden"`, ""},
		{"closed early", "HTTP/1.1 200", "reading the CONNECT answer", ""},
		{"head too long", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 600) + "\r\n\r\n", "too long", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			go func() {
				req := make([]byte, 64)
				_, _ = server.Read(req)
				_, _ = io.WriteString(server, tc.answer)
				_ = server.Close()
			}()
			_ = client.SetDeadline(time.Now().Add(5 * time.Second))
			c, err := connect(client, []byte("CONNECT x:1 HTTP/1.1\r\nHost: x:1\r\n\r\n"))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, _ := io.ReadAll(c)
			if string(got) != tc.rest {
				t.Fatalf("bytes after the head = %q, want %q", got, tc.rest)
			}
		})
	}
}

func TestSelectTargets(t *testing.T) {
	ts, err := selectTargets("squid, scpgate")
	if err != nil || len(ts) != 2 || ts[0].name != loadstat.Squid || ts[1].name != loadstat.Scpgate {
		t.Fatalf("selectTargets = %v, %v", ts, err)
	}
	if _, err := selectTargets("nginx"); err == nil || !strings.Contains(err.Error(), `unknown target "nginx"`) {
		t.Fatalf("unknown target: err = %v", err)
	}
	if all, _ := selectTargets(""); len(all) != len(allTargets()) {
		t.Fatalf("default: %d targets", len(all))
	}
}

// TestWorkloadThroughSpliceProxy runs every phase, scaled down, through the bare splice proxy
// (in this process, so the proxy's /proc numbers are this test's own) against the sink.
func TestWorkloadThroughSpliceProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := startSink("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addrc := make(chan net.Addr, 1)
	proxyDone := make(chan error, 1)
	pctx, stopProxy := context.WithCancel(ctx)
	go func() {
		proxyDone <- runSpliceProxy(pctx, "127.0.0.1:0", s.Addr().String(), func(a net.Addr) { addrc <- a })
	}()
	defer func() {
		stopProxy()
		if err := <-proxyDone; err != nil {
			t.Error(err)
		}
	}()
	var proxyAddr net.Addr
	select {
	case proxyAddr = <-addrc:
	case err := <-proxyDone:
		t.Fatalf("splice proxy: %v", err)
	}
	ep := &endpoint{proxy: proxyAddr.String(), target: s.Addr().String()}
	ep.init()
	r := &runner{ep: ep, pid: os.Getpid(), w: workload{setupN: 50, conc: 4, rateTime: 200 * time.Millisecond, bulkTime: 100 * time.Millisecond, idleN: 20, maxErrs: 5}}
	m := map[string]float64{}
	r.idle(ctx, m)
	r.setup(ctx, m)
	r.rate(ctx, m)
	r.bulk(ctx, m)
	if r.errs != 0 {
		t.Fatalf("%d errors", r.errs)
	}
	for _, k := range []string{loadstat.SetupP50, loadstat.SetupP99, loadstat.RateTPS, loadstat.CPUPerTunnel, loadstat.Bulk1Up, loadstat.Bulk1Down, loadstat.Bulk8Up, loadstat.Bulk8Down, loadstat.CPUPerGiB, loadstat.IdleFDs} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %s in %v", k, m)
		}
	}
	if m[loadstat.SetupP99] < m[loadstat.SetupP50] || m[loadstat.SetupP50] <= 0 {
		t.Errorf("setup p50 %v, p99 %v", m[loadstat.SetupP50], m[loadstat.SetupP99])
	}
	// Each idle tunnel holds at least the client's, the proxy's two and the sink's socket here.
	if m[loadstat.IdleFDs] < 4 {
		t.Errorf("fds per idle tunnel = %v, want ≥ 4 (everything is in this process)", m[loadstat.IdleFDs])
	}
	if m[loadstat.Bulk1Up] <= 0 || m[loadstat.Bulk1Down] <= 0 {
		t.Errorf("bulk moved nothing: %v", m)
	}
}

// TestEchoThroughSinkModes checks the sink's three modes directly.
func TestEchoThroughSinkModes(t *testing.T) {
	s, err := startSink("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ep := &endpoint{target: s.Addr().String()}
	ep.init()
	c, _, err := ep.open()
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(c, echoPayload, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := echoAgain(c, []byte("again"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()

	c, _, err = ep.open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{modeGenerate}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("generate mode: %v", err)
	}
	if !bytes.Equal(buf[:16], make([]byte, 16)) {
		t.Fatal("generate mode sent unexpected bytes")
	}
}

func TestCountTimeWait(t *testing.T) {
	const proc = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:9C40 06 00000000:00000000 03:00000F9E 00000000     0        0 0 3 0000000000000000
   2: 0100007F:A1B3 0100007F:9C40 06 00000000:00000000 03:00000F9E 00000000     0        0 0 3 0000000000000000
   3: 0100007F:A1B4 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
`
	for _, tc := range []struct {
		in   string
		want int
	}{
		{proc, 2},
		{"  sl  local_address rem_address   st\n", 0},
		{"", 0},
		{"header\n   9: 0100007F:A1B2\n", 0},
	} {
		got, err := countTimeWait(strings.NewReader(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("countTimeWait = %d, %v; want %d", got, err, tc.want)
		}
	}
}
