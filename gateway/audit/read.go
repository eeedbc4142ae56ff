package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxLine bounds one line when reading, so a corrupt file cannot make a reader allocate without
// limit. Real records are a few hundred bytes.
const maxLine = 1 << 20

// DecodeLine decodes one audit line (with or without its trailing newline). The line must hold
// exactly one JSON object.
func DecodeLine(line []byte) (Record, error) {
	line = bytes.TrimRight(line, "\r\n")
	if t := bytes.TrimLeft(line, " \t"); len(t) == 0 || t[0] != '{' {
		return Record{}, errors.New("not a JSON object")
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return Record{}, err
	}
	return r, nil
}

// ReadFile reads an audit file written by Log. Blank lines are skipped; any other line that does
// not decode is an error naming path:line.
func ReadFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAll(path, f)
}

func readAll(name string, rd io.Reader) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		r, err := DecodeLine(sc.Bytes())
		if err != nil {
			return out, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
