package audit

import (
	"fmt"
	"sync"
	"testing"
)

func TestRecent(t *testing.T) {
	r := NewRecent(3)
	r.Write(Record{ConnID: "a", Event: EventDecision, Decision: DecisionDeny})
	r.Write(Record{ConnID: "b", Event: EventClose})
	r.Write(Record{ConnID: "a", Event: EventClose, Decision: DecisionDeny, Reason: "sni_mismatch"})
	got := r.Find([]string{"a", "b", "x", "a"})
	if len(got) != 2 || got[0].ConnID != "a" || got[0].Reason != "sni_mismatch" || got[1].ConnID != "b" {
		t.Fatalf("Find = %+v", got)
	}
	// The oldest is forgotten when full.
	r.Write(Record{ConnID: "c"})
	r.Write(Record{ConnID: "d"})
	if got := r.Find([]string{"b", "c", "d"}); len(got) != 2 || got[0].ConnID != "c" || got[1].ConnID != "d" {
		t.Fatalf("after wrap: %+v", got)
	}
	var zero Recent
	zero.Write(Record{ConnID: "z"})
	if got := zero.Find([]string{"z"}); len(got) != 0 {
		t.Errorf("the zero value kept %+v", got)
	}
}

func TestRecentConcurrent(t *testing.T) {
	r := NewRecent(64)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				id := fmt.Sprintf("%d-%d", g, i)
				r.Write(Record{ConnID: id})
				_ = r.Find([]string{id})
			}
		}()
	}
	wg.Wait()
	// 800 writes into 64 slots: exactly the last 64 are kept.
	var all []string
	for g := range 4 {
		for i := range 200 {
			all = append(all, fmt.Sprintf("%d-%d", g, i))
		}
	}
	if got := r.Find(all); len(got) != 64 {
		t.Errorf("%d records kept, want 64", len(got))
	}
}
