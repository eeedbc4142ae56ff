package scpgate

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/scpgate/scpgate/policy"
)

// TestReadmeListsEveryReason: README.md's table of answers lists exactly the reason codes of
// policy's table, each under the status the gateway gives it, so the docs cannot drift.
func TestReadmeListsEveryReason(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "| answer | when | `X-Scpgate-Reason` |")
	if start < 0 {
		t.Fatal("README.md has no table of answers")
	}
	status := regexp.MustCompile(`^\| (\d{3})\b`)
	code := regexp.MustCompile("`([a-z_]+)`")
	documented := map[policy.Reason]int{}
	for _, line := range strings.Split(text[start:], "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		m := status.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("row without a status: %q", line)
		}
		st, _ := strconv.Atoi(m[1])
		cells := strings.Split(line, "|")
		for _, c := range code.FindAllStringSubmatch(cells[len(cells)-2], -1) {
			r := policy.Reason(c[1])
			if _, dup := documented[r]; dup {
				t.Errorf("%s is listed twice", r)
			}
			documented[r] = st
		}
	}
	compareReasons(t, "README.md", documented)
}

// TestAdminGuideListsEveryReason: docs/scp-admin.md says what to do for each reason code; its
// table lists exactly the codes of policy's table, each with its status and advice.
func TestAdminGuideListsEveryReason(t *testing.T) {
	data, err := os.ReadFile("docs/scp-admin.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	begin := strings.Index(doc, "<!-- reason-codes:begin -->")
	end := strings.Index(doc, "<!-- reason-codes:end -->")
	if begin < 0 || end < begin {
		t.Fatal("docs/scp-admin.md has no reason-codes table markers")
	}
	row := regexp.MustCompile("^\\| `([a-z_]+)` \\| (\\d{3})\\b[^|]*\\|[^|]+\\|([^|]*)\\|$")
	documented := map[policy.Reason]int{}
	for _, line := range strings.Split(doc[begin:end], "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("row is not | `code` | status | what happened | what to do |: %q", line)
			continue
		}
		r := policy.Reason(m[1])
		if _, dup := documented[r]; dup {
			t.Errorf("%s is listed twice", r)
		}
		documented[r], _ = strconv.Atoi(m[2])
		if strings.TrimSpace(m[3]) == "" {
			t.Errorf("%s: nothing under \"what to do\"", r)
		}
	}
	compareReasons(t, "docs/scp-admin.md", documented)
}

// compareReasons fails unless documented holds exactly policy's reason codes, each with its status.
func compareReasons(t *testing.T, file string, documented map[policy.Reason]int) {
	t.Helper()
	for _, r := range policy.Reasons() {
		st, ok := documented[r]
		switch {
		case !ok:
			t.Errorf("%s does not list %s (status %d)", file, r, r.Status())
		case st != r.Status():
			t.Errorf("%s lists %s under %d; the gateway answers %d", file, r, st, r.Status())
		}
	}
	for r := range documented {
		if !slices.Contains(policy.Reasons(), r) {
			t.Errorf("%s lists %s, which is not a reason code", file, r)
		}
	}
}
