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
	for _, r := range policy.Reasons() {
		st, ok := documented[r]
		switch {
		case !ok:
			t.Errorf("README.md's table of answers does not list %s (status %d)", r, r.Status())
		case st != r.Status():
			t.Errorf("README.md lists %s under %d; the gateway answers %d", r, st, r.Status())
		}
	}
	for r := range documented {
		if !slices.Contains(policy.Reasons(), r) {
			t.Errorf("README.md lists %s, which is not a reason code", r)
		}
	}
}
