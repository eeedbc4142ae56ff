package policy

import (
	"fmt"
	"strings"
	"testing"
)

// onePattern builds a policy whose only enabled group lists pattern.
func onePattern(t testing.TB, pattern string) *Policy {
	t.Helper()
	src := fmt.Sprintf("version: 1\ngroups:\n  g:\n    enabled: true\n    hosts: [%q]\n", pattern)
	p, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse(%q): %v", pattern, err)
	}
	return p
}

func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
		kind          patternKind
	}{
		// Exact.
		{"go.microsoft.com", "go.microsoft.com", true, kindExact},
		{"go.microsoft.com", "GO.Microsoft.com.", true, kindExact},
		{"Go.Microsoft.Com.", "go.microsoft.com", true, kindExact},
		{"go.microsoft.com", "x.go.microsoft.com", false, kindExact},
		{"go.microsoft.com", "microsoft.com", false, kindExact},
		{"go.microsoft.com", "go.microsoft.com.evil.example", false, kindExact},
		{"go.microsoft.com", "ggo.microsoft.com", false, kindExact},

		// "*." suffix: one or more labels, never the apex.
		{"*.manage.microsoft.com", "a.manage.microsoft.com", true, kindSuffix},
		{"*.manage.microsoft.com", "x.y.manage.microsoft.com", true, kindSuffix},
		{"*.manage.microsoft.com", "a.b.c.d.manage.microsoft.com", true, kindSuffix},
		{"*.manage.microsoft.com", "SCCM.Manage.Microsoft.com.", true, kindSuffix},
		{"*.manage.microsoft.com", "manage.microsoft.com", false, kindSuffix},
		{"*.manage.microsoft.com", "xmanage.microsoft.com", false, kindSuffix},
		{"*.manage.microsoft.com", "a.manage.microsoft.com.evil.example", false, kindSuffix},
		{"*.manage.microsoft.com", "microsoft.com", false, kindSuffix},
		{"*.co.uk", "example.co.uk", true, kindSuffix},
		{"*.co.uk", "co.uk", false, kindSuffix},

		// "*" inside a label stays in that label.
		{"*-umwatsonc.events.data.microsoft.com", "ceuswatcab-umwatsonc.events.data.microsoft.com", true, kindGlob},
		{"*-umwatsonc.events.data.microsoft.com", "a-umwatsonc.events.data.microsoft.com", true, kindGlob},
		{"*-umwatsonc.events.data.microsoft.com", "a.b-umwatsonc.events.data.microsoft.com", false, kindGlob},
		{"*-umwatsonc.events.data.microsoft.com", "umwatsonc.events.data.microsoft.com", false, kindGlob},
		{"sccmconnected-a*.cloudapp.net", "sccmconnected-a01.cloudapp.net", true, kindGlob},
		{"sccmconnected-a*.cloudapp.net", "sccmconnected-a.cloudapp.net", true, kindGlob},
		{"sccmconnected-a*.cloudapp.net", "SCCMConnected-A01.CloudApp.Net.", true, kindGlob},
		{"sccmconnected-a*.cloudapp.net", "x.sccmconnected-a01.cloudapp.net", false, kindGlob},
		{"sccmconnected-a*.cloudapp.net", "sccmconnected-b01.cloudapp.net", false, kindGlob},
		{"a.*.example.com", "a.b.example.com", true, kindGlob},
		{"a.*.example.com", "a.b.c.example.com", false, kindGlob},

		// ? [a-z] {a,b}.
		{"watcab0?.blob.core.windows.net", "watcab01.blob.core.windows.net", true, kindGlob},
		{"watcab0?.blob.core.windows.net", "watcab012.blob.core.windows.net", false, kindGlob},
		{"watcab0?.blob.core.windows.net", "watcab0.blob.core.windows.net", false, kindGlob},
		{"watcab0[1-2].blob.core.windows.net", "watcab02.blob.core.windows.net", true, kindGlob},
		{"watcab0[1-2].blob.core.windows.net", "watcab03.blob.core.windows.net", false, kindGlob},
		{"watcab0[!1].blob.core.windows.net", "watcab03.blob.core.windows.net", true, kindGlob},
		{"watcab0[!1].blob.core.windows.net", "watcab01.blob.core.windows.net", false, kindGlob},
		{"[a-z]x.example.com", "qx.example.com", true, kindGlob},
		{"[a-z]x.example.com", "1x.example.com", false, kindGlob},
		{"{ceus,eaus2,weus2}watcab0[12].blob.core.windows.net", "eaus2watcab02.blob.core.windows.net", true, kindGlob},
		{"{ceus,eaus2,weus2}watcab0[12].blob.core.windows.net", "ceuswatcab01.blob.core.windows.net", true, kindGlob},
		{"{ceus,eaus2,weus2}watcab0[12].blob.core.windows.net", "nwuswatcab01.blob.core.windows.net", false, kindGlob},
		{"{ceus,eaus2,weus2}watcab0[12].blob.core.windows.net", "CEUSWATCAB01.BLOB.CORE.WINDOWS.NET.", true, kindGlob},

		// Leading "*." with glob syntax after it: still one or more labels.
		{"*.a*.example.com", "x.ab.example.com", true, kindGlob},
		{"*.a*.example.com", "x.y.ab.example.com", true, kindGlob},
		{"*.a*.example.com", "ab.example.com", false, kindGlob},
		{"*.a*.example.com", "x.b.example.com", false, kindGlob},
		{"*.*.example.com", "x.y.example.com", true, kindGlob},
		{"*.*.example.com", "w.x.y.example.com", true, kindGlob},
		{"*.*.example.com", "y.example.com", false, kindGlob},

		// A character class never matches the '.' between labels: a negated class or a range
		// spanning '.' must not let a pattern reach a name with more labels.
		{"watcab0[!1].blob.core.windows.net", "watcab0.x.blob.core.windows.net", false, kindGlob},
		{"a[!b]c.example.com", "a.c.example.com", false, kindGlob},
		{"a[!b]c.example.com", "axc.example.com", true, kindGlob},
		{"a[--0]c.example.com", "a.c.example.com", false, kindGlob},
		{"a[--0]c.example.com", "a-c.example.com", true, kindGlob},
		{"*.a[!b]c.example.com", "x.a.c.example.com", false, kindGlob},
		{"*.a[!b]c.example.com", "x.y.axc.example.com", true, kindGlob},
		{"x.[!b]*.example.com", "x.a.b.example.com", false, kindGlob},

		// Punycode on both sides.
		{"xn--bcher-kva.example.com", "bücher.example.com", true, kindExact},
		{"*.xn--bcher-kva.example", "www.bücher.example", true, kindSuffix},
		{"*.xn--bcher-kva.example", "bücher.example", false, kindSuffix},
		{"shop*.xn--bcher-kva.example", "shop1.BÜCHER.example", true, kindGlob},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"~"+tt.host, func(t *testing.T) {
			c, err := compilePattern(tt.pattern)
			if err != nil {
				t.Fatalf("compilePattern(%q): %v", tt.pattern, err)
			}
			if c.kind != tt.kind {
				t.Errorf("kind = %v, want %v", c.kind, tt.kind)
			}
			h, err := ParseHost(tt.host)
			if err != nil {
				t.Fatalf("ParseHost(%q): %v", tt.host, err)
			}
			if got := matchPattern(c, h.Name); got != tt.want {
				t.Errorf("matchPattern(%q, %q) = %v, want %v", tt.pattern, h.Name, got, tt.want)
			}
			// The same through the index.
			p := onePattern(t, tt.pattern)
			d := p.Decide(Request{Host: h, Port: 443, Method: "CONNECT"})
			if d.Allow != tt.want {
				t.Errorf("Decide(%q) with %q: allow=%v, want %v (%s)", h.Name, tt.pattern, d.Allow, tt.want, d.Detail)
			}
			if tt.want && d.Pattern != c.text {
				t.Errorf("Pattern = %q, want %q", d.Pattern, c.text)
			}
		})
	}
}

func TestCompilePatternErrors(t *testing.T) {
	tests := []struct {
		pattern string
		msg     string // substring of the error
	}{
		{"", "empty"},
		{"*", "two literal labels"},
		{"*.com", "two literal labels"},
		{"foo*.com", "two literal labels"},
		{"*.*.com", "two literal labels"},
		{"example.*", "two literal labels"},
		{"example.c*m", "two literal labels"},
		{"a.*.com", "two literal labels"},
		{"**.example.com", `"**"`},
		{"a**b.example.com", `"**"`},
		{"{a,b.example.com", "'.' inside"},
		{"{a,b}x.example.com}", "without"},
		{"[ab.example.com", "'.' inside"},
		{"x[ab", "unclosed"},
		{"x{ab", "unclosed"},
		{"a,b.example.com", "outside {...}"},
		{"[].example.com", "invalid glob"},
		{"under_score.example.com", "invalid character"},
		{"a b.example.com", "invalid character"},
		{"a\\*.example.com", "invalid character"},
		{"bücher.example", "write it as punycode: xn--bcher-kva.example"},
		{"*.bücher.example", "write it as punycode: *.xn--bcher-kva.example"},
		{"a..example.com", "empty label"},
		{".example.com", "empty label"},
		{"example.com..", "empty label"},
		{"-x.example.com", "hyphen"},
		{"x.example-.com", "hyphen"},
		{strings.Repeat("a", 64) + ".example.com", "longer than 63"},
		{"127.0.0.1", "list it under addresses as 127.0.0.1/32"},
		{"2130706433", "list it under addresses"},
		{"1.2.3.4.5", "ends in a number"},
		{"*.0.0.1", "ends in a number"},
		{"xn--zz.example.com", "punycode"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			c, err := compilePattern(tt.pattern)
			if err == nil {
				t.Fatalf("compilePattern(%q) = %+v, want error", tt.pattern, c)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

func TestCompilePatternOK(t *testing.T) {
	for _, p := range []string{"*.co.uk", "*.manage.microsoft.com", "a*.cloudapp.net", "aka.ms", "x.y",
		"a?c.example.com", "[a-c]x.example.com", "{a,b}.example.com", "*.{a,b}.example.com"} {
		if _, err := compilePattern(p); err != nil {
			t.Errorf("compilePattern(%q): %v", p, err)
		}
	}
}
