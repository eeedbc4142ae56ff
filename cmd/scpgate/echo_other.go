//go:build !linux

package main

// echoOff is a no-op where the termios calls differ; term.ReadPassword still reads without echo.
func echoOff(int) (restore func(), err error) { return func() {}, nil }
