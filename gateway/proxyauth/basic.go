package proxyauth

import (
	"encoding/base64"
	"strings"
)

// maxBasicHeader bounds the Proxy-Authorization value we decode. Real credentials are far
// shorter; the bound keeps a hostile client from making us decode megabytes per request.
const maxBasicHeader = 4096

// maxPassword is bcrypt's input limit: it ignores bytes beyond 72, so a longer password could only
// "match" by its prefix. Such passwords are refused outright.
const maxPassword = 72

type parseResult int

const (
	basicOK        parseResult = iota
	basicMalformed             // Basic, but broken: a failed attempt
	basicOther                 // another scheme: the client has not tried Basic yet
)

// ParseBasic parses a Proxy-Authorization value of the Basic scheme (RFC 7617). It is strict: the
// scheme is matched case-insensitively and followed by one or more spaces, then standard padded
// base64 with nothing else around it; the decoded text needs a ':' after a non-empty user, and
// neither part may hold control characters. Values over 4 KiB are refused.
func ParseBasic(header string) (user, pass string, ok bool) {
	user, pass, r := parseBasic(header)
	return user, pass, r == basicOK
}

func parseBasic(header string) (user, pass string, r parseResult) {
	if len(header) > maxBasicHeader {
		return "", "", basicMalformed
	}
	scheme, token, found := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", basicOther
	}
	if !found {
		return "", "", basicMalformed
	}
	token = strings.TrimLeft(token, " ")
	// The decoder skips '\r' and '\n' inside the input; refuse anything outside the alphabet first.
	if token == "" || strings.ContainsFunc(token, func(c rune) bool {
		return !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=')
	}) {
		return "", "", basicMalformed
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(token)
	if err != nil {
		return "", "", basicMalformed
	}
	user, pass, found = strings.Cut(string(raw), ":")
	if !found || user == "" || strings.ContainsFunc(user, isCTL) || strings.ContainsFunc(pass, isCTL) {
		return "", "", basicMalformed
	}
	return user, pass, basicOK
}
