package proxyauth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func FuzzParseBasic(f *testing.F) {
	for _, s := range []string{
		basic("alice", "pw"), "basic YTpi", "Basic   YTpi", "Basic YTpi ", "Basic YT\npi", "Basic", "Basic ",
		"Bearer x", "Basic Og==", "Basic OmE=", "Basic YQ==", "Basic YTpi\x00", "Basic " + strings.Repeat("A", 5000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		user, pass, ok := ParseBasic(header)
		if !ok {
			if user != "" || pass != "" {
				t.Fatalf("failed parse returned %q %q", user, pass)
			}
			return
		}
		if user == "" || strings.Contains(user, ":") || strings.ContainsFunc(user+pass, isCTL) {
			t.Fatalf("accepted bad credentials %q %q from %q", user, pass, header)
		}
		if len(header) > maxBasicHeader {
			t.Fatalf("accepted %d bytes", len(header))
		}
		// Canonical re-encoding parses to the same credentials.
		u2, p2, ok2 := ParseBasic("Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
		if !ok2 || u2 != user || p2 != pass {
			t.Fatalf("re-encoded %q %q -> %q %q %v", user, pass, u2, p2, ok2)
		}
	})
}

func FuzzParseHtpasswd(f *testing.F) {
	good := "$2y$04$YlyMctbEF3s7UUah9uWXHutoXOEqJE.HvvQqFfMZgKgmOEFx.Hnyq"
	for _, s := range []string{
		"alice:" + good + "\n", "# c\n\r\n a:" + good + "\r\nb:" + good, "a:" + good + "\na:" + good,
		"a:$apr1$x$y", "a:{SHA}x", "a:abJnggxhB/yWI", "a:$6$x$y", "a:$2y$99$" + good[7:], ":x", "nocolon", "a:b:c",
		"a:$2y$04$" + strings.Repeat("\xff", 53),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseHtpasswd("f", data)
		if err != nil {
			l, ok := err.(ErrorList)
			if !ok || len(l) == 0 {
				t.Fatalf("error %T %v", err, err)
			}
			for _, e := range l {
				if e.Line < 1 || e.Col < 1 || !strings.HasPrefix(e.Error(), "f: line ") {
					t.Fatalf("error without file:line: %q", e.Error())
				}
			}
			return
		}
		for _, u := range s.Users() {
			if checkUser(u) != nil {
				t.Fatalf("accepted user %q", u)
			}
			if kind, _, err := classify(string(s.users[u])); kind != "" || err != nil {
				t.Fatalf("accepted non-bcrypt hash %q", s.users[u])
			}
		}
	})
}
