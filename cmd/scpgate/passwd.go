package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/scpgate/scpgate/gateway/proxyauth"
)

// cmdPasswd adds or replaces a user in an htpasswd file with a bcrypt hash. The password is
// read from standard input (one line) so it never appears in the process list or shell history.
func cmdPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "htpasswd file to create or update (required)")
	cost := fs.Int("cost", 0, "bcrypt cost (default: bcrypt's default, 10)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: scpgate passwd -file FILE [-cost N] USER   (password on standard input)\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *file == "" || fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	user := fs.Arg(0)
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(stderr, "password for %s (input is echoed; pipe it in to avoid that): ", user)
		}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "scpgate passwd: reading the password: %v\n", err)
		return exitFail
	}
	password := strings.TrimRight(line, "\r\n")
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
