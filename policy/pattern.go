package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gobwas/glob"
	"golang.org/x/net/idna"
)

type patternKind uint8

const (
	kindExact patternKind = iota + 1
	kindSuffix
	kindGlob
)

func (k patternKind) String() string {
	switch k {
	case kindExact:
		return "exact"
	case kindSuffix:
		return "suffix"
	case kindGlob:
		return "glob"
	}
	return "unknown"
}

const maxPattern = 1024 // glob alternatives may be longer than the names they match

// compiled is a validated, normalised host pattern.
type compiled struct {
	text string // normalised pattern as written (lowercase, no trailing dot)
	kind patternKind
	key  string     // exact: the name; suffix: the part after "*."; glob: the literal suffix
	glob *labelGlob // kindGlob only
}

const wildcardChars = "*?[]{}"

// compilePattern validates and classifies one hosts or deny entry.
func compilePattern(raw string) (compiled, error) {
	if raw == "" {
		return compiled{}, errors.New("empty pattern")
	}
	if len(raw) > maxPattern {
		return compiled{}, fmt.Errorf("pattern longer than %d bytes", maxPattern)
	}
	if !isASCII(raw) {
		return compiled{}, fmt.Errorf("pattern %q is not ASCII: write it as punycode: %s", raw, punycodeHint(raw))
	}
	p := lowerASCII(raw)
	if strings.HasSuffix(p, ".") {
		p = p[:len(p)-1]
	}
	if p == "" {
		return compiled{}, fmt.Errorf("pattern %q is empty", raw)
	}
	if strings.Contains(p, "**") {
		return compiled{}, fmt.Errorf("pattern %q: \"**\" is not allowed (a leading \"*.\" already matches one or more labels)", raw)
	}
	if err := scanPattern(p); err != nil {
		return compiled{}, fmt.Errorf("pattern %q: %v", raw, err)
	}
	labels := strings.Split(p, ".")
	lastWild := -1
	for i, l := range labels {
		if l == "" {
			return compiled{}, fmt.Errorf("pattern %q has an empty label", raw)
		}
		if strings.ContainsAny(l, wildcardChars) {
			lastWild = i
		}
	}
	if looksNumeric(labels[len(labels)-1]) {
		if lastWild < 0 {
			if a, ok := parseIPv4(p); ok {
				return compiled{}, fmt.Errorf("pattern %q is an IP address: list it under addresses as %s/32", raw, a)
			}
		}
		return compiled{}, fmt.Errorf("pattern %q ends in a number: IP addresses belong under addresses, as CIDRs", raw)
	}
	literal := labels[lastWild+1:]
	for _, l := range literal {
		if err := checkLabel(l); err != nil {
			return compiled{}, fmt.Errorf("pattern %q: %v", raw, err)
		}
	}
	suffix := strings.Join(literal, ".")
	if hasACELabel(suffix) {
		out, err := idna.Lookup.ToASCII(suffix)
		if err != nil {
			return compiled{}, fmt.Errorf("pattern %q: invalid punycode: %v", raw, err)
		}
		if out != suffix {
			return compiled{}, fmt.Errorf("pattern %q: punycode is not in canonical form (%s)", raw, out)
		}
	}
	if lastWild < 0 {
		if len(p) > maxName {
			return compiled{}, fmt.Errorf("pattern %q is longer than %d bytes", raw, maxName)
		}
		return compiled{text: p, kind: kindExact, key: p}, nil
	}
	if len(literal) < 2 {
		return compiled{}, fmt.Errorf("pattern %q needs at least two literal labels after its last wildcard (write out e.g. *.example.co.uk)", raw)
	}
	if len(suffix) > maxName-2 {
		return compiled{}, fmt.Errorf("pattern %q is longer than %d bytes", raw, maxName)
	}
	if lastWild == 0 && labels[0] == "*" {
		return compiled{text: p, kind: kindSuffix, key: suffix}, nil
	}
	for _, l := range labels[:lastWild+1] {
		if len(l) > maxLabel && !strings.ContainsAny(l, wildcardChars) {
			return compiled{}, fmt.Errorf("pattern %q: label longer than %d bytes", raw, maxLabel)
		}
		if !strings.ContainsAny(l, wildcardChars) {
			if err := checkLabel(l); err != nil {
				return compiled{}, fmt.Errorf("pattern %q: %v", raw, err)
			}
		}
	}
	// Each label is compiled on its own and matched against exactly one label of the host:
	// gobwas keeps '*' and '?' off the separator, but not a negated class ("[!b]") or a range
	// spanning '.' ("[--0]"), which would otherwise let "a[!b]c.example.com" match
	// "a.c.example.com".
	g := &labelGlob{}
	if labels[0] == "*" {
		// A leading "*." means one or more labels, as for suffix patterns.
		g.anyPrefix, labels = true, labels[1:]
	}
	for _, l := range labels {
		lg, err := glob.Compile(l, '.')
		if err != nil {
			var se *glob.SyntaxError
			if errors.As(err, &se) {
				return compiled{}, fmt.Errorf("pattern %q: invalid glob: %s", raw, se.Reason)
			}
			return compiled{}, fmt.Errorf("pattern %q: invalid glob: %v", raw, err)
		}
		g.labels = append(g.labels, lg)
	}
	return compiled{text: p, kind: kindGlob, key: suffix, glob: g}, nil
}

// labelGlob matches a name label by label: labels[i] against the host's label at the same
// position from the right; anyPrefix allows (and requires) one or more labels in front.
type labelGlob struct {
	anyPrefix bool
	labels    []*glob.Pattern
}

// Match reports whether host (a normalised name) matches. It does not allocate.
func (g *labelGlob) Match(host string) bool {
	end := len(host)
	for i := len(g.labels) - 1; i >= 0; i-- {
		if end < 0 {
			return false // the host has fewer labels than the pattern
		}
		dot := strings.LastIndexByte(host[:end], '.')
		if !g.labels[i].Match(host[dot+1 : end]) {
			return false
		}
		end = dot
	}
	if g.anyPrefix {
		return end > 0
	}
	return end == -1
}

// scanPattern checks the characters of a lowercase pattern: hostname characters, '.'
// between labels, and glob syntax that stays within one label.
func scanPattern(p string) error {
	inClass := false
	braces := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '-':
		case c == '.':
			if inClass || braces > 0 {
				return errors.New("a '.' inside [...] or {...}: wildcards must stay within one label")
			}
		case c == '*' || c == '?':
			if inClass {
				return fmt.Errorf("%q inside [...]", c)
			}
		case c == '[':
			if inClass {
				return errors.New("nested '['")
			}
			inClass = true
			if i+1 < len(p) && p[i+1] == '!' {
				i++
			}
		case c == ']':
			if !inClass {
				return errors.New("']' without '['")
			}
			inClass = false
		case c == '{':
			if inClass {
				return errors.New("'{' inside [...]")
			}
			braces++
		case c == '}':
			if inClass {
				return errors.New("'}' inside [...]")
			}
			if braces == 0 {
				return errors.New("'}' without '{'")
			}
			braces--
		case c == ',':
			if braces == 0 || inClass {
				return errors.New("',' outside {...}")
			}
		default:
			return fmt.Errorf("invalid character %q (allowed: letters, digits, '-', '.', and the wildcards * ? [...] {a,b})", c)
		}
	}
	if inClass {
		return errors.New("unclosed '['")
	}
	if braces > 0 {
		return errors.New("unclosed '{'")
	}
	return nil
}

// punycodeHint converts the wildcard-free labels of a non-ASCII pattern for the error
// message.
func punycodeHint(raw string) string {
	labels := strings.Split(strings.TrimSuffix(raw, "."), ".")
	for i, l := range labels {
		if isASCII(l) {
			labels[i] = strings.ToLower(l)
			continue
		}
		if strings.ContainsAny(l, wildcardChars) {
			return "xn--..."
		}
		a, err := idna.Lookup.ToASCII(l)
		if err != nil || !isASCII(a) {
			return "xn--..."
		}
		labels[i] = a
	}
	return strings.Join(labels, ".")
}

// rule is one pattern of one group (or of the deny list, group == nil).
type rule struct {
	group   *Group
	pattern string
	kind    patternKind
	glob    *labelGlob
	allow   string   // precomputed Detail for an allow by this rule
	paths   []string // plain-HTTP path prefixes this host is limited to; nil: any path
}

// allowsPath reports whether a plain HTTP request for path may use this rule. CONNECT requests
// carry no path (""), and groups with path limits cannot allow CONNECT (refused at load).
func (ru *rule) allowsPath(path string) bool {
	if ru.paths == nil {
		return true
	}
	for _, p := range ru.paths {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// index finds the rules matching a host without scanning them all.
type index struct {
	exact  map[string][]*rule // full name -> rules
	suffix map[string][]*rule // "manage.microsoft.com" -> rules for "*.manage.microsoft.com"
	globs  map[string][]*rule // literal suffix -> glob rules

	// Longest key of suffix and globs: longer host suffixes need no lookup.
	maxSuffix, maxGlob int
}

func newIndex() *index {
	return &index{
		exact:  map[string][]*rule{},
		suffix: map[string][]*rule{},
		globs:  map[string][]*rule{},
	}
}

func (ix *index) add(c compiled, r *rule) {
	r.pattern, r.kind, r.glob = c.text, c.kind, c.glob
	switch c.kind {
	case kindExact:
		ix.exact[c.key] = append(ix.exact[c.key], r)
	case kindSuffix:
		ix.suffix[c.key] = append(ix.suffix[c.key], r)
		ix.maxSuffix = max(ix.maxSuffix, len(c.key))
	case kindGlob:
		ix.globs[c.key] = append(ix.globs[c.key], r)
		ix.maxGlob = max(ix.maxGlob, len(c.key))
	}
}

// each calls fn for every rule matching host (a normalised name), most specific first:
// exact, then suffix rules from the longest suffix, then glob rules from the longest
// literal suffix; rules of one key in file order. It stops when fn returns false.
//
// Suffix and glob keys have at least two labels, so only the host's proper suffixes that
// still contain a dot (and are no longer than the longest key) are looked up: the cost is
// a few map lookups per label, whatever the number of rules.
func (ix *index) each(host string, fn func(*rule) bool) {
	if len(ix.exact) > 0 {
		for _, r := range ix.exact[host] {
			if !fn(r) {
				return
			}
		}
	}
	lastDot := strings.LastIndexByte(host, '.')
	if len(ix.suffix) > 0 {
		for i := 0; i < lastDot; i++ {
			if host[i] != '.' || len(host)-i-1 > ix.maxSuffix {
				continue
			}
			for _, r := range ix.suffix[host[i+1:]] {
				if !fn(r) {
					return
				}
			}
		}
	}
	if len(ix.globs) > 0 {
		for i := 0; i < lastDot; i++ {
			if host[i] != '.' || len(host)-i-1 > ix.maxGlob {
				continue
			}
			for _, r := range ix.globs[host[i+1:]] {
				if r.glob.Match(host) && !fn(r) {
					return
				}
			}
		}
	}
}

// first returns the most specific rule matching host, or nil.
func (ix *index) first(host string) *rule {
	var found *rule
	ix.each(host, func(r *rule) bool {
		found = r
		return false
	})
	return found
}

// matchPattern reports whether a single pattern matches a normalised name; used by tests
// and tools that check one pattern without building a policy.
func matchPattern(c compiled, host string) bool {
	switch c.kind {
	case kindExact:
		return host == c.key
	case kindSuffix:
		return len(host) > len(c.key)+1 && strings.HasSuffix(host, c.key) && host[len(host)-len(c.key)-1] == '.'
	case kindGlob:
		return c.glob.Match(host)
	}
	return false
}
