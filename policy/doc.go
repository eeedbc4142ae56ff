// Package policy loads endpoints.yaml, normalises destination hosts and decides whether a
// request may pass.
//
// # Loading
//
// [Load] and [Parse] decode the file through yaml.Node so every problem carries a
// file:line:col position; they collect every error (an [ErrorList]) instead of stopping at
// the first. Unknown keys, wrong types, bad values, duplicate group names, duplicate hosts
// within a group and malformed patterns are all load errors. YAML aliases are refused
// (they would make the strict walk ambiguous and invite alias bombs), and so is a second
// YAML document in the same file.
//
// # Hosts and patterns
//
// [ParseHost] normalises a request host: IP literals (including the inet_aton spellings
// and IPv4-mapped IPv6) become addresses, names become lowercase ASCII/punycode with no
// trailing dot. Patterns follow the same rules and must already be ASCII.
//
// A pattern is one of three kinds:
//   - exact ("go.microsoft.com"): a map lookup;
//   - suffix ("*.manage.microsoft.com"): one or more labels in front of the suffix, never
//     the apex; found by walking the host's label suffixes through a map;
//   - glob (a wildcard inside a label, or glob syntax anywhere): compiled with gobwas/glob
//     using '.' as separator and indexed by its literal suffix (the labels right of the last
//     wildcard label), so a decision only tries the globs whose suffix the host ends in.
//
// The cost of a decision therefore depends on the number of labels in the host, not on the
// number of rules.
//
// # Deciding
//
// [Policy.Decide] is the hot path: it does not allocate for an allowed request and leaves
// Decision.Matches nil. [Policy.DecideVerbose] returns the same decision plus every rule
// that matched the host (deny patterns, disabled groups included) for explain output.
//
// Match order is most specific first: exact, then suffix (longest suffix first), then glob
// (longest literal suffix first); ties go to file order. Only enabled groups can allow.
// Slices in a Decision (Ports) are shared with the policy and must not be modified.
package policy
