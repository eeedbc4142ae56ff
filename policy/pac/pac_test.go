package pac

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/scpgate/scpgate/policy"
)

// evalPAC runs FindProxyForURL for each case in a real JavaScript engine (Node, in a bare
// context: no PAC helper is defined, so the file may not rely on any).
func evalPAC(t *testing.T, pac []byte, cases [][2]string) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is not installed (.ci/deps.sh installs Debian's nodejs)")
		}
		t.Skip("node not installed; run .ci/deps.sh")
	}
	in, _ := json.Marshal(map[string]any{"pac": string(pac), "cases": cases})
	const prog = `
const vm = require("vm");
let buf = "";
process.stdin.on("data", d => buf += d);
process.stdin.on("end", () => {
  const input = JSON.parse(buf);
  const ctx = vm.createContext({});
  vm.runInContext(input.pac, ctx);
  const out = input.cases.map(c => ctx.FindProxyForURL(c[0], c[1]));
  process.stdout.write(JSON.stringify(out));
});`
	cmd := exec.Command(node, "-e", prog)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var got []string
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(cases) {
		t.Fatalf("node printed %q: %v", out, err)
	}
	return got
}

// decide is what the gateway does with the request a client sends for rawURL through a proxy:
// CONNECT host:port for https (and wss), GET with the path for http (and ws).
func decide(t *testing.T, p *policy.Policy, rawURL string) policy.Decision {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	method, port, path := "CONNECT", 443, ""
	if u.Scheme == "http" || u.Scheme == "ws" {
		method, port, path = "GET", 80, u.EscapedPath()
	}
	if u.Port() != "" {
		port, _ = strconv.Atoi(u.Port())
	}
	h, err := policy.ParseHost(u.Hostname())
	if err != nil {
		t.Fatalf("%s: %v", rawURL, err)
	}
	return p.Decide(policy.Request{Host: h, Port: uint16(port), Method: method, Path: path})
}

// testURLs covers allowed names, wildcard depths, apexes, in-label globs, deny patterns,
// disabled groups, ports, plain HTTP paths and IP literals.
var testURLs = []string{
	"https://go.microsoft.com/fwlink/?LinkID=123",
	"https://GO.Microsoft.com./",
	"https://xgo.microsoft.com/",
	"https://go.microsoft.com.evil.example/",
	"https://a.manage.microsoft.com/",
	"https://configmgrbits.cdn.manage.microsoft.com/",
	"https://a.b.c.d.manage.microsoft.com/",
	"https://manage.microsoft.com/",
	"https://xmanage.microsoft.com/",
	"https://manage.microsoft.com.evil.example/",
	"https://sccmconnected-a01.cloudapp.net/",
	"https://sccmconnected-a.cloudapp.net/",
	"https://sccmconnected-a01.x.cloudapp.net/",
	"https://x.sccmconnected-a01.cloudapp.net/",
	"https://sccmconnected-b01.cloudapp.net/",
	"https://eus-umwatsonc.events.data.microsoft.com/",
	"https://a-b-umwatsonc.events.data.microsoft.com/",
	"https://a.eus-umwatsonc.events.data.microsoft.com/",
	"https://umwatsonc.events.data.microsoft.com/",
	"https://ok.allowed.example.com/",
	"https://bad.allowed.example.com/",
	"https://x.bad.allowed.example.com/",
	"https://x.worse.allowed.example.com/",
	"https://worse.allowed.example.com/",
	"https://r5x.globs.example.com/",
	"https://rax.globs.example.com/",
	"https://r55x.globs.example.com/",
	"https://ndx.globs.example.com/",
	"https://nbx.globs.example.com/",
	"https://d-x.globs.example.com/",
	"https://d0x.globs.example.com/",
	"https://d.x.globs.example.com/",
	"https://alpha.alt.example.com/",
	"https://beta.alt.example.com/",
	"https://gamma.alt.example.com/",
	"https://qz.globs.example.com/",
	"https://q.globs.example.com/",
	"https://qzz.globs.example.com/",
	"https://a.wx.deep.example.com/",
	"https://a.b.w.deep.example.com/",
	"https://wx.deep.example.com/",
	"https://a.x.deep.example.com/",
	"https://port.example.com:8443/",
	"https://port.example.com/",
	"https://go.microsoft.com:8443/",
	"http://go.microsoft.com/",
	"http://www.microsoft.com/pkiops/crl/x.crl",
	"http://www.microsoft.com/other",
	"http://www.microsoft.com:8080/pkiops/x",
	"https://www.microsoft.com/",
	"http://crl.microsoft.com/anything",
	"https://disabled.example.com/",
	"https://a.disabled.example.com/",
	"https://203.0.113.5/",
	"https://203.0.113.255:443/",
	"https://203.0.114.1/",
	"https://198.51.100.7/",
	"https://192.0.2.1/",
	"https://[2001:db8::1]/",
	"https://[2001:db8:ffff::1]/",
	"https://[2001:db9::1]/",
	"https://[::ffff:203.0.113.9]/",
	"http://203.0.113.5/",
	"ftp://go.microsoft.com/",
}

func TestPACAgreesWithPolicy(t *testing.T) {
	for _, file := range []string{"testdata/policy.yaml", "../../endpoints.yaml"} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			p, err := policy.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			pac, err := Generate(p, Options{Proxy: "gw.corp.example:3128"})
			if err != nil {
				t.Fatal(err)
			}
			var cases [][2]string
			for _, raw := range testURLs {
				u, _ := url.Parse(raw)
				cases = append(cases, [2]string{raw, u.Hostname()})
				if strings.Contains(u.Host, "[") {
					cases = append(cases, [2]string{raw, "[" + u.Hostname() + "]"}) // some clients keep the brackets
				}
			}
			got := evalPAC(t, pac, cases)
			allowed := 0
			for i, c := range cases {
				raw := c[0]
				want := "DIRECT"
				if !strings.HasPrefix(raw, "ftp:") {
					if d := decide(t, p, raw); d.Allow {
						want = "PROXY gw.corp.example:3128"
						allowed++
					}
				}
				if got[i] != want {
					t.Errorf("FindProxyForURL(%q, %q) = %q; the policy says %q", raw, c[1], got[i], want)
				}
			}
			if len(cases) < 40 || allowed < 5 || allowed > len(cases)-5 {
				t.Fatalf("%d cases, %d allowed: the table proves too little", len(cases), allowed)
			}
		})
	}
}

func TestPACAll(t *testing.T) {
	p, err := policy.Load("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pac, err := Generate(p, Options{Proxy: "gw:3128", All: true})
	if err != nil {
		t.Fatal(err)
	}
	got := evalPAC(t, pac, [][2]string{{"https://example.org/", "example.org"}, {"https://go.microsoft.com/", "go.microsoft.com"}, {"http://10.1.2.3/", "10.1.2.3"}})
	for i, g := range got {
		if g != "PROXY gw:3128" {
			t.Errorf("case %d: %q, want everything through the gateway", i, g)
		}
	}
}

// A policy in report mode lets everything through the gateway (and audits would_deny), so its
// PAC sends everything there.
func TestPACReportMode(t *testing.T) {
	p, err := policy.Parse("r.yaml", []byte("version: 1\nmode: report\ngroups:\n  g:\n    enabled: true\n    hosts: [a.example.com]\n"))
	if err != nil {
		t.Fatal(err)
	}
	pac, err := Generate(p, Options{Proxy: "gw:3128"})
	if err != nil {
		t.Fatal(err)
	}
	if got := evalPAC(t, pac, [][2]string{{"https://b.example.org/", "b.example.org"}}); got[0] != "PROXY gw:3128" {
		t.Fatalf("report mode: %q", got[0])
	}
}

func TestGenerateRejectsBadProxy(t *testing.T) {
	p, _ := policy.Load("testdata/policy.yaml")
	for _, proxy := range []string{"", "gw", "gw:3128; DIRECT", "gw:31\"28", "a b:1"} {
		if _, err := Generate(p, Options{Proxy: proxy}); err == nil {
			t.Errorf("proxy %q accepted", proxy)
		}
	}
}

func TestLabelRegexp(t *testing.T) {
	tests := map[string]string{
		"*.x.com":        `^(?:[^.]+\.)+x\.com$`,
		"a*.x.com":       `^a[^.]*\.x\.com$`,
		"q?.x.com":       `^q[^.]\.x\.com$`,
		"n[!a-c]x.x.com": `^n(?!\.)[^a-c]x\.x\.com$`,
		"{a,b}.x.com":    `^(?:a|b)\.x\.com$`,
		"go.x.com":       `^go\.x\.com$`,
	}
	for in, want := range tests {
		if got := patternRegexp(in); got != want {
			t.Errorf("patternRegexp(%q) = %q, want %q", in, got, want)
		}
	}
}
