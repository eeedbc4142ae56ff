// Package pac writes a proxy auto-config (PAC) file from a policy: clients that use it send the
// hosts the policy's enabled groups allow through the gateway and everything else DIRECT (or,
// with All, everything through the gateway, for networks whose firewall blocks direct traffic).
//
// The PAC routes; the gateway still decides. The file mirrors [policy.Policy.Decide] for what a
// PAC can see: the host, the port and scheme of the URL (https:// and wss:// are tunnelled with
// CONNECT, http:// and ws:// are plain GET requests through the proxy) and, for plain HTTP, the
// path. Users and authentication are the gateway's business: a host a group allows for some
// users only is still routed to the gateway, which asks for credentials.
//
// Host patterns keep Microsoft's semantics in JavaScript: "*.x.com" matches one or more labels
// in front of x.com and never x.com itself; "*", "?", "[...]" and "{a,b}" inside a label stay
// within that label.
package pac

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/scpgate/scpgate/policy"
)

// Options choose where the PAC sends traffic.
type Options struct {
	// Proxy is the gateway's plain HTTP listener as clients reach it: "gw.corp.example:3128".
	Proxy string
	// All sends every request through the gateway, not only those the policy allows.
	All bool
}

// rule is one host pattern of one enabled group, as the PAC's JavaScript reads it.
type rule struct {
	Pattern string   `json:"p"` // for a reader of the PAC file
	Regexp  string   `json:"r"` // matches the whole normalised host
	Ports   []uint16 `json:"ports"`
	Connect bool     `json:"connect"`          // https://, wss:// (CONNECT)
	Get     bool     `json:"get"`              // http://, ws:// (plain GET)
	Paths   []string `json:"paths,omitempty"`  // plain HTTP path prefixes; nil: any
	Report  bool     `json:"report,omitempty"` // the group only reports: any port and method pass
	Group   string   `json:"g"`
}

// netRule is one address prefix of one enabled group.
type netRule struct {
	Prefix  string   `json:"prefix"`
	Ports   []uint16 `json:"ports"`
	Connect bool     `json:"connect"`
	Get     bool     `json:"get"`
	Report  bool     `json:"report,omitempty"`
	Group   string   `json:"g"`
}

// Generate returns the PAC file for p.
func Generate(p *policy.Policy, o Options) ([]byte, error) {
	if _, _, err := net.SplitHostPort(o.Proxy); err != nil || strings.ContainsAny(o.Proxy, "\"'\\;\n ") {
		return nil, fmt.Errorf("pac: proxy %q: want HOST:PORT", o.Proxy)
	}
	var rules []rule
	var nets []netRule
	var deny []string
	for _, d := range p.Deny {
		deny = append(deny, patternRegexp(d))
	}
	for _, g := range p.Groups {
		if !g.Enabled {
			continue
		}
		connect, get := slices.Contains(g.Methods, "CONNECT"), slices.Contains(g.Methods, "GET")
		report := g.Mode == policy.ModeReport
		for _, h := range g.Hosts {
			rules = append(rules, rule{Pattern: h, Regexp: patternRegexp(h), Ports: g.Ports,
				Connect: connect, Get: get, Paths: g.Paths[h], Report: report, Group: g.Name})
		}
		for _, a := range g.Addresses {
			nets = append(nets, netRule{Prefix: a.String(), Ports: g.Ports, Connect: connect, Get: get,
				Report: report, Group: g.Name})
		}
	}
	data := struct {
		Proxy  string    `json:"proxy"`
		All    bool      `json:"all"`
		Report bool      `json:"report"` // the whole policy only reports: everything goes through
		Deny   []string  `json:"deny"`
		Rules  []rule    `json:"rules"`
		Nets   []netRule `json:"nets"`
	}{o.Proxy, o.All, p.Mode == policy.ModeReport, deny, rules, nets}
	if data.Deny == nil {
		data.Deny = []string{}
	}
	if data.Rules == nil {
		data.Rules = []rule{}
	}
	if data.Nets == nil {
		data.Nets = []netRule{}
	}
	js, err := json.MarshalIndent(data, "", " ")
	if err != nil {
		return nil, fmt.Errorf("pac: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "// Proxy auto-config for scpgate, generated from %s (version %.12s).\n", p.File, p.Version)
	b.WriteString("// Regenerate it after changing the policy: scpgate policy pac, or the admin listener's /proxy.pac.\n")
	b.WriteString("var SCPGATE = ")
	b.Write(js)
	b.WriteString(";\n")
	b.WriteString(script)
	return []byte(b.String()), nil
}

// patternRegexp translates a normalised host pattern into a JavaScript regular expression that
// matches exactly the names [policy] matches: label by label, wildcards never crossing a dot.
func patternRegexp(p string) string {
	var b strings.Builder
	b.WriteString("^")
	labels := strings.Split(p, ".")
	if labels[0] == "*" {
		b.WriteString(`(?:[^.]+\.)+`) // one or more labels, never none
		labels = labels[1:]
	}
	for i, l := range labels {
		if i > 0 {
			b.WriteString(`\.`)
		}
		b.WriteString(labelRegexp(l))
	}
	b.WriteString("$")
	return b.String()
}

// labelRegexp translates one label of gobwas/glob syntax (separator '.'): '*' any run of
// non-dots, '?' one non-dot, [abc] [a-z] [!a-z] one character of a class other than '.',
// {a,b} alternatives. Letters, digits and '-' are literal. The policy has validated the syntax.
func labelRegexp(l string) string {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case inClass:
			if c == ']' {
				inClass = false
			}
			if c == '\\' || c == '^' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		case c == '*':
			b.WriteString(`[^.]*`)
		case c == '?':
			b.WriteString(`[^.]`)
		case c == '[':
			inClass = true
			b.WriteString(`(?!\.)[`) // a class never matches the separator
			if i+1 < len(l) && l[i+1] == '!' {
				b.WriteByte('^')
				i++
			}
		case c == '{':
			b.WriteString("(?:")
		case c == ',':
			b.WriteString("|")
		case c == '}':
			b.WriteString(")")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// script is the PAC's logic; SCPGATE holds the data. It uses only ECMAScript 5 (WinHTTP's
// engine) and none of the PAC helpers that resolve names (isInNet, dnsResolve): a PAC that looks
// up every host is slow and leaks the names to the local resolver.
const script = `
function scpgateIPv4(h) {
  var m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  if (!m) return null;
  var out = [];
  for (var i = 1; i <= 4; i++) {
    var n = parseInt(m[i], 10);
    if (n > 255 || (m[i].length > 1 && m[i].charAt(0) === "0")) return null;
    out.push(n);
  }
  return out;
}

// scpgateIPv6 returns the 16 bytes of an IPv6 literal (brackets allowed), or null.
function scpgateIPv6(h) {
  if (h.charAt(0) === "[" && h.charAt(h.length - 1) === "]") h = h.substring(1, h.length - 1);
  if (h.indexOf(":") < 0 || h.indexOf("%") >= 0) return null;
  var tail = [];
  var v4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  if (v4) {
    var b4 = scpgateIPv4(v4[2]);
    if (!b4) return null;
    tail = [(b4[0] << 8) | b4[1], (b4[2] << 8) | b4[3]];
    h = v4[1]; // "::ffff:" or "64:ff9b::": keep a trailing "::", drop a single ":"
    if (h.substring(h.length - 2) !== "::") h = h.substring(0, h.length - 1);
  }
  var halves = h.split("::");
  if (halves.length > 2) return null;
  var parse = function (s) {
    if (s === "") return [];
    var parts = s.split(":"), out = [];
    for (var i = 0; i < parts.length; i++) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(parts[i])) return null;
      out.push(parseInt(parts[i], 16));
    }
    return out;
  };
  var head = parse(halves[0]);
  var rest = halves.length === 2 ? parse(halves[1]) : [];
  if (head === null || rest === null) return null;
  rest = rest.concat(tail);
  var words;
  if (halves.length === 2) {
    var fill = 8 - head.length - rest.length;
    if (fill < 1) return null;
    words = head;
    for (var i = 0; i < fill; i++) words = words.concat([0]);
    words = words.concat(rest);
  } else {
    words = head.concat(tail);
    if (words.length !== 8) return null;
  }
  var bytes = [];
  for (var j = 0; j < 8; j++) bytes.push(words[j] >> 8, words[j] & 255);
  return bytes;
}

// scpgateAddr returns the bytes of an IP literal host (IPv4-mapped IPv6 as IPv4), or null.
function scpgateAddr(h) {
  var b = scpgateIPv4(h);
  if (b) return b;
  b = scpgateIPv6(h);
  if (!b) return null;
  for (var i = 0; i < 10; i++) if (b[i] !== 0) return b;
  if (b[10] === 255 && b[11] === 255) return b.slice(12);
  return b;
}

function scpgateInPrefix(addr, prefix) {
  var slash = prefix.lastIndexOf("/");
  var net = scpgateAddr(prefix.substring(0, slash)), bits = parseInt(prefix.substring(slash + 1), 10);
  if (!net || net.length !== addr.length) return false;
  for (var i = 0; i < addr.length && bits > 0; i++, bits -= 8) {
    var mask = bits >= 8 ? 255 : (255 << (8 - bits)) & 255;
    if ((addr[i] & mask) !== (net[i] & mask)) return false;
  }
  return true;
}

function scpgateFits(r, port, connect, path) {
  if (r.report) return true;
  var portOK = false;
  for (var i = 0; i < r.ports.length; i++) if (r.ports[i] === port) portOK = true;
  if (!portOK || !(connect ? r.connect : r.get)) return false;
  if (connect || !r.paths) return true;
  for (var j = 0; j < r.paths.length; j++) if (path.indexOf(r.paths[j]) === 0) return true;
  return false;
}

// scpgateAllows mirrors the gateway's decision for what a PAC can see.
function scpgateAllows(url, host) {
  var m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/(?:[^@\/?#]*@)?(\[[^\]]*\]|[^:\/?#]*)(?::(\d+))?([^?#]*)/.exec(url);
  var scheme = m ? m[1].toLowerCase() : "https";
  var connect = scheme === "https" || scheme === "wss";
  var port = m && m[3] ? parseInt(m[3], 10) : (connect ? 443 : 80);
  var path = m && m[4] ? m[4] : "/";
  if (!connect && scheme !== "http" && scheme !== "ws") return false;
  host = host.toLowerCase();
  if (host.charAt(host.length - 1) === ".") host = host.substring(0, host.length - 1);
  var addr = scpgateAddr(host), i;
  if (addr) {
    for (i = 0; i < SCPGATE.nets.length; i++) {
      if (scpgateInPrefix(addr, SCPGATE.nets[i].prefix) && scpgateFits(SCPGATE.nets[i], port, connect, path)) return true;
    }
    return false;
  }
  for (i = 0; i < SCPGATE.deny.length; i++) if (new RegExp(SCPGATE.deny[i]).test(host)) return false;
  for (i = 0; i < SCPGATE.rules.length; i++) {
    var r = SCPGATE.rules[i];
    if (new RegExp(r.r).test(host) && scpgateFits(r, port, connect, path)) return true;
  }
  return false;
}

function FindProxyForURL(url, host) {
  if (SCPGATE.all || SCPGATE.report || scpgateAllows(url, host)) return "PROXY " + SCPGATE.proxy;
  return "DIRECT";
}
`
