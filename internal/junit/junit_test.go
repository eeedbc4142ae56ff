package junit

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

func TestWriteCounts(t *testing.T) {
	var s Suite
	s.Name = "g"
	s.Add(Case{Class: "c", Name: "ok", SystemOut: "fine"})
	s.Add(Case{Class: "c", Name: "bad", Failure: &Message{Message: "broke", Type: "kind", Text: "details <&>"}})
	s.Add(Case{Class: "c", Name: "unused", Skipped: &Message{Message: "nothing"}})
	var b bytes.Buffer
	if err := Write(&b, Suites{Name: "doc", Suites: []Suite{s, {Name: "empty"}}}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), xml.Header) {
		t.Error("no XML header")
	}
	var back Suites
	if err := xml.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("does not parse: %v\n%s", err, b.String())
	}
	if back.Tests != 3 || back.Failures != 1 || back.Skipped != 1 || len(back.Suites) != 2 ||
		back.Suites[0].Cases[1].Failure.Text != "details <&>" || back.Suites[0].Cases[0].SystemOut != "fine" {
		t.Errorf("round trip: %+v", back)
	}
}
