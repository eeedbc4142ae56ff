package manifest

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Version
		ok   bool
		str  string
	}{
		{"5.00.9135.1000", Version{5, 0, 9135, 1000}, true, "5.00.9135.1000"},
		{"5.0.9135.1000", Version{5, 0, 9135, 1000}, true, "5.00.9135.1000"},
		{"5.12.1.0", Version{5, 12, 1, 0}, true, "5.12.1.0"},
		{"4294967295.0.0.0", Version{4294967295, 0, 0, 0}, true, "4294967295.00.0.0"},
		{"0005.00.0009135.1000", Version{5, 0, 9135, 1000}, true, "5.00.9135.1000"},
		{"4294967296.0.0.0", Version{}, false, ""},
		{"5.00.9135", Version{}, false, ""},
		{"5.00.9135.1000.1", Version{}, false, ""},
		{"5..9135.1000", Version{}, false, ""},
		{"+5.00.9135.1000", Version{}, false, ""},
		{"5.00.9135.-1", Version{}, false, ""},
		{" 5.00.9135.1000", Version{}, false, ""},
		{"5.00.9135.1000\n", Version{}, false, ""},
		{"5.00.91_35.1000", Version{}, false, ""},
		{"5.00.٣.1000", Version{}, false, ""},
		{"", Version{}, false, ""},
		{strings.Repeat("0", 70) + ".0.0.0", Version{}, false, ""},
	}
	for _, tc := range tests {
		got, err := ParseVersion(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseVersion(%q): err=%v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && (got != tc.want || got.String() != tc.str) {
			t.Errorf("ParseVersion(%q) = %v (%s), want %v (%s)", tc.in, got, got, tc.want, tc.str)
		}
	}
}

func TestVersionCompare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"5.00.9135.1000", "5.00.9135.1000", 0},
		{"5.00.9135.1000", "5.0.9135.1000", 0},
		{"5.00.9135.1000", "5.00.9135.1008", -1},
		{"5.00.9140.1000", "5.00.9135.1008", 1},
		{"5.00.10000.1000", "5.00.9999.1000", 1}, // numeric, not lexical
		{"4.99.9999.9999", "5.00.0.0", -1},
		{"5.01.0.0", "5.00.9999.9999", 1},
	}
	for _, tc := range tests {
		a, b := MustParseVersion(tc.a), MustParseVersion(tc.b)
		if got := a.Compare(b); got != tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := b.Compare(a); got != -tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestVersionText(t *testing.T) {
	t.Parallel()
	var s struct{ V Version }
	if err := json.Unmarshal([]byte(`{"V":"5.00.9135.1000"}`), &s); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(s)
	if string(out) != `{"V":"5.00.9135.1000"}` {
		t.Fatalf("marshal: %s", out)
	}
	if err := json.Unmarshal([]byte(`{"V":"5.00"}`), &s); err == nil {
		t.Fatal("bad version accepted")
	}
	if !(Version{}).IsZero() || s.V.IsZero() {
		t.Fatal("IsZero")
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"5.00.9135.1000", "0.0.0.0", "4294967295.4294967295.4294967295.4294967295", "1.2.3", "a.b.c.d", "01.02.03.04"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		// String form re-parses to the same version, and is canonical (a fixed point).
		v2, err := ParseVersion(v.String())
		if err != nil || v2 != v {
			t.Fatalf("ParseVersion(%q) = %v; String %q re-parses to %v, %v", s, v, v.String(), v2, err)
		}
		if v2.String() != v.String() {
			t.Fatalf("String not canonical: %q vs %q", v2.String(), v.String())
		}
		if v.Compare(v2) != 0 {
			t.Fatal("Compare of equal versions != 0")
		}
	})
}
