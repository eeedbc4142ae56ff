// Package yamlpos reports problems in YAML files at the line and column where they are, for
// every YAML file scpgate reads (endpoints.yaml, gateway.yaml).
//
// go.yaml.in/yaml/v3 reports a syntax error at the line of the construct that encloses it (an
// unclosed flow list on line 5 is reported at line 4) and never gives a column. The libyaml_*.go
// files are that library's scanner and parser (a Go port of libyaml, MIT and Apache-2.0 licensed,
// see LICENSE.libyaml and NOTICE.libyaml), copied unchanged but for the package name, so that
// [Syntax] can read the position libyaml keeps for the problem: the same position PyYAML, and so
// yamllint, report. Decoding stays with go.yaml.in/yaml/v3; this package only finds positions.
package yamlpos

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Error is one problem in a YAML file, at a 1-based line and column (columns count characters).
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *Error) Error() string {
	if e.File == "" {
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Syntax parses data as a YAML stream and returns its first syntax error, or nil. It also
// reports an alias that names no anchor defined before it. Error.File is left empty.
func Syntax(data []byte) *Error {
	var p yaml_parser_t
	yaml_parser_initialize(&p)
	yaml_parser_set_input_string(&p, data)
	anchors := map[string]bool{}
	for {
		var ev yaml_event_t
		// The parser also "succeeds" with no event once an error is recorded (a reader error
		// found while scanning ahead): asking again would loop forever.
		if !yaml_parser_parse(&p, &ev) || p.error != yaml_NO_ERROR || ev.typ == yaml_NO_EVENT {
			return parserError(&p, data)
		}
		switch ev.typ {
		case yaml_STREAM_END_EVENT:
			return nil
		case yaml_DOCUMENT_START_EVENT:
			clear(anchors) // anchors do not cross documents
		case yaml_ALIAS_EVENT:
			if !anchors[string(ev.anchor)] {
				return &Error{Line: ev.start_mark.line + 1, Col: ev.start_mark.column + 1,
					Msg: fmt.Sprintf("alias *%s names no anchor defined before it", ev.anchor)}
			}
		case yaml_SCALAR_EVENT, yaml_SEQUENCE_START_EVENT, yaml_MAPPING_START_EVENT:
			if len(ev.anchor) > 0 {
				anchors[string(ev.anchor)] = true
			}
		}
	}
}

// parserError turns libyaml's error state into an Error at the problem's position, naming the
// construct it interrupted ("in the flow list that starts at 5:12").
func parserError(p *yaml_parser_t, data []byte) *Error {
	mark := p.problem_mark
	if p.error == yaml_READER_ERROR {
		// The reader keeps a byte offset only.
		line, col := offsetPos(data, p.problem_offset)
		return &Error{Line: line, Col: col, Msg: "not valid UTF-8 text: " + p.problem}
	}
	e := &Error{Line: mark.line + 1, Col: mark.column + 1}
	if ch, ok := charAt(data, mark.index); ok && ch == '\t' {
		e.Msg = "tabs are not allowed for indentation"
		return e
	}
	msg := p.problem
	if msg == "" {
		msg = "invalid YAML"
	}
	if msg == "found character that cannot start any token" {
		if ch, ok := charAt(data, mark.index); ok {
			msg = fmt.Sprintf("found character %q that cannot start any token", ch)
		}
	}
	if p.context != "" {
		cm := p.context_mark
		if cm.line != mark.line || cm.column != mark.column {
			msg = fmt.Sprintf("%s (in the %s that starts at %d:%d)", msg, construct(p.context), cm.line+1, cm.column+1)
		}
	}
	e.Msg = msg
	return e
}

// construct names what libyaml's context ("while parsing a flow sequence") was reading.
func construct(context string) string {
	for _, prefix := range []string{"while parsing a ", "while parsing an ", "while scanning a ", "while scanning an "} {
		if rest, ok := strings.CutPrefix(context, prefix); ok {
			context = rest
			break
		}
	}
	switch context {
	case "flow sequence":
		return "flow list [...]"
	case "flow mapping":
		return "flow mapping {...}"
	case "block sequence":
		return "list"
	case "block mapping":
		return "mapping"
	}
	return context
}

// charAt returns the character at a libyaml mark index, which counts characters, not bytes
// (for UTF-8 input).
func charAt(data []byte, index int) (rune, bool) {
	if index < 0 {
		return 0, false
	}
	data = skipBOM(data)
	for i := 0; len(data) > 0; i++ {
		r, n := utf8.DecodeRune(data)
		if i == index {
			return r, true
		}
		data = data[n:]
	}
	return 0, false
}

func skipBOM(data []byte) []byte {
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		return data[3:]
	}
	return data
}

// offsetPos converts a byte offset into a 1-based line and character column.
func offsetPos(data []byte, off int) (line, col int) {
	off = min(max(off, 0), len(data))
	before := data[:off]
	line = 1 + strings.Count(string(before), "\n")
	if i := strings.LastIndexByte(string(before), '\n'); i >= 0 {
		before = before[i+1:]
	}
	return line, utf8.RuneCount(before) + 1
}

// Leaves flattens a tree of errors.Join into its leaves (nil for nil), so that each validation
// problem can be given its own position.
func Leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Leaves(e)...)
		}
		return out
	}
	return []error{err}
}
