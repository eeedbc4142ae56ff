package policy

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// The SCP admin's guide (docs/scp-admin.md) says what to do for each reason code. Its table must
// list exactly the codes the gateway gives, so it cannot fall behind when a code is added.
func TestAdminGuideListsEveryReason(t *testing.T) {
	data, err := os.ReadFile("../docs/scp-admin.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	begin := strings.Index(doc, "<!-- reason-codes:begin -->")
	end := strings.Index(doc, "<!-- reason-codes:end -->")
	if begin < 0 || end < begin {
		t.Fatal("docs/scp-admin.md has no reason-codes table markers")
	}
	documented := map[string]string{} // code -> status column
	for _, line := range strings.Split(doc[begin:end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		code := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if _, dup := documented[code]; dup {
			t.Errorf("%s is documented twice", code)
		}
		documented[code] = strings.TrimSpace(cells[2])
		if strings.TrimSpace(cells[4]) == "" {
			t.Errorf("%s: the \"what to do\" column is empty", code)
		}
	}
	for _, r := range Reasons() {
		status, ok := documented[string(r)]
		if !ok {
			t.Errorf("reason %s is missing from docs/scp-admin.md", r)
			continue
		}
		if !strings.HasPrefix(status, strconv.Itoa(r.Status())) {
			t.Errorf("docs/scp-admin.md gives %s the status %q; the gateway answers %d", r, status, r.Status())
		}
		delete(documented, string(r))
	}
	for code := range documented {
		t.Errorf("docs/scp-admin.md documents %s, which is not a reason code", code)
	}
}
