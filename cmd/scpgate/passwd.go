package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/internal/cmdline"
)

var passwdHelp = cmdline.Help{
	Synopsis: "scpgate passwd -file FILE [-cost N] USER",
	About: "Adds USER to an htpasswd file, or replaces their password, with a bcrypt hash. The file is\n" +
		"created if missing and replaced atomically. On a terminal the password is asked for twice\n" +
		"and not echoed; from a pipe one line is read, so it never appears in the process list or the\n" +
		"shell history. The gateway reloads the file on its own (or on SIGHUP).",
	Example: "scpgate passwd -file /etc/scpgate/users.htpasswd scp\n" +
		"printf '%s\\n' \"$PASSWORD\" | scpgate passwd -file /etc/scpgate/users.htpasswd scp",
}

// cmdPasswd adds or replaces a user in an htpasswd file with a bcrypt hash.
func cmdPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("passwd", stderr)
	file := fs.String("file", "", "htpasswd file to create or update (required)")
	cost := fs.Int("cost", 0, "bcrypt cost (default: bcrypt's default, 10)")
	if code, ok := cmdline.Parse(fs, passwdHelp, args, stdout, stderr); !ok {
		return code
	}
	if *file == "" || fs.NArg() != 1 {
		return cmdline.Usage(stderr, fs, passwdHelp, "want -file FILE and exactly one USER")
	}
	user := fs.Arg(0)
	password, err := readPassword(stdin, stderr, user)
	if err != nil {
		fmt.Fprintf(stderr, "scpgate passwd: %v\n", err)
		return exitFail
	}
	if password == "" {
		fmt.Fprintln(stderr, "scpgate passwd: empty password refused")
		return exitFail
	}
	hash, err := proxyauth.HashPassword(password, *cost)
	if err != nil {
		fmt.Fprintf(stderr, "scpgate passwd: %v\n", err)
		return exitFail
	}
	if err := proxyauth.AppendOrReplaceUser(*file, user, hash); err != nil {
		fmt.Fprintf(stderr, "scpgate passwd: %v\n", err)
		return exitFail
	}
	if _, err := proxyauth.LoadHtpasswd(*file); err != nil {
		fmt.Fprintf(stderr, "scpgate passwd: the file was written but does not load: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s: user %s set\n", *file, user)
	return exitOK
}

// readPassword asks twice without echo when stdin is a terminal, and reads one line otherwise.
func readPassword(stdin io.Reader, stderr io.Writer, user string) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		restore, err := echoOff(fd)
		if err != nil {
			return "", fmt.Errorf("turning the terminal's echo off: %w", err)
		}
		defer restore()
		fmt.Fprintf(stderr, "Password for %s: ", user)
		first, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		fmt.Fprintf(stderr, "Retype the password: ")
		second, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		if string(first) != string(second) {
			return "", errors.New("the passwords do not match; nothing was changed")
		}
		return string(first), nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
