package policy

import (
	"errors"
	"strings"
	"testing"
)

const pathsPolicy = `version: 1
groups:
  certificate-revocation:
    enabled: true
    ports: [80]
    methods: [GET, HEAD]
    sni: "off"
    hosts:
      - crl.microsoft.com
      - www.microsoft.com
    paths:
      www.microsoft.com: [/pkiops/]
`

func TestDecidePaths(t *testing.T) {
	p, err := Parse("p.yaml", []byte(pathsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, path string
		want       Reason // "" = allowed
	}{
		{"www.microsoft.com", "/pkiops/crl/MicCodSigPCA2011_2011-07-08.crl", ""},
		{"www.microsoft.com", "/pkiops/", ""},
		{"www.microsoft.com", "/pkiops", ReasonPathNotAllowed}, // the prefix is the directory
		{"www.microsoft.com", "/en-us/", ReasonPathNotAllowed},
		{"www.microsoft.com", "", ReasonPathNotAllowed},      // a path the gateway could not vouch for
		{"crl.microsoft.com", "/pki/crl/products/x.crl", ""}, // no limit for this host
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.path, func(t *testing.T) {
			h, _ := ParseHost(tt.host)
			d := p.Decide(Request{Host: h, Port: 80, Method: "GET", Path: tt.path})
			if tt.want == "" {
				if !d.Allow {
					t.Fatalf("denied: %+v", d)
				}
				return
			}
			if d.Allow || d.Reason != tt.want || !strings.Contains(d.Detail, "/pkiops/") {
				t.Fatalf("got %+v, want %s", d, tt.want)
			}
		})
	}
}

func TestLoadPathsErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
		line             int
	}{
		{"host not in group", strings.Replace(pathsPolicy, "www.microsoft.com: [/pkiops/]", "go.microsoft.com: [/pkiops/]", 1), "not one of this group's hosts", 12},
		{"CONNECT group", strings.Replace(pathsPolicy, "[GET, HEAD]", "[GET, CONNECT]", 1), "must not allow CONNECT", 12},
		{"relative prefix", strings.Replace(pathsPolicy, "[/pkiops/]", "[pkiops/]", 1), "not a path prefix", 12},
		{"dot segment", strings.Replace(pathsPolicy, "[/pkiops/]", "[/pkiops/../]", 1), "not a path prefix", 12},
		{"empty list", strings.Replace(pathsPolicy, "[/pkiops/]", "[]", 1), "lists no path prefix", 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.yaml))
			var list ErrorList
			if !errors.As(err, &list) || len(list) != 1 {
				t.Fatalf("err = %v, want one error", err)
			}
			if !strings.Contains(list[0].Msg, tt.want) || list[0].Line != tt.line {
				t.Fatalf("got %v, want line %d: ...%s", list[0], tt.line, tt.want)
			}
		})
	}
}
