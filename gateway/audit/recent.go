package audit

import "sync"

// Recent keeps the last records in memory, so that the admin listener can answer "what did
// the gateway decide for connection X" (scpgate validate asks it for its probes) without
// access to the audit file. It is safe for concurrent use; the zero value keeps nothing.
type Recent struct {
	mu   sync.Mutex
	buf  []Record
	next int
	full bool
}

// NewRecent keeps the last n records.
func NewRecent(n int) *Recent {
	return &Recent{buf: make([]Record, max(n, 0))}
}

// Write remembers r, forgetting the oldest record when full.
func (c *Recent) Write(r Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) == 0 {
		return
	}
	c.buf[c.next] = r
	c.next++
	if c.next == len(c.buf) {
		c.next, c.full = 0, true
	}
}

// Find returns, for each id that is still remembered, its latest record (a tunnel's "close"
// record comes after nothing else; a denial has only its "decision" record), in the order of
// ids; unknown ids are left out.
func (c *Recent) Find(ids []string) []Record {
	want := make(map[string]int, len(ids))
	for i, id := range ids {
		if _, dup := want[id]; !dup && id != "" {
			want[id] = i
		}
	}
	found := make(map[string]Record, len(want))
	c.mu.Lock()
	n := c.next
	if c.full {
		n = len(c.buf)
	}
	// Oldest to newest, so a later record of the same id replaces an earlier one.
	start := 0
	if c.full {
		start = c.next
	}
	for k := 0; k < n; k++ {
		r := c.buf[(start+k)%len(c.buf)]
		if _, ok := want[r.ConnID]; ok {
			found[r.ConnID] = r
		}
	}
	c.mu.Unlock()
	out := make([]Record, 0, len(found))
	for _, id := range ids {
		if r, ok := found[id]; ok {
			out = append(out, r)
			delete(found, id)
		}
	}
	return out
}
