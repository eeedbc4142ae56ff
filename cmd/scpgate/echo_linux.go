package main

import "golang.org/x/sys/unix"

// echoOff turns the terminal's echo off before the prompt is printed, so that a password typed
// ahead of term.ReadPassword (which turns echo off itself, after the prompt) is not shown
// either. restore puts the terminal back as it was.
func echoOff(fd int) (restore func(), err error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
