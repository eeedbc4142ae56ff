package cmtrace

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Entry is one parsed line.
type Entry struct {
	Message   string
	Component string
	// Time carries the written wall-clock time in a fixed zone derived from Bias.
	Time   time.Time
	Bias   int
	Thread int
}

// ErrSyntax is returned (wrapped) for a line that does not follow the grammar.
var ErrSyntax = errors.New("cmtrace: not a site-server trace line")

// ParseLine parses one line (without or with its trailing newline) against the grammar
//
//	line      = message "~~  $$<" component "><" date " " time bias "><thread=" dec " (0x" hex ")>"
//	date      = MM "-" DD "-" YYYY ; time = HH ":" MM ":" SS "." mmm ; bias = ("+" | "-") 1*4DIGIT
//
// The message is everything before the last "~~  $$<"; the hex thread must equal the decimal.
func ParseLine(line string) (Entry, error) {
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	i := strings.LastIndex(line, sep)
	if i < 0 {
		return Entry{}, fmt.Errorf("%w: no %q marker", ErrSyntax, sep)
	}
	e := Entry{Message: line[:i]}
	rest := line[i+len(sep):]
	comp, rest, ok := strings.Cut(rest, "><")
	if !ok || comp == "" || strings.ContainsAny(comp, "<>") {
		return Entry{}, fmt.Errorf("%w: component", ErrSyntax)
	}
	e.Component = comp
	stamp, rest, ok := strings.Cut(rest, "><thread=")
	if !ok || len(stamp) < len(timeLayout)+2 {
		return Entry{}, fmt.Errorf("%w: time stamp", ErrSyntax)
	}
	biasStr := stamp[len(timeLayout):]
	if biasStr[0] != '+' && biasStr[0] != '-' || len(biasStr) > 5 || !allDigits(biasStr[1:]) {
		return Entry{}, fmt.Errorf("%w: bias %q", ErrSyntax, biasStr)
	}
	bias, _ := strconv.Atoi(biasStr)
	if bias < -1440 || bias > 1440 {
		return Entry{}, fmt.Errorf("%w: bias %d out of range", ErrSyntax, bias)
	}
	t, err := time.ParseInLocation(timeLayout, stamp[:len(timeLayout)], time.FixedZone("", -bias*60))
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	e.Time, e.Bias = t, bias
	dec, rest, ok := strings.Cut(rest, " (0x")
	if !ok || !allDigits(dec) || len(dec) > 10 {
		return Entry{}, fmt.Errorf("%w: thread", ErrSyntax)
	}
	hex, ok := strings.CutSuffix(rest, ")>")
	if !ok || hex == "" || len(hex) > 8 {
		return Entry{}, fmt.Errorf("%w: thread hex", ErrSyntax)
	}
	n, err := strconv.ParseInt(dec, 10, 64)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: thread", ErrSyntax)
	}
	h, err := strconv.ParseUint(hex, 16, 64)
	if err != nil || strings.ToUpper(hex) != hex || int64(h) != n {
		return Entry{}, fmt.Errorf("%w: thread %s and 0x%s differ", ErrSyntax, dec, hex)
	}
	e.Thread = int(n)
	return e, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ReadFile parses every line of a log file; an error names the file and the line.
func ReadFile(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		e, err := ParseLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}
