package proxyauth

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scpgate/scpgate/policy"
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

// BasicConfig configures a [Basic] authenticator.
type BasicConfig struct {
	Store     *Store        // nil: nobody can log in
	Realm     string        // default "scpgate"
	CacheSize int           // verified users cached; default 1024, negative disables the cache
	CacheTTL  time.Duration // default 5m
	Now       func() time.Time
}

// Basic is HTTP Basic proxy authentication against an htpasswd store (bcrypt only), with a
// cache of verified credentials. It is safe for concurrent use.
type Basic struct {
	realm     string
	cacheSize int
	ttl       time.Duration
	now       func() time.Time
	key       []byte
	compare   func(hash, password []byte) error // bcrypt; replaced in tests

	mu         sync.Mutex // guards store, gen and the cache
	store      *Store
	gen        uint64 // bumped by Swap, so a check that began before it cannot fill the new cache
	cache      map[string]*list.Element
	cacheOrder *list.List // of *cacheEntry, oldest first

	hits, misses, compares atomic.Uint64
}

type cacheEntry struct {
	user    string
	mac     [sha256.Size]byte
	expires time.Time
}

// BasicStats are cumulative counters plus the cache size.
type BasicStats struct {
	CacheHits      uint64
	CacheMisses    uint64
	BcryptCompares uint64
	CachedUsers    int
}

// NewBasic returns a Basic authenticator with cfg's defaults filled in.
func NewBasic(cfg BasicConfig) *Basic {
	b := &Basic{
		realm:      cfg.Realm,
		cacheSize:  cfg.CacheSize,
		ttl:        cfg.CacheTTL,
		now:        cfg.Now,
		key:        make([]byte, 32),
		compare:    bcrypt.CompareHashAndPassword,
		store:      cfg.Store,
		cache:      map[string]*list.Element{},
		cacheOrder: list.New(),
	}
	if b.realm == "" {
		b.realm = "scpgate"
	}
	if b.cacheSize == 0 {
		b.cacheSize = 1024
	}
	if b.ttl <= 0 {
		b.ttl = 5 * time.Minute
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.store == nil {
		b.store = emptyStore()
	}
	rand.Read(b.key) // never fails (crypto/rand panics rather than return weak bytes)
	return b
}

func emptyStore() *Store {
	s, _ := ParseHtpasswd("(none)", nil)
	return s
}

// Challenges implements [Authenticator]: one Basic challenge with the realm.
func (b *Basic) Challenges() []string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(b.realm)
	return []string{`Basic realm="` + r + `"`}
}

// Swap installs a reloaded store. The credential cache is dropped (a removed user or changed
// password must not keep working).
func (b *Basic) Swap(s *Store) {
	if s == nil {
		s = emptyStore()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.store = s
	b.gen++
	clear(b.cache)
	b.cacheOrder.Init()
}

// Authenticate implements [Authenticator].
func (b *Basic) Authenticate(r *http.Request, _ netip.Addr) Outcome {
	return b.check(r.Header.Get("Proxy-Authorization"))
}

func (b *Basic) attemptedUser(r *http.Request) string {
	user, _, _ := parseBasic(r.Header.Get("Proxy-Authorization"))
	return user
}

// check verifies a Proxy-Authorization value.
func (b *Basic) check(header string) Outcome {
	user, pass, pr := parseBasic(header)
	switch pr {
	case basicOther:
		// Nothing tried yet (the first request of every client), or a scheme we do not offer: not a
		// guess, so not counted.
		return Outcome{Reason: policy.ReasonAuthRequired}
	case basicMalformed:
		return Outcome{Reason: policy.ReasonAuthFailed}
	}
	mac := b.mac(user, pass)

	b.mu.Lock()
	store, gen := b.store, b.gen
	hit := false
	if el, ok := b.cache[user]; ok {
		e := el.Value.(*cacheEntry)
		switch {
		case !b.now().Before(e.expires):
			b.cacheOrder.Remove(el)
			delete(b.cache, user)
		case hmac.Equal(e.mac[:], mac[:]):
			hit = true
		}
	}
	b.mu.Unlock()
	if hit {
		b.hits.Add(1)
		return Outcome{User: user, OK: true}
	}
	b.misses.Add(1)

	failed := Outcome{User: user, Reason: policy.ReasonAuthFailed}
	if len(pass) > maxPassword {
		return failed
	}
	hash, known := store.users[user]
	if !known {
		hash = store.dummy
	}
	b.compares.Add(1)
	if err := b.compare(hash, []byte(pass)); err != nil || !known {
		return failed
	}
	b.remember(gen, user, mac)
	return Outcome{User: user, OK: true}
}

func (b *Basic) mac(user, pass string) [sha256.Size]byte {
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(pass))
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

func (b *Basic) remember(gen uint64, user string, mac [sha256.Size]byte) {
	if b.cacheSize < 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen != b.gen {
		return // verified against a store that has since been replaced
	}
	if el, ok := b.cache[user]; ok {
		b.cacheOrder.Remove(el)
	}
	for b.cacheOrder.Len() >= b.cacheSize {
		oldest := b.cacheOrder.Front()
		delete(b.cache, oldest.Value.(*cacheEntry).user)
		b.cacheOrder.Remove(oldest)
	}
	b.cache[user] = b.cacheOrder.PushBack(&cacheEntry{user: user, mac: mac, expires: b.now().Add(b.ttl)})
}

// Stats returns the counters.
func (b *Basic) Stats() BasicStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BasicStats{CacheHits: b.hits.Load(), CacheMisses: b.misses.Load(), BcryptCompares: b.compares.Load(), CachedUsers: len(b.cache)}
}
