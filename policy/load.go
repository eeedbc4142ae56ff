package policy

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/scpgate/scpgate/internal/yamlpos"
)

// MaxFileSize is the largest policy file Load and Parse accept.
const MaxFileSize = 16 << 20

// Policy is a loaded endpoints.yaml. It is immutable after Parse and safe for concurrent
// use; build it with [Load] or [Parse] only (the index is unexported).
type Policy struct {
	Groups  []*Group // file order
	Deny    []string // normalised deny patterns, file order
	Mode    Mode     // policy-wide default mode
	Version string   // hex sha256 of the file bytes
	File    string

	byName map[string]*Group
	idx    *index
	deny   *index
	addrs  []addrRule
}

// Group is one feature's set of endpoints. Fields hold effective values: defaults are
// filled in and Mode is the group's own mode or else the policy's.
type Group struct {
	Name        string
	Description string
	Doc         string
	Enabled     bool
	Hosts       []string // normalised patterns, file order
	Ports       []uint16
	Addresses   []netip.Prefix
	Users       []string
	Anonymous   bool
	// Paths limits plain HTTP requests for some of the group's host patterns to these URL path
	// prefixes (certificate revocation: www.microsoft.com only under /pkiops/).
	Paths   map[string][]string
	Mode    Mode
	SNI     SNIMode
	Methods []string // upper case
}

type addrRule struct {
	prefix netip.Prefix
	text   string // prefix.String(), precomputed
	group  *Group
	allow  string // precomputed Detail for an allow
}

// Group returns the group with the given name, or nil.
func (p *Policy) Group(name string) *Group {
	if p == nil {
		return nil
	}
	return p.byName[name]
}

// PosError is one problem in a policy file, at file:line:col.
type PosError = yamlpos.Error

// ErrorList is every problem found in a policy file, in file order; errors.As finds the
// individual *PosError values.
type ErrorList = yamlpos.List

// Load reads and parses a policy file. A read failure is returned as is; problems in the
// content are returned as an ErrorList.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse parses policy file content; file names the source in error positions. On failure
// the error is an ErrorList holding every problem found.
func Parse(file string, data []byte) (*Policy, error) {
	ps := &parser{file: file}
	if len(data) > MaxFileSize {
		ps.errAt(1, 1, "file larger than %d bytes", MaxFileSize)
		return nil, ps.errs
	}
	root := ps.decode(data)
	if len(ps.errs) > 0 {
		return nil, ps.errs
	}
	sum := sha256.Sum256(data)
	p := &Policy{
		Mode:    ModeEnforce,
		Version: hex.EncodeToString(sum[:]),
		File:    file,
		byName:  map[string]*Group{},
		idx:     newIndex(),
		deny:    newIndex(),
	}
	ps.policy(root, p)
	if len(ps.errs) > 0 {
		slices.SortStableFunc(ps.errs, func(a, b *PosError) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
		})
		return nil, ps.errs
	}
	return p, nil
}

type parser struct {
	file string
	errs ErrorList
}

func (ps *parser) errAt(line, col int, format string, args ...any) {
	ps.errs = append(ps.errs, &PosError{File: ps.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

func (ps *parser) errorf(n *yaml.Node, format string, args ...any) {
	ps.errAt(n.Line, n.Column, format, args...)
}

// decode parses the YAML into a node tree; exactly one document is allowed. Syntax errors are
// reported where they are (yamlpos), not at the enclosing construct as yaml.v3 reports them.
func (ps *parser) decode(data []byte) (root *yaml.Node) {
	if e := yamlpos.Syntax(data); e != nil {
		ps.errAt(e.Line, e.Col, "%s", e.Msg)
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			ps.errAt(1, 1, "cannot parse YAML")
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.errAt(1, 1, "empty policy file")
		} else {
			ps.errAt(1, 1, "invalid YAML: %v", err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		ps.errAt(1, 1, "invalid YAML: %v", err)
		return nil
	default:
		ps.errorf(&extra, "only one YAML document is allowed")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		ps.errAt(1, 1, "empty policy file")
		return nil
	}
	return doc.Content[0]
}

// describe names a YAML value for a message.
var describe = yamlpos.Describe

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// checkAlias reports an alias node; aliases are refused everywhere.
func (ps *parser) checkAlias(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		ps.errorf(n, "YAML aliases are not supported: write the value out")
		return true
	}
	return false
}

// mapping walks a mapping node, reporting non-string and duplicate keys; fn gets each
// key and value.
func (ps *parser) mapping(n *yaml.Node, what string, fn func(key string, k, v *yaml.Node)) bool {
	if ps.checkAlias(n) {
		return false
	}
	if n.Kind != yaml.MappingNode {
		ps.errorf(n, "%s: want a mapping, got %s", what, describe(n))
		return false
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if ps.checkAlias(k) {
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			ps.errorf(k, "%s: keys must be strings, got %s", what, describe(k))
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			if what == "groups" {
				ps.errorf(k, "duplicate group name %q (first at line %d)", k.Value, prev.Line)
			} else {
				ps.errorf(k, "%s: duplicate key %q (first at line %d)", what, k.Value, prev.Line)
			}
			continue
		}
		seen[k.Value] = k
		if ps.checkAlias(v) {
			continue
		}
		fn(k.Value, k, v)
	}
	return true
}

func (ps *parser) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		ps.errorf(n, "%s: want a string, got %s", what, describe(n))
		return "", false
	}
	return n.Value, true
}

func (ps *parser) boolean(n *yaml.Node, what string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		ps.errorf(n, "%s: want true or false, got %s", what, describe(n))
		return false, false
	}
	b, err := strconv.ParseBool(strings.ToLower(n.Value))
	if err != nil {
		ps.errorf(n, "%s: want true or false, got %s", what, describe(n))
		return false, false
	}
	return b, true
}

// seq returns the items of a list; null counts as an empty list when nullOK.
func (ps *parser) seq(n *yaml.Node, what string, nullOK bool) ([]*yaml.Node, bool) {
	if nullOK && isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		ps.errorf(n, "%s: want a list, got %s", what, describe(n))
		return nil, false
	}
	var items []*yaml.Node
	for _, it := range n.Content {
		if ps.checkAlias(it) {
			continue
		}
		items = append(items, it)
	}
	return items, true
}

func (ps *parser) mode(n *yaml.Node, what string) (Mode, bool) {
	s, ok := ps.str(n, what)
	if !ok {
		return "", false
	}
	switch m := Mode(s); m {
	case ModeEnforce, ModeReport:
		return m, true
	}
	ps.errorf(n, "%s: unknown mode %q (want enforce or report)", what, s)
	return "", false
}

var topKeys = []string{"version", "mode", "deny", "groups"}

var groupKeys = []string{"description", "doc", "enabled", "ports", "methods", "sni", "mode",
	"users", "anonymous", "addresses", "hosts", "paths"}

// knownOrSuggest ends an unknown-key message: the likely meant key, or the list of known ones.
func knownOrSuggest(key string, known []string) string {
	if s := yamlpos.Suggest(key, known); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return " (known: " + strings.Join(known, ", ") + ")"
}

var knownMethods = []string{"CONNECT", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func (ps *parser) policy(root *yaml.Node, p *Policy) {
	var version, mode, deny, groups *yaml.Node
	ok := ps.mapping(root, "top level", func(key string, k, v *yaml.Node) {
		switch key {
		case "version":
			version = v
		case "mode":
			mode = v
		case "deny":
			deny = v
		case "groups":
			groups = v
		default:
			ps.errorf(k, "unknown key %q at top level%s", key, knownOrSuggest(key, topKeys))
		}
	})
	if !ok {
		return
	}
	if version == nil {
		ps.errorf(root, "missing \"version: 1\"")
	} else if version.Kind != yaml.ScalarNode || version.ShortTag() != "!!int" || version.Value != "1" {
		ps.errorf(version, "version: want 1, got %s", describe(version))
	}
	if mode != nil {
		if m, ok := ps.mode(mode, "mode"); ok {
			p.Mode = m
		}
	}
	if deny != nil {
		items, _ := ps.seq(deny, "deny", true)
		seen := map[string]int{}
		for _, it := range items {
			s, ok := ps.str(it, "deny")
			if !ok {
				continue
			}
			c, err := compilePattern(s)
			if err != nil {
				ps.errorf(it, "deny: %v", err)
				continue
			}
			if line, dup := seen[c.text]; dup {
				ps.errorf(it, "deny: duplicate pattern %q (first at line %d)", c.text, line)
				continue
			}
			seen[c.text] = it.Line
			p.Deny = append(p.Deny, c.text)
			p.deny.add(c, &rule{})
		}
	}
	if groups != nil && !isNull(groups) {
		ps.mapping(groups, "groups", func(name string, k, v *yaml.Node) {
			if err := checkGroupName(name); err != nil {
				ps.errorf(k, "group %q: %v", name, err)
			}
			g := ps.group(name, v, p)
			if g == nil {
				return
			}
			p.Groups = append(p.Groups, g)
			p.byName[name] = g
		})
	}
}

func checkGroupName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("name must be 1 to 64 characters")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
			(i > 0 && (c == '-' || c == '_' || c == '.'))
		if !ok {
			return errors.New("name may use letters, digits, '-', '_' and '.', starting with a letter or digit")
		}
	}
	return nil
}

func (ps *parser) group(name string, n *yaml.Node, p *Policy) *Group {
	g := &Group{Name: name, Ports: []uint16{443}, Methods: []string{"CONNECT"}, Mode: p.Mode, SNI: SNIMatch}
	type hostEntry struct {
		c    compiled
		node *yaml.Node
	}
	var hosts []hostEntry
	var pathsNode *yaml.Node // checked once hosts and methods are known, whatever the key order
	what := func(key string) string { return fmt.Sprintf("group %q: %s", name, key) }
	ok := ps.mapping(n, fmt.Sprintf("group %q", name), func(key string, k, v *yaml.Node) {
		w := what(key)
		switch key {
		case "description":
			if s, ok := ps.str(v, w); ok {
				g.Description = s
			}
		case "doc":
			if s, ok := ps.str(v, w); ok {
				u, err := url.Parse(s)
				if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
					ps.errorf(v, "%s: want an http(s) URL, got %q", w, s)
				} else {
					g.Doc = s
				}
			}
		case "enabled":
			if b, ok := ps.boolean(v, w); ok {
				g.Enabled = b
			}
		case "anonymous":
			if b, ok := ps.boolean(v, w); ok {
				g.Anonymous = b
			}
		case "mode":
			if m, ok := ps.mode(v, w); ok {
				g.Mode = m
			}
		case "sni":
			if s, ok := ps.str(v, w); ok {
				switch m := SNIMode(s); m {
				case SNIMatch, SNIOff:
					g.SNI = m
				default:
					ps.errorf(v, "%s: unknown sni mode %q (want match or off)", w, s)
				}
			}
		case "ports":
			g.Ports = ps.ports(v, w)
		case "methods":
			g.Methods = ps.methods(v, w)
		case "users":
			items, _ := ps.seq(v, w, true)
			seen := map[string]bool{}
			for _, it := range items {
				s, ok := ps.str(it, w)
				if !ok {
					continue
				}
				switch {
				case s == "" || strings.ContainsAny(s, ": \t\r\n"):
					ps.errorf(it, "%s: invalid user name %q", w, s)
				case seen[s]:
					ps.errorf(it, "%s: duplicate user %q", w, s)
				default:
					seen[s] = true
					g.Users = append(g.Users, s)
				}
			}
		case "addresses":
			items, _ := ps.seq(v, w, true)
			seen := map[netip.Prefix]bool{}
			for _, it := range items {
				s, ok := ps.str(it, w)
				if !ok {
					continue
				}
				pfx, err := parsePrefix(s)
				if err != nil {
					ps.errorf(it, "%s: %v", w, err)
					continue
				}
				if seen[pfx] {
					ps.errorf(it, "%s: duplicate address %s", w, pfx)
					continue
				}
				seen[pfx] = true
				g.Addresses = append(g.Addresses, pfx)
			}
		case "hosts":
			items, _ := ps.seq(v, w, true)
			seen := map[string]int{}
			for _, it := range items {
				s, ok := ps.str(it, w)
				if !ok {
					continue
				}
				c, err := compilePattern(s)
				if err != nil {
					ps.errorf(it, "%s: %v", w, err)
					continue
				}
				if line, dup := seen[c.text]; dup {
					ps.errorf(it, "%s: duplicate host %q (first at line %d)", w, c.text, line)
					continue
				}
				seen[c.text] = it.Line
				hosts = append(hosts, hostEntry{c, it})
			}
		case "paths":
			pathsNode = v
		default:
			ps.errorf(k, "unknown key %q in group %q%s", key, name, knownOrSuggest(key, groupKeys))
		}
	})
	if !ok {
		return nil
	}
	if pathsNode != nil {
		listed := map[string]bool{}
		for _, h := range hosts {
			listed[h.c.text] = true
		}
		g.Paths = ps.paths(pathsNode, what("paths"), listed, g.Methods)
	}
	allow := fmt.Sprintf("allowed by group %s", name)
	for _, h := range hosts {
		g.Hosts = append(g.Hosts, h.c.text)
		p.idx.add(h.c, &rule{group: g, allow: fmt.Sprintf("%s, pattern %s (%s)", allow, h.c.text, h.c.kind), paths: g.Paths[h.c.text]})
	}
	for _, pfx := range g.Addresses {
		p.addrs = append(p.addrs, addrRule{prefix: pfx, text: pfx.String(), group: g,
			allow: fmt.Sprintf("%s, address %s", allow, pfx)})
	}
	return g
}

// paths reads a group's plain-HTTP path limits: a mapping from one of the group's host patterns
// to the path prefixes allowed for it. A tunnel hides its paths, so a group with path limits may
// not allow CONNECT: the limit could not be enforced.
func (ps *parser) paths(n *yaml.Node, what string, listed map[string]bool, methods []string) map[string][]string {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		ps.errorf(n, "%s: want a mapping from host pattern to path prefixes, got %s", what, describe(n))
		return nil
	}
	if hasMethod(methods, "CONNECT") {
		ps.errorf(n, "%s: paths cannot be checked inside a CONNECT tunnel; a group with paths must not allow CONNECT (methods)", what)
		return nil
	}
	out := map[string][]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		c, err := compilePattern(k.Value)
		if err != nil || !listed[c.text] {
			ps.errorf(k, "%s: %q is not one of this group's hosts", what, k.Value)
			continue
		}
		if _, dup := out[c.text]; dup {
			ps.errorf(k, "%s: duplicate host %q", what, c.text)
			continue
		}
		items, _ := ps.seq(v, what+" "+c.text, false)
		prefixes := []string{}
		for _, it := range items {
			s, ok := ps.str(it, what)
			if !ok {
				continue
			}
			if !validPathPrefix(s) {
				ps.errorf(it, "%s: %q is not a path prefix (want /..., printable ASCII, no spaces, '?', '#' or '..')", what, s)
				continue
			}
			prefixes = append(prefixes, s)
		}
		if len(items) == 0 {
			ps.errorf(v, "%s: %s lists no path prefix", what, c.text)
			continue
		}
		out[c.text] = prefixes
	}
	return out
}

func validPathPrefix(s string) bool {
	if !strings.HasPrefix(s, "/") || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '?' || c == '#' {
			return false
		}
	}
	return true
}

func (ps *parser) ports(n *yaml.Node, what string) []uint16 {
	items, ok := ps.seq(n, what, false)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		ps.errorf(n, "%s: must list at least one port", what)
		return nil
	}
	var out []uint16
	for _, it := range items {
		if it.Kind != yaml.ScalarNode || it.ShortTag() != "!!int" {
			ps.errorf(it, "%s: want a port number, got %s", what, describe(it))
			continue
		}
		v, err := strconv.ParseInt(it.Value, 0, 64)
		if err != nil || v < 1 || v > 65535 {
			ps.errorf(it, "%s: port %s out of range 1..65535", what, it.Value)
			continue
		}
		if slices.Contains(out, uint16(v)) {
			ps.errorf(it, "%s: duplicate port %d", what, v)
			continue
		}
		out = append(out, uint16(v))
	}
	return out
}

func (ps *parser) methods(n *yaml.Node, what string) []string {
	items, ok := ps.seq(n, what, false)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		ps.errorf(n, "%s: must list at least one method", what)
		return nil
	}
	var out []string
	for _, it := range items {
		s, ok := ps.str(it, what)
		if !ok {
			continue
		}
		m := strings.ToUpper(s)
		if !slices.Contains(knownMethods, m) {
			ps.errorf(it, "%s: unknown method %q (want one of %s)", what, s, strings.Join(knownMethods, ", "))
			continue
		}
		if slices.Contains(out, m) {
			ps.errorf(it, "%s: duplicate method %q", what, m)
			continue
		}
		out = append(out, m)
	}
	return out
}

// parsePrefix accepts a CIDR or a single address (as a /32 or /128). Host bits must be
// clear, and IPv4-mapped IPv6 must be written as IPv4 (destinations are unmapped).
func parsePrefix(s string) (netip.Prefix, error) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		pfx, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if pfx.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("CIDR %q is IPv4-mapped IPv6: write it as IPv4", s)
	}
	if m := pfx.Masked(); m != pfx {
		return netip.Prefix{}, fmt.Errorf("CIDR %q has host bits set (did you mean %s?)", s, m)
	}
	return pfx, nil
}
