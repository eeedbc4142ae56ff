// Package scpgate holds what the binary carries with it: the shipped endpoints.yaml, the default
// policy for `scpgate policy explain` and `make demo` when no file is given.
package scpgate

import _ "embed"

// DefaultPolicy is endpoints.yaml as shipped, read-only.
//
//go:embed endpoints.yaml
var DefaultPolicy []byte

// DefaultPolicyName is how errors and explanations name the embedded policy.
const DefaultPolicyName = "endpoints.yaml (built in)"
