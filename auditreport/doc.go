// Package auditreport turns the gateway's audit files into the report of `scpgate report`: what
// passed, what failed and why, which names were denied, and which rules allowed nothing.
//
// # Streaming
//
// An [Aggregator] reads audit lines one at a time (plain or gzip, detected by content) from any
// number of files: rotated files and the files of several instances simply add up, since every
// row keeps counts, sums and the latest time. Memory depends on the number of rows, never on
// the number of lines: rows are capped (Options.MaxEndpoints, MaxDenied, MaxRefusals; records of
// further rows are counted as omitted) and distinct clients are counted exactly up to
// Options.ClientExactLimit per row and then estimated with a 4 KiB HyperLogLog sketch. A line
// that is not an audit record is counted and listed as file:line; it never stops the read.
//
// # Where a record is counted
//
//   - Denied: the policy refused the destination itself (no_rule, port_not_allowed,
//     denied_pattern, ip_literal, method_not_allowed, user_not_allowed, path_not_allowed), keyed by
//     host:port. The compared policy names a disabled group that would allow it, if one exists.
//   - Endpoint: the policy allowed the destination (the record names its group and pattern):
//     a success, or a failure reaching it (dns_failure, private_address, upstream_refused,
//     sni_mismatch, auth_required...), keyed by host:port, group and pattern. A report-mode
//     would_deny passed and counts as a success, with its reason kept apart.
//   - Refusal: refused before the destination was judged (auth_failed, rate_limited,
//     bad_request, draining...), keyed by reason.
//
// A rule of an enabled group of the compared policy that no "allow" record names is unused.
//
// # Output
//
// [Aggregator.Report] returns a [Report], the JSON document described by
// docs/schema/audit-report.v1.json ([SchemaID]); [Report.Write] renders it as text, JSON, HTML,
// CSV or JUnit XML.
package auditreport
