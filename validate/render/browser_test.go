package render_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/validate/render"
)

// chromium finds Debian's chromium; outside CI a missing browser skips the test, in CI
// (CI=true) it fails: .ci/deps.sh installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is required for the HTML report test: .ci/deps.sh installs it (apt-get install chromium)")
	}
	t.Skip("chromium not installed (apt-get install chromium); CI installs it")
	return ""
}

// runChromium runs one headless invocation with a private profile and no network chatter.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

// TestHTMLInChromium loads the report from a file in a real browser: a screenshot is taken
// and the rendered DOM holds the summary and one row per check.
func TestHTMLInChromium(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	rep := sampleReport()
	var b bytes.Buffer
	if err := render.HTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "validate.html")
	if err := os.WriteFile(page, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	url := "file://" + page
	shot := filepath.Join(dir, "validate.png")
	runChromium(t, bin, "--screenshot="+shot, "--window-size=1400,1000", url)
	if st, err := os.Stat(shot); err != nil || st.Size() < 1000 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
	png, _ := os.ReadFile(shot)
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatal("the screenshot is not a PNG")
	}
	dom := string(runChromium(t, bin, "--dump-dom", url))
	summary := regexp.MustCompile(`(?s)<div id="summary"[^>]*>(.*?)</div>\s*<p`).FindStringSubmatch(dom)
	if summary == nil {
		t.Fatalf("no summary in the DOM:\n%.2000s", dom)
	}
	for _, want := range []string{"11412 error", "2 of 5 checks failed", "5 checks", "2 pass", "1 warn", "2 fail"} {
		if !strings.Contains(summary[1], want) {
			t.Errorf("summary lacks %q: %s", want, summary[1])
		}
	}
	if n := strings.Count(dom, `<tr class="check `); n != len(rep.Results) {
		t.Errorf("%d check rows in the DOM, want %d", n, len(rep.Results))
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
}
