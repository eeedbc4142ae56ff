package sitelock

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestSecondHolderIsRefusedWithPidAndHost(t *testing.T) {
	dir := t.TempDir()
	const h = "6F2C2F5B-1D2E-4B51-9C3A-000000000001"
	l, err := Acquire(dir, h)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, h)
	if !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), fmt.Sprintf("pid=%d", os.Getpid())) {
		t.Fatalf("second Acquire: %v, want ErrHeld naming pid %d", err, os.Getpid())
	}
	// Another hierarchy in the same folder is a different SCP.
	other, err := Acquire(dir, "6F2C2F5B-1D2E-4B51-9C3A-000000000002")
	if err != nil {
		t.Fatalf("other hierarchy: %v", err)
	}
	if err := other.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := Acquire(dir, h)
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	_ = again.Release()
}
