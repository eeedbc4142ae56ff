package auditreport

import (
	"fmt"
	"time"
)

// ParseBound parses a -since or -until value: an RFC 3339 time, or a date (2006-01-02, UTC). A
// date as an upper bound (end true) means the end of that day, so "-until 2026-12-01" includes
// the whole of 1 December.
func ParseBound(s string, end bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-12-01T08:00:00Z) nor a date (2026-12-01)", s)
	}
	if end {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}
