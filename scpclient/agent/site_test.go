package agent

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBackoffDoublesWithJitterUpToMax(t *testing.T) {
	for _, tt := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond},
		{10, 500 * time.Millisecond, time.Second}, // capped at max
	} {
		for range 50 {
			if d := Backoff(100*time.Millisecond, time.Second, tt.n); d < tt.lo || d > tt.hi {
				t.Fatalf("Backoff(n=%d) = %s, want in [%s, %s]", tt.n, d, tt.lo, tt.hi)
			}
		}
	}
}

func TestRetryStopsOnSuccessOrAttempts(t *testing.T) {
	calls := 0
	err := Retry(context.Background(), time.Millisecond, time.Millisecond, 5, func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls, want success after 3", err, calls)
	}
	calls = 0
	err = Retry(context.Background(), time.Millisecond, time.Millisecond, 2, func(context.Context) error { calls++; return errors.New("down") })
	if err == nil || calls != 2 {
		t.Fatalf("err %v after %d calls, want failure after 2", err, calls)
	}
}
