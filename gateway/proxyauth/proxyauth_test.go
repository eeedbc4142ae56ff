package proxyauth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scpgate/scpgate/policy"
)

func hash(t testing.TB, pass, prefix string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return prefix + string(h[4:]) // x/crypto writes $2a$; $2b$ and $2y$ are the same algorithm
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestParseBasic(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		name, header, user, pass string
		ok                       bool
	}{
		{"plain", basic("alice", "s3cret"), "alice", "s3cret", true},
		{"scheme case", "bAsIc " + b64([]byte("a:b")), "a", "b", true},
		{"several spaces", "Basic   " + b64([]byte("a:b")), "a", "b", true},
		{"empty password", basic("a", ""), "a", "", true},
		{"colon in password", basic("a", "x:y:z"), "a", "x:y:z", true},
		{"utf-8", basic("jürgen", "päss"), "jürgen", "päss", true},
		{"empty", "", "", "", false},
		{"scheme only", "Basic", "", "", false},
		{"scheme and space", "Basic ", "", "", false},
		{"other scheme", "Bearer " + b64([]byte("a:b")), "", "", false},
		{"NTLM", "NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==", "", "", false},
		{"prefix scheme", "Basicx " + b64([]byte("a:b")), "", "", false},
		{"tab separator", "Basic\t" + b64([]byte("a:b")), "", "", false},
		{"bad base64", "Basic !!!!", "", "", false},
		{"url-safe base64", "Basic " + base64.URLEncoding.EncodeToString([]byte("a:b?>?")), "", "", false},
		{"unpadded", "Basic " + base64.RawStdEncoding.EncodeToString([]byte("a:bc")), "", "", false},
		{"embedded newline", "Basic " + b64([]byte("al"))[:2] + "\n" + b64([]byte("al"))[2:], "", "", false},
		{"trailing space", basic("a", "b") + " ", "", "", false},
		{"trailing data", basic("a", "b") + " x", "", "", false},
		{"no colon", "Basic " + b64([]byte("alice")), "", "", false},
		{"empty user", basic("", "pw"), "", "", false},
		{"control in user", basic("a\x00b", "pw"), "", "", false},
		{"control in password", basic("a", "p\nw"), "", "", false},
		{"too long", basic("a", strings.Repeat("x", maxBasicHeader)), "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, p, ok := ParseBasic(tc.header)
			if ok != tc.ok || u != tc.user || p != tc.pass {
				t.Fatalf("ParseBasic(%q) = %q, %q, %v; want %q, %q, %v", tc.header, u, p, ok, tc.user, tc.pass, tc.ok)
			}
		})
	}
}

func TestParseHtpasswdAcceptsBcrypt(t *testing.T) {
	data := fmt.Sprintf("# scpgate users\n\nalice:%s\r\n  bob:%s  \ncarol:%s", hash(t, "a", "$2a$"), hash(t, "b", "$2b$"), hash(t, "c", "$2y$"))
	s, err := ParseHtpasswd("users", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Users(); !slices.Equal(got, []string{"alice", "bob", "carol"}) {
		t.Fatalf("users %v", got)
	}
	if got := string(s.dummy[:7]); got != "$2y$04$" {
		t.Errorf("dummy hash %q should use the users' cost", got)
	}
	a := NewBasic(BasicConfig{Store: s})
	for _, u := range []string{"alice", "bob", "carol"} {
		if r := a.check(basic(u, u[:1])); !r.OK || r.User != u {
			t.Errorf("%s: %+v", u, r)
		}
	}
}

func TestParseHtpasswdRefusesOtherKinds(t *testing.T) {
	tests := []struct{ line, kind string }{
		{"u:$apr1$abcdefgh$0123456789abcdefghijkl", "Apache MD5 ($apr1$)"},
		{"u:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", "SHA-1 ({SHA})"},
		{"u:{SSHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", "salted SHA-1 ({SSHA})"},
		{"u:abJnggxhB/yWI", "DES crypt"},
		{"u:hunter2", "a plain-text password"},
		{"u:$1$salt$hash", "MD5-crypt ($1$)"},
		{"u:$5$rounds=5000$salt$hash", "SHA-256-crypt ($5$)"},
		{"u:$6$salt$hash", "SHA-512-crypt ($6$)"},
		{"u:$2x$04$" + strings.Repeat("a", 53), "bcrypt $2x$"},
		{"u:$argon2id$v=19$m=65536", "an unsupported hash ($argon2id$)"},
		{"u:", "an empty password field"},
		{"u:realm:0123456789abcdef0123456789abcdef", `a "user:realm:hash" line (htdigest`},
	}
	for _, tc := range tests {
		data := "# header\nok:" + hash(t, "x", "$2y$") + "\n" + tc.line + "\n"
		_, err := ParseHtpasswd("users.htpasswd", []byte(data))
		want := `users.htpasswd: line 3: user "u" uses ` + tc.kind
		if err == nil || !strings.HasPrefix(err.Error(), want) ||
			!strings.Contains(err.Error(), "; scpgate accepts only bcrypt: htpasswd -B users.htpasswd u") {
			t.Errorf("%q:\n got %v\nwant %s...", tc.line, err, want)
		}
		var list ErrorList
		if !errors.As(err, &list) || len(list) != 1 || list[0].Line != 3 || list[0].Col != 3 || list[0].File != "users.htpasswd" {
			t.Errorf("%q: error list %#v", tc.line, list)
		}
	}
}

// TestParseHtpasswdColumns: a problem points at the user name, or at the hash when the hash is
// the problem, counting leading blanks, so `scpgate check` prints file:line:col an editor opens.
func TestParseHtpasswdColumns(t *testing.T) {
	good := hash(t, "x", "$2y$")
	tests := []struct {
		data      string
		line, col int
	}{
		{"nocolon", 1, 1},
		{"  nocolon", 1, 3},
		{":" + good, 1, 1},
		{"alice:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", 1, 7},
		{"\talice:hunter2", 1, 8},
		{"a:" + good + "\n\n   a:" + good, 3, 4},
		{"bob:" + good[:59], 1, 5},
	}
	for _, tc := range tests {
		_, err := ParseHtpasswd("f", []byte(tc.data))
		var list ErrorList
		if !errors.As(err, &list) || len(list) != 1 || list[0].Line != tc.line || list[0].Col != tc.col {
			t.Errorf("%q: %v; want one problem at line %d, column %d (got %+v)", tc.data, err, tc.line, tc.col, list)
		}
	}
}

func TestParseHtpasswdErrors(t *testing.T) {
	good := hash(t, "x", "$2y$")
	tests := []struct{ data, want string }{
		{"a:" + good + "\nb:" + good + "\na:" + good, `f: line 3: user "a" is already defined on line 1`},
		{"nocolon", `f: line 1: no ":" between user and password hash`},
		{":" + good, "f: line 1: empty user name"},
		{"a\x01:" + good, `f: line 1: user "a\x01" contains a control character`},
		{"a:" + good[:59], `f: line 1: user "a": malformed bcrypt hash`},
		{"a:" + good[:7] + "!" + good[8:], `f: line 1: user "a": malformed bcrypt hash`},
		{"a:$2y$99$" + good[7:], `f: line 1: user "a": malformed bcrypt hash`},
		{"a:$2y$+4$" + good[7:], `f: line 1: user "a": malformed bcrypt hash`},
	}
	for _, tc := range tests {
		_, err := ParseHtpasswd("f", []byte(tc.data))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.data, err, tc.want)
		}
	}
	// Every problem is reported, not just the first.
	_, err := ParseHtpasswd("f", []byte("x\ny:{SHA}abc\n"))
	if l, ok := err.(ErrorList); !ok || len(l) != 2 {
		t.Errorf("want two errors, got %v", err)
	}
}

func TestLoadHtpasswd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	os.WriteFile(path, []byte("a:"+hash(t, "x", "$2y$")+"\nb:$apr1$x$y\n"), 0o600)
	_, err := LoadHtpasswd(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+": line 2:") {
		t.Fatalf("err %v", err)
	}
	if _, err := LoadHtpasswd(path + ".missing"); err == nil || !strings.Contains(err.Error(), "users.missing") {
		t.Fatalf("err %v", err)
	}
}

// counting wraps the bcrypt comparison to prove which checks spend it.
func counting(a *testAuth) *atomic.Int64 {
	var n atomic.Int64
	a.basic.compare = func(h, p []byte) error { n.Add(1); return bcrypt.CompareHashAndPassword(h, p) }
	return &n
}

// testConfig is what the tests set on the Basic authenticator and the Lockout around it.
type testConfig struct {
	Realm         string
	CacheSize     int
	CacheTTL      time.Duration
	MaxFailures   int
	FailureWindow time.Duration
	Lockout       time.Duration
	MaxClients    int
}

// testAuth is Basic wrapped in Lockout, as the gateway assembles them.
type testAuth struct {
	basic *Basic
	lock  *Lockout
}

// Check authenticates a request carrying header as Proxy-Authorization ("" for none).
func (a *testAuth) Check(client netip.Addr, header string) Outcome {
	r := &http.Request{Header: http.Header{}}
	if header != "" {
		r.Header.Set("Proxy-Authorization", header)
	}
	return a.lock.Authenticate(r, client)
}

type testStats struct {
	BasicStats
	LockoutStats
}

func (a *testAuth) Stats() testStats { return testStats{a.basic.Stats(), a.lock.Stats()} }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newAuth(t testing.TB, cfg testConfig, users ...string) (*testAuth, *clock) {
	var sb strings.Builder
	for _, u := range users {
		fmt.Fprintf(&sb, "%s:%s\n", u, hash(t, "pw-"+u, "$2y$"))
	}
	s, err := ParseHtpasswd("t", []byte(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	b := NewBasic(BasicConfig{Store: s, Realm: cfg.Realm, CacheSize: cfg.CacheSize, CacheTTL: cfg.CacheTTL, Now: c.Now})
	l := NewLockout(b, LockoutConfig{MaxFailures: cfg.MaxFailures, FailureWindow: cfg.FailureWindow, Lockout: cfg.Lockout, MaxClients: cfg.MaxClients, Now: c.Now})
	t.Cleanup(l.Close)
	return &testAuth{basic: b, lock: l}, c
}

var ip = netip.MustParseAddr("192.0.2.10")

func TestCheck(t *testing.T) {
	a, _ := newAuth(t, testConfig{}, "alice", "bob")
	n := counting(a)
	tests := []struct {
		name, header string
		reason       policy.Reason
		user         string // verified, or attempted (never the password)
		compares     int64
	}{
		{"no header", "", policy.ReasonAuthRequired, "", 0},
		{"other scheme", "Negotiate abc", policy.ReasonAuthRequired, "", 0},
		{"malformed basic", "Basic ***", policy.ReasonAuthFailed, "", 0},
		{"wrong password", basic("alice", "nope"), policy.ReasonAuthFailed, "alice", 1},
		{"unknown user spends bcrypt", basic("mallory", "pw-alice"), policy.ReasonAuthFailed, "mallory", 1},
		{"over 72 bytes", basic("alice", "pw-alice"+strings.Repeat("x", 70)), policy.ReasonAuthFailed, "alice", 0},
		{"right password", basic("alice", "pw-alice"), "", "alice", 1},
		{"other user", basic("bob", "pw-bob"), "", "bob", 1},
	}
	for _, tc := range tests {
		before := n.Load()
		r := a.Check(ip, tc.header) // 4 failures in all: below the default lockout
		if r.Reason != tc.reason || r.User != tc.user || r.OK != (tc.reason == "") {
			t.Errorf("%s: %+v", tc.name, r)
		}
		if d := n.Load() - before; d != tc.compares {
			t.Errorf("%s: %d bcrypt comparisons, want %d", tc.name, d, tc.compares)
		}
	}
	if got := a.lock.Challenges(); len(got) != 1 || got[0] != `Basic realm="scpgate"` {
		t.Errorf("challenges %q", got)
	}
	if got := NewBasic(BasicConfig{Realm: `a"b`}).Challenges(); got[0] != `Basic realm="a\"b"` {
		t.Errorf("challenges %q", got)
	}
}

func TestCacheHitSkipsBcrypt(t *testing.T) {
	a, c := newAuth(t, testConfig{CacheTTL: time.Minute}, "alice")
	n := counting(a)
	for range 5 {
		if r := a.Check(ip, basic("alice", "pw-alice")); !r.OK {
			t.Fatal(r)
		}
	}
	if n.Load() != 1 {
		t.Fatalf("%d bcrypt comparisons for 5 checks, want 1", n.Load())
	}
	// A wrong password for a cached user is verified (and fails), and does not evict the entry.
	if r := a.Check(ip, basic("alice", "guess")); r.OK {
		t.Fatal("wrong password accepted")
	}
	a.Check(ip, basic("alice", "pw-alice"))
	if n.Load() != 2 {
		t.Fatalf("compares %d, want 2", n.Load())
	}
	c.Advance(time.Minute) // TTL over
	a.Check(ip, basic("alice", "pw-alice"))
	if n.Load() != 3 {
		t.Fatalf("expired entry used: compares %d", n.Load())
	}
	if s := a.Stats(); s.CacheHits != 5 || s.BcryptCompares != 3 {
		t.Errorf("stats %+v", s)
	}
	// The cache holds a MAC, never the password.
	for _, el := range a.basic.cache {
		if e := el.Value.(*cacheEntry); strings.Contains(string(e.mac[:]), "pw-alice") {
			t.Fatal("plaintext in cache")
		}
	}
}

func TestCacheBoundedEvictsOldest(t *testing.T) {
	a, _ := newAuth(t, testConfig{CacheSize: 2}, "u1", "u2", "u3")
	n := counting(a)
	for _, u := range []string{"u1", "u2", "u3"} {
		a.Check(ip, basic(u, "pw-"+u))
	}
	if s := a.Stats(); s.CachedUsers != 2 {
		t.Fatalf("cached %d", s.CachedUsers)
	}
	a.Check(ip, basic("u3", "pw-u3"))
	a.Check(ip, basic("u1", "pw-u1")) // evicted
	if n.Load() != 4 {
		t.Fatalf("compares %d, want 4", n.Load())
	}
}

func TestCacheDisabled(t *testing.T) {
	a, _ := newAuth(t, testConfig{CacheSize: -1}, "u")
	n := counting(a)
	a.Check(ip, basic("u", "pw-u"))
	a.Check(ip, basic("u", "pw-u"))
	if n.Load() != 2 {
		t.Fatalf("compares %d", n.Load())
	}
}

func TestSwapClearsCacheKeepsLockout(t *testing.T) {
	a, _ := newAuth(t, testConfig{MaxFailures: 2}, "alice")
	n := counting(a)
	a.Check(ip, basic("alice", "pw-alice"))
	other := netip.MustParseAddr("192.0.2.99")
	a.Check(other, basic("x", "y"))
	a.Check(other, basic("x", "y"))

	// alice's password changes.
	s, err := ParseHtpasswd("t", []byte("alice:"+hash(t, "new", "$2y$")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	a.basic.Swap(s)
	if r := a.Check(ip, basic("alice", "pw-alice")); r.OK {
		t.Fatal("old password still accepted from the cache after Swap")
	}
	if r := a.Check(ip, basic("alice", "new")); !r.OK {
		t.Fatalf("new password: %+v", r)
	}
	if n.Load() != 5 {
		t.Errorf("compares %d, want 5", n.Load())
	}
	if r := a.Check(other, basic("alice", "new")); r.Reason != policy.ReasonLockedOut {
		t.Errorf("lockout lost on Swap: %+v", r)
	}
}

func TestSwapDuringCheckDoesNotCacheStale(t *testing.T) {
	a, _ := newAuth(t, testConfig{}, "alice")
	// The comparison runs against the old store; Swap happens meanwhile.
	a.basic.compare = func(h, p []byte) error {
		s, _ := ParseHtpasswd("t", nil)
		a.basic.Swap(s)
		return bcrypt.CompareHashAndPassword(h, p)
	}
	if r := a.Check(ip, basic("alice", "pw-alice")); !r.OK {
		t.Fatal(r)
	}
	if s := a.Stats(); s.CachedUsers != 0 {
		t.Fatal("credential verified against the old store was cached")
	}
}

func TestLockoutAndRecovery(t *testing.T) {
	a, c := newAuth(t, testConfig{MaxFailures: 3, FailureWindow: time.Minute, Lockout: 5 * time.Minute}, "alice")
	n := counting(a)
	for i := range 3 {
		if r := a.Check(ip, basic("alice", "bad")); r.Reason != policy.ReasonAuthFailed {
			t.Fatalf("failure %d: %+v", i, r)
		}
	}
	r := a.Check(ip, basic("alice", "pw-alice")) // even the right password
	if r.Reason != policy.ReasonLockedOut || r.OK || r.RetryAfter != 5*time.Minute {
		t.Fatalf("after 3 failures: %+v", r)
	}
	if n.Load() != 3 {
		t.Errorf("bcrypt spent on a locked-out client: %d", n.Load())
	}
	if r := a.Check(netip.MustParseAddr("192.0.2.11"), basic("alice", "pw-alice")); !r.OK {
		t.Errorf("another client is locked out too: %+v", r)
	}
	c.Advance(4 * time.Minute)
	if r := a.Check(ip, ""); r.Reason != policy.ReasonLockedOut || r.RetryAfter != time.Minute {
		t.Fatalf("%+v", r)
	}
	c.Advance(time.Minute)
	if r := a.Check(ip, basic("alice", "pw-alice")); !r.OK {
		t.Fatalf("after lockout: %+v", r)
	}
	if s := a.Stats(); s.Lockouts != 1 || s.LockedOut != 2 || s.Failures != 3 {
		t.Errorf("stats %+v", s)
	}
}

func TestFailureWindowAndSuccessReset(t *testing.T) {
	a, c := newAuth(t, testConfig{MaxFailures: 3, FailureWindow: time.Minute}, "alice")
	fail := func() Outcome { return a.Check(ip, basic("alice", "bad")) }
	fail()
	fail()
	c.Advance(time.Minute) // window over: the count starts again
	fail()
	fail()
	if r := a.Check(ip, ""); r.Reason == policy.ReasonLockedOut {
		t.Fatal("failures from an old window counted")
	}
	a.Check(ip, basic("alice", "pw-alice")) // success resets
	fail()
	fail()
	if r := a.Check(ip, ""); r.Reason == policy.ReasonLockedOut {
		t.Fatal("success did not reset the count")
	}
	fail()
	if r := a.Check(ip, ""); r.Reason != policy.ReasonLockedOut {
		t.Fatalf("%+v", r)
	}
}

func TestClientKey(t *testing.T) {
	a, _ := newAuth(t, testConfig{MaxFailures: 1}, "alice")
	a.Check(netip.MustParseAddr("2001:db8:1:2::1"), basic("alice", "bad"))
	if r := a.Check(netip.MustParseAddr("2001:db8:1:2:ffff::9"), ""); r.Reason != policy.ReasonLockedOut {
		t.Errorf("same /64 not locked: %+v", r)
	}
	if r := a.Check(netip.MustParseAddr("2001:db8:1:3::1"), ""); r.Reason == policy.ReasonLockedOut {
		t.Errorf("other /64 locked: %+v", r)
	}
	a.Check(netip.MustParseAddr("::ffff:192.0.2.50"), basic("alice", "bad"))
	if r := a.Check(netip.MustParseAddr("192.0.2.50"), ""); r.Reason != policy.ReasonLockedOut {
		t.Errorf("v4-mapped address counted separately: %+v", r)
	}
}

func TestTrackedClientsBounded(t *testing.T) {
	a, _ := newAuth(t, testConfig{MaxClients: 3, MaxFailures: 2}, "alice")
	for i := range 10 {
		a.Check(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), "Basic ***")
	}
	if s := a.Stats(); s.TrackedClients != 3 {
		t.Fatalf("tracked %d, want 3", s.TrackedClients)
	}
}

func TestConcurrentChecks(t *testing.T) {
	a, _ := newAuth(t, testConfig{MaxFailures: 1000}, "alice", "bob")
	store := a.basic.store
	// The locking is under test, not bcrypt (which the race detector makes ~20 ms a call).
	aliceHash := string(store.users["alice"])
	a.basic.compare = func(h, p []byte) error {
		if string(h) == aliceHash && string(p) == "pw-alice" {
			return nil
		}
		return bcrypt.ErrMismatchedHashAndPassword
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 50 {
				addr := netip.AddrFrom4([4]byte{10, 0, byte(i), byte(j % 4)})
				switch j % 3 {
				case 0:
					if r := a.Check(addr, basic("alice", "pw-alice")); !r.OK {
						t.Error(r)
					}
				case 1:
					if r := a.Check(addr, basic("bob", "wrong")); r.OK {
						t.Error("wrong password accepted")
					}
				default:
					if j == 20 {
						a.basic.Swap(store)
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword("pw", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseHtpasswd("t", []byte("u:"+h))
	if err != nil {
		t.Fatal(err)
	}
	if r := NewBasic(BasicConfig{Store: s}).check(basic("u", "pw")); !r.OK {
		t.Fatal(r)
	}
	for _, tc := range []struct {
		pw   string
		cost int
	}{{"pw", 3}, {"pw", 32}, {strings.Repeat("x", 73), 4}, {"a\nb", 4}} {
		if _, err := HashPassword(tc.pw, tc.cost); err == nil {
			t.Errorf("HashPassword(%q, %d): no error", tc.pw, tc.cost)
		}
	}
}

func TestAppendOrReplaceUser(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.htpasswd")
	bob := hash(t, "b", "$2y$")
	legacy := "carol:$apr1$legacy$hash"
	orig := "# managed by hand\nalice:" + hash(t, "old", "$2y$") + "\n\nbob:" + bob + "\n" + legacy // no final newline
	if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	// Holding the original open keeps its inode from being reused, so SameFile below is meaningful.
	origFile, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer origFile.Close()
	before, _ := origFile.Stat()

	newAlice := hash(t, "new", "$2a$")
	if err := AppendOrReplaceUser(path, "alice", newAlice); err != nil {
		t.Fatal(err)
	}
	dave := hash(t, "d", "$2b$")
	if err := AppendOrReplaceUser(path, "dave", dave); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := "# managed by hand\nalice:" + newAlice + "\n\nbob:" + bob + "\n" + legacy + "\ndave:" + dave + "\n"
	if string(got) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", got, want)
	}
	after, _ := os.Stat(path)
	if os.SameFile(before, after) {
		t.Error("file rewritten in place, not replaced by rename")
	}
	if after.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the original 0600", after.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}

	// Duplicates collapse into the first line; a new file gets 0640.
	fresh := filepath.Join(dir, "new")
	os.WriteFile(fresh, []byte("x:"+bob+"\ny:"+bob+"\nx:"+bob+"\n"), 0o640)
	if err := AppendOrReplaceUser(fresh, "x", dave); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(fresh); string(got) != "x:"+dave+"\ny:"+bob+"\n" {
		t.Errorf("duplicates: %q", got)
	}
	created := filepath.Join(dir, "created")
	if err := AppendOrReplaceUser(created, "x", dave); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(created); st.Mode().Perm() != 0o640 {
		t.Errorf("new file mode %v", st.Mode().Perm())
	}
	if s, err := LoadHtpasswd(created); err != nil || !slices.Equal(s.Users(), []string{"x"}) {
		t.Errorf("created file: %v %v", s, err)
	}

	for _, tc := range []struct{ user, hash string }{
		{"", dave}, {"a:b", dave}, {"#a", dave}, {" a", dave}, {"a\n", dave}, {"a", "$apr1$x$y"}, {"a", "plain"},
	} {
		if err := AppendOrReplaceUser(path, tc.user, tc.hash); err == nil {
			t.Errorf("AppendOrReplaceUser(%q, %q): no error", tc.user, tc.hash)
		}
	}
	if err := AppendOrReplaceUser(filepath.Join(dir, "no", "such"), "a", dave); err == nil {
		t.Error("missing directory: no error")
	}
}

func BenchmarkCheckCached(b *testing.B) {
	a, _ := newAuth(b, testConfig{}, "alice")
	h := basic("alice", "pw-alice")
	if r := a.Check(ip, h); !r.OK {
		b.Fatal(r)
	}
	b.ReportAllocs()
	for b.Loop() {
		a.Check(ip, h)
	}
}

func BenchmarkCheckBcrypt(b *testing.B) {
	a, _ := newAuth(b, testConfig{CacheSize: -1}, "alice") // MinCost hash; the default cost is ~60 ms
	h := basic("alice", "pw-alice")
	b.ReportAllocs()
	for b.Loop() {
		a.Check(ip, h)
	}
}

// A success must not wipe failures that were guesses at another user's password: otherwise
// anyone with one valid account guesses everybody else's without ever being locked out.
func TestSuccessDoesNotResetOtherUsersFailures(t *testing.T) {
	tests := []struct {
		name      string
		failUsers []string // failures, in order, before the success
		okUser    string   // then this user logs in correctly
		reset     bool     // the success clears the count
	}{
		{"typo then same user", []string{"alice", "alice"}, "alice", true},
		{"guesses at bob, alice logs in", []string{"bob", "bob"}, "alice", false},
		{"mixed users, alice logs in", []string{"alice", "bob"}, "alice", false},
		{"malformed header, alice logs in", []string{""}, "alice", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := newAuth(t, testConfig{MaxFailures: 3, FailureWindow: time.Minute}, "alice", "bob")
			fail := func(user string) Outcome {
				if user == "" {
					return a.Check(ip, "Basic !!!not-base64")
				}
				return a.Check(ip, basic(user, "bad"))
			}
			for _, u := range tt.failUsers {
				fail(u)
			}
			if r := a.Check(ip, basic(tt.okUser, "pw-"+tt.okUser)); !r.OK {
				t.Fatalf("login: %+v", r)
			}
			// Without a reset these failures bring the count to MaxFailures (lockout); after a
			// reset the count stays below it.
			for range 3 - len(tt.failUsers) {
				fail("bob")
			}
			locked := a.Check(ip, "").Reason == policy.ReasonLockedOut
			if got := !locked; got != tt.reset {
				t.Errorf("reset = %v, want %v", got, tt.reset)
			}
		})
	}
}
