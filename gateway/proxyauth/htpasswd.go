package proxyauth

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/crypto/bcrypt"

	"github.com/scpgate/scpgate/internal/atomicfile"
)

// dummyTail is the salt and digest of a bcrypt hash of a random string nobody knows. Prefixed with
// a version and a cost it makes a well-formed hash that costs as much to compare as a real one, so
// an unknown user takes as long to refuse as a known one with a wrong password.
const dummyTail = "YlyMctbEF3s7UUah9uWXHutoXOEqJE.HvvQqFfMZgKgmOEFx.Hnyq"

// bcryptAlphabet is bcrypt's base64 alphabet.
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// Store is a parsed htpasswd file. It is immutable once loaded.
type Store struct {
	name  string
	users map[string][]byte // user → bcrypt hash
	names []string          // sorted
	dummy []byte            // compared for unknown users
}

// Error is one problem in an htpasswd file.
type Error struct {
	File string
	Line int
	Col  int // 1-based byte column: the user name, or the hash for a problem with the hash
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: line %d: %s", e.File, e.Line, e.Msg) }

// ErrorList holds every problem found in a file, in line order, so an admin fixes them in one go.
type ErrorList []*Error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// LoadHtpasswd reads an htpasswd file. See ParseHtpasswd.
func LoadHtpasswd(path string) (*Store, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("proxyauth: %w", err)
	}
	return ParseHtpasswd(path, data)
}

// ParseHtpasswd parses "user:hash" lines as written by Apache's `htpasswd -B`. Only bcrypt
// ($2a$, $2b$, $2y$) is accepted: the other kinds htpasswd can write are fast hashes (or plain
// text) that an attacker holding the file can brute-force. Blank lines and lines starting with '#'
// are ignored; CRLF line ends are accepted. name is used in error messages. Errors are an
// ErrorList.
func ParseHtpasswd(name string, data []byte) (*Store, error) {
	s := &Store{name: name, users: map[string][]byte{}}
	firstLine := map[string]int{}
	costs := map[int]int{}
	var errs ErrorList
	bad := func(line, col int, format string, args ...any) {
		errs = append(errs, &Error{File: name, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
	}
	for i, raw := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		untrimmed := string(raw)
		line := strings.TrimSpace(untrimmed)
		if line == "" || line[0] == '#' {
			continue
		}
		userCol := len(untrimmed) - len(strings.TrimLeftFunc(untrimmed, unicode.IsSpace)) + 1
		user, hash, ok := strings.Cut(line, ":")
		if !ok {
			bad(n, userCol, `no ":" between user and password hash`)
			continue
		}
		hashCol := userCol + len(user) + 1
		if err := checkUser(user); err != nil {
			bad(n, userCol, "%v", err)
			continue
		}
		if prev, dup := firstLine[user]; dup {
			bad(n, userCol, "user %q is already defined on line %d", user, prev)
			continue
		}
		firstLine[user] = n
		kind, cost, err := classify(hash)
		if kind != "" {
			bad(n, hashCol, "user %q uses %s; scpgate accepts only bcrypt: htpasswd -B %s %s", user, kind, name, user)
			continue
		}
		if err != nil {
			bad(n, hashCol, "user %q: malformed bcrypt hash: %v", user, err)
			continue
		}
		s.users[user] = []byte(hash)
		costs[cost]++
	}
	if len(errs) > 0 {
		return nil, errs
	}
	s.names = make([]string, 0, len(s.users))
	for u := range s.users {
		s.names = append(s.names, u)
	}
	slices.Sort(s.names)
	s.dummy = dummyHash(costs)
	return s, nil
}

// dummyHash builds the hash compared for unknown users at the cost most users have, so that an
// unknown user looks, by timing, like the typical known one.
func dummyHash(costs map[int]int) []byte {
	best, bestN := bcrypt.DefaultCost, 0
	for c, n := range costs {
		if n > bestN || (n == bestN && c > best) {
			best, bestN = c, n
		}
	}
	return fmt.Appendf(nil, "$2y$%02d$%s", best, dummyTail)
}

// Users returns the user names, sorted.
func (s *Store) Users() []string { return slices.Clone(s.names) }

// Len is the number of users.
func (s *Store) Len() int { return len(s.users) }

// classify returns the name of a refused hash kind, or "" and the cost for a bcrypt hash (with an
// error if it is malformed).
func classify(h string) (kind string, cost int, err error) {
	switch {
	case h == "":
		return "an empty password field", 0, nil
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		cost, err := checkBcrypt(h)
		return "", cost, err
	case strings.HasPrefix(h, "$2x$"):
		return "bcrypt $2x$ (the buggy crypt_blowfish variant)", 0, nil
	case strings.HasPrefix(h, "$apr1$"):
		return "Apache MD5 ($apr1$)", 0, nil
	case strings.HasPrefix(h, "$1$"):
		return "MD5-crypt ($1$)", 0, nil
	case strings.HasPrefix(h, "$5$"):
		return "SHA-256-crypt ($5$)", 0, nil
	case strings.HasPrefix(h, "$6$"):
		return "SHA-512-crypt ($6$)", 0, nil
	case strings.HasPrefix(h, "{SHA}"):
		return "SHA-1 ({SHA})", 0, nil
	case strings.HasPrefix(h, "{SSHA}"):
		return "salted SHA-1 ({SSHA})", 0, nil
	case strings.HasPrefix(h, "$"):
		id, _, _ := strings.Cut(h[1:], "$")
		return fmt.Sprintf("an unsupported hash ($%.16s$)", id), 0, nil
	case len(h) == 13 && strings.Trim(h, bcryptAlphabet) == "":
		return "DES crypt", 0, nil
	case strings.Contains(h, ":"):
		return `a "user:realm:hash" line (htdigest, not htpasswd)`, 0, nil
	default:
		return "a plain-text password (or an unknown hash)", 0, nil
	}
}

// checkBcrypt validates the shape x/crypto/bcrypt expects: "$2?$" + two-digit cost + "$" +
// 53 characters of bcrypt base64, 60 in all.
func checkBcrypt(h string) (int, error) {
	if len(h) != 60 || h[6] != '$' || !isDigit(h[4]) || !isDigit(h[5]) {
		return 0, errors.New("want 60 characters: $2y$<cost>$<53 characters>")
	}
	if strings.Trim(h[7:], bcryptAlphabet) != "" {
		return 0, errors.New("bad character in salt or digest")
	}
	cost, err := bcrypt.Cost([]byte(h))
	if err != nil {
		return 0, err
	}
	return cost, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// checkUser refuses names that cannot round-trip through Basic credentials or this file format.
func checkUser(u string) error {
	switch {
	case u == "":
		return errors.New("empty user name")
	case strings.TrimSpace(u) != u:
		return fmt.Errorf("user %q has leading or trailing spaces", u)
	case u[0] == '#':
		return fmt.Errorf("user %q starts with '#' (it would read as a comment)", u)
	case strings.Contains(u, ":"):
		return fmt.Errorf("user %q contains ':'", u)
	case strings.ContainsFunc(u, isCTL):
		return fmt.Errorf("user %q contains a control character", u)
	}
	return nil
}

func isCTL(r rune) bool { return r < 0x20 || r == 0x7f }

// HashPassword returns a bcrypt hash for `scpgate passwd`. cost 0 means bcrypt.DefaultCost.
// Passwords over 72 bytes are refused because bcrypt ignores the rest.
func HashPassword(password string, cost int) (string, error) {
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return "", fmt.Errorf("proxyauth: bcrypt cost %d is outside %d..%d", cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if len(password) > maxPassword {
		return "", fmt.Errorf("proxyauth: password is %d bytes; bcrypt uses at most %d", len(password), maxPassword)
	}
	if strings.ContainsFunc(password, isCTL) {
		return "", errors.New("proxyauth: password contains a control character, which Basic credentials cannot carry")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("proxyauth: %w", err)
	}
	return string(h), nil
}

// AppendOrReplaceUser sets user's hash in the htpasswd file at path, creating it (mode 0640) if
// needed. Every other line (comments, other users, even lines scpgate would refuse) is kept as it
// is; the user's first line is replaced in place and any later duplicates are removed. The file is
// rewritten atomically: a temporary file in the same directory is written, fsynced and renamed
// over path, so a reader (or a reload racing with `scpgate passwd`) sees the old file or the new
// one, never a mix. A symlinked path is followed and its target replaced.
func AppendOrReplaceUser(path, user, hash string) error {
	if err := checkUser(user); err != nil {
		return fmt.Errorf("proxyauth: %w", err)
	}
	if kind, _, err := classify(hash); kind != "" || err != nil {
		if err == nil {
			err = fmt.Errorf("hash is %s, not bcrypt", kind)
		}
		return fmt.Errorf("proxyauth: %w", err)
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	mode := os.FileMode(0o640)
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return fmt.Errorf("proxyauth: %w", err)
	}

	entry := user + ":" + hash
	var out []string
	replaced := false
	lines := strings.SplitAfter(string(old), "\n")
	for _, raw := range lines {
		if raw == "" {
			continue
		}
		line := strings.TrimSpace(raw)
		if u, _, ok := strings.Cut(line, ":"); ok && u == user && line[0] != '#' {
			if !replaced {
				out = append(out, entry+"\n")
				replaced = true
			}
			continue
		}
		out = append(out, raw)
	}
	if !replaced {
		if n := len(out); n > 0 && !strings.HasSuffix(out[n-1], "\n") {
			out[n-1] += "\n"
		}
		out = append(out, entry+"\n")
	}
	return atomicfile.WriteFile(path, []byte(strings.Join(out, "")), mode)
}
