package yamlpos

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// List is every problem found in one file, in file order.
type List []*Error

func (l List) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As find the individual *Error values.
func (l List) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Decode parses data, one YAML document, into out, a pointer to a struct whose fields carry
// yaml tags. Unlike yaml.v3's KnownFields it finds every problem and reports each at
// file:line:col in words an operator knows: a syntax error where it is, an unknown key with the
// closest known one ("did you mean"), a duplicate key, a value of the wrong kind ("want a
// duration such as 30s"). On failure the error is a List and out may be partly filled.
//
// The Positions it returns say where each key's value is, so that a problem found later (a
// file that does not exist, an address that is taken) can be reported there too.
func Decode(file string, data []byte, out any) (*Positions, error) {
	pos := &Positions{file: file, at: map[string]Pos{}, keyAt: map[string]Pos{}}
	if e := Syntax(data); e != nil {
		e.File = file
		return pos, List{e}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return pos, nil // an empty file: every key takes its default
		}
		return pos, List{{File: file, Line: 1, Col: 1, Msg: err.Error()}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return pos, List{{File: file, Line: extra.Line, Col: extra.Column, Msg: "only one YAML document is allowed"}}
	}
	d := &decoder{file: file, pos: pos}
	if len(doc.Content) == 1 && !isNullNode(doc.Content[0]) {
		d.value(doc.Content[0], reflect.ValueOf(out).Elem(), "")
	}
	if len(d.errs) == 0 {
		return pos, nil
	}
	d.errs.Sort()
	return pos, d.errs
}

// Sort puts the list in file order.
func (l List) Sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// Pos is a 1-based line and column.
type Pos struct{ Line, Col int }

// Positions are where the keys of a decoded file are: "listen[0]", "tls.cert_file".
type Positions struct {
	file  string
	at    map[string]Pos // where a key's value starts
	keyAt map[string]Pos // where a mapping key is written
}

// Errorf returns a problem located at key's value, or else at the nearest parent key the file
// has ("timeouts:" for "timeouts.drain" when the file leaves drain out), or else at 1:1. The
// message starts with the key.
func (p *Positions) Errorf(key, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	if at, ok := p.at[key]; ok {
		return &Error{File: p.file, Line: at.Line, Col: at.Col, Msg: msg}
	}
	for k := key; k != ""; {
		if at, ok := p.keyAt[k]; ok {
			return &Error{File: p.file, Line: at.Line, Col: at.Col, Msg: msg}
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return &Error{File: p.file, Line: 1, Col: 1, Msg: msg}
}

type decoder struct {
	file string
	pos  *Positions
	errs List
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// value decodes n into v; path is the dotted key path for messages ("timeouts.idle").
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if path != "" {
		d.pos.at[path] = Pos{n.Line, n.Column}
	}
	if n.Kind == yaml.AliasNode {
		d.errorf(n, "%s: YAML aliases are not supported here: write the value out", path)
		return
	}
	if v.Kind() == reflect.Pointer && !isNullNode(n) {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path)
		return
	}
	if v.Kind() == reflect.Struct && !reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		d.structure(n, v, path)
		return
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8 && n.Kind == yaml.SequenceNode {
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.errorf(n, "%s: want %s, got %s", path, want(v.Type()), Describe(n))
	}
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if isNullNode(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: want a mapping of keys, got %s", orTop(path), Describe(n))
		return
	}
	fields := map[string][]int{}
	var known []string
	collectFields(v.Type(), nil, fields, &known)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		idx, ok := fields[key]
		if !ok || k.Kind != yaml.ScalarNode {
			if s := Suggest(key, known); s != "" {
				d.errorf(k, "unknown key %q%s (did you mean %q?)", key, in(path), s)
			} else {
				d.errorf(k, "unknown key %q%s (known: %s)", key, in(path), strings.Join(known, ", "))
			}
			continue
		}
		if line, dup := seen[key]; dup {
			d.errorf(k, "duplicate key %q%s (first at line %d)", key, in(path), line)
			continue
		}
		seen[key] = k.Line
		d.pos.keyAt[join(path, key)] = Pos{k.Line, k.Column}
		d.value(val, v.FieldByIndex(idx), join(path, key))
	}
}

// collectFields maps each key of struct type t to its field's index, descending into
// `yaml:",inline"` fields as yaml.v3 does. Only fields with a yaml tag name are keys: the others
// (loggers, hooks) are not configuration.
func collectFields(t reflect.Type, index []int, fields map[string][]int, known *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		idx := append(slices.Clone(index), i)
		if slices.Contains(strings.Split(opts, ","), "inline") && f.Type.Kind() == reflect.Struct {
			collectFields(f.Type, idx, fields, known)
			continue
		}
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		fields[name] = idx
		*known = append(*known, name)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func in(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

func orTop(path string) string {
	if path == "" {
		return "the file"
	}
	return path
}

func isNullNode(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// want names what a Go type accepts, in the file's terms.
func want(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 30s, 5m or 1h"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(want(t.Elem()), "a "), "an ") + "s"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Pointer:
		return want(t.Elem())
	}
	return "a " + t.Kind().String()
}

// Describe names a YAML value for a message: "the string \"abc\"", "a list".
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing (null)"
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int":
			return "the integer " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!float":
			return "the number " + n.Value
		}
		return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
	}
	return "something else"
}

// Suggest returns the known word closest to word when it is close enough to be a likely typo
// (an edit distance of at most a third of its length, and at most 3), or "".
func Suggest(word string, known []string) string {
	best, bestDist := "", 0
	limit := min(3, max(1, len(word)/3))
	for _, k := range known {
		dist := editDistance(strings.ToLower(word), k)
		if dist <= limit && (best == "" || dist < bestDist) {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions, deletions, substitutions
// and transpositions of adjacent characters each cost 1 ("listne" is 1 from "listen").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
