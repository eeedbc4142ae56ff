package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

type fakeSite struct {
	mu        sync.Mutex
	restarted []string
}

func (f *fakeSite) Status() Status {
	return Status{PID: 1, ModeInForce: "online", Components: []Component{{Name: "SMS_DMP_DOWNLOADER", State: "running"}}}
}

func (f *fakeSite) Restart(c string) error {
	if c != "SMS_DMP_DOWNLOADER" {
		return errors.New("unknown component " + c)
	}
	f.mu.Lock()
	f.restarted = append(f.restarted, c)
	f.mu.Unlock()
	return nil
}

func (f *fakeSite) Trigger(string) error { return nil }

func TestRoundTripAndToken(t *testing.T) {
	dir, err := os.MkdirTemp("", "ctl") // short: AF_UNIX paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &fakeSite{}
	srv, err := Listen(dir, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()

	res, err := Call(ctx, dir, Request{Command: "status"})
	if err != nil || res.Status == nil || res.Status.ModeInForce != "online" {
		t.Fatalf("status: %+v %v", res, err)
	}
	if _, err := Call(ctx, dir, Request{Command: "restart", Component: "SMS_DMP_DOWNLOADER"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Call(ctx, dir, Request{Command: "restart", Component: "SMS_NOPE"}); err == nil || !strings.Contains(err.Error(), "unknown component") {
		t.Fatalf("bad component: %v", err)
	}
	// A wrong token is refused.
	if err := os.WriteFile(filepath.Join(dir, TokenName), []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Call(ctx, dir, Request{Command: "restart", Component: "SMS_DMP_DOWNLOADER"}); err == nil || err.Error() != "bad token" {
		t.Fatalf("wrong token: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(h.restarted) != 1 {
		t.Fatalf("restarts %v, want one", h.restarted)
	}
	if _, err := Call(context.Background(), dir, Request{Command: "status"}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("after Serve: %v, want ErrNotRunning", err)
	}
}
