package agent

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/sctool"
)

// TestOfflineNeverDials: an offline site runs its three components (the connectivity check
// included), is triggered, and prepares and exports usage data, with a dialer that fails the
// test if anything tries to connect.
func TestOfflineNeverDials(t *testing.T) {
	base, err := os.MkdirTemp("", "scpo") // short: the control socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	cfgFile := filepath.Join(base, "scpclient.yaml")
	if err := os.WriteFile(cfgFile, []byte(`site_code: XYZ
site_role: standalone-primary
hierarchy_id: 6f2c2f5b-1d2e-4b51-9c3a-7d1e2f3a4b5c
installed_version: 5.00.9135.1000
mode: offline
proxy:
  url: http://127.0.0.1:9
data_dir: data
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	fail := func(_ context.Context, network, addr string) (net.Conn, error) {
		t.Errorf("offline mode dialed %s %s", network, addr)
		return nil, ErrOffline
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	site, err := Open(cfg, Options{Dial: fail, Mirror: pw})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	r := NewRunner(site, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var seen []string
	// waitFor waits until n lines seen so far contain want (components log in any order).
	waitFor := func(n int, want string) {
		t.Helper()
		timeout := time.After(time.Minute)
		for {
			count := 0
			for _, l := range seen {
				if strings.Contains(l, want) {
					count++
				}
			}
			if count >= n {
				return
			}
			select {
			case l := <-lines:
				seen = append(seen, l)
			case <-timeout:
				t.Fatalf("no %d lines with %q in:\n%s", n, want, strings.Join(seen, "\n"))
			}
		}
	}
	waitFor(1, "SMS_DMP_DOWNLOADER started; mode in force: offline")
	waitFor(1, "SMS_DMP_UPLOADER: The service connection point is in offline mode")
	waitFor(1, "SMS_SERVICE_CONNECTOR: The service connection point is in offline mode: the endpoint connectivity check does not run.")
	for _, c := range []string{"SMS_DMP_DOWNLOADER", "SMS_DMP_UPLOADER", "SMS_SERVICE_CONNECTOR"} {
		if err := r.Trigger(c); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(1, "Check for Updates is not available in offline mode")
	waitFor(1, "The endpoint connectivity check is not available in offline mode.")
	waitFor(2, "SMS_DMP_UPLOADER: The service connection point is in offline mode")
	// A restart of one component leaves the other alone.
	if err := r.Restart("SMS_DMP_DOWNLOADER"); err != nil {
		t.Fatal(err)
	}
	waitFor(2, "SMS_DMP_DOWNLOADER started; mode in force: offline")
	for _, c := range r.Status().Components {
		want := map[string]int{"SMS_DMP_DOWNLOADER": 1, "SMS_DMP_UPLOADER": 0, "SMS_SERVICE_CONNECTOR": 0}[c.Name]
		if c.State != StateRunning || c.Restarts != want {
			t.Fatalf("component %+v, want running with %d restarts", c, want)
		}
	}
	if err := r.Restart("SMS_NOPE"); err == nil {
		t.Fatal("restart of an unknown component succeeded")
	}
	// The client an offline site builds cannot dial either.
	c, err := site.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := site.Uploader(cfg, nil); err != nil {
		t.Fatal(err)
	}
	// Neither can the connectivity check, run directly.
	if _, err := site.CheckConnectivity(ctx, cfg, nil); err != ErrOffline {
		t.Fatalf("offline connectivity check: %v, want ErrOffline", err)
	}
	if len(r.Status().Components) != 3 {
		t.Fatalf("components %+v, want three", r.Status().Components)
	}
	req, _ := newGet("https://go.microsoft.com/fwlink/?LinkId=2008245")
	if _, err := c.Do(req); err == nil || !strings.Contains(err.Error(), "offline mode") {
		t.Fatalf("offline client: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	lg, err := cmtrace.Open(filepath.Join(base, "usb", sctool.LogFileName), sctool.Component, cmtrace.Truncate())
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	if _, err := sctool.Prepare(cfg, filepath.Join(base, "usb", "UsageData.scpusage.json"), lg); err != nil {
		t.Fatal(err)
	}
	if err := sctool.Export(cfg, filepath.Join(base, "usb", "UsageData.csv"), lg); err != nil {
		t.Fatal(err)
	}
	// Nothing the site started outlives it (the log reader ends once the pipe is closed).
	_ = pw.Close()
	for range lines {
	}
	goleak.VerifyNone(t)
}

func newGet(u string) (*http.Request, error) { return http.NewRequest(http.MethodGet, u, nil) }
