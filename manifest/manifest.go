// Package manifest defines the update manifest that the simulated Microsoft cloud publishes and
// the SCP client downloads, verifies and acts on.
//
// The real Configuration Manager downloads a signed CAB named ConfigMgr.Update.Manifest.cab. We
// do not imitate the CAB format or Microsoft's signing: this package is the simulation's stand-in,
// a documented JSON file named ConfigMgr.Update.Manifest.json (see FileName), signed with Ed25519.
//
// On the wire the file is a JSON envelope:
//
//	{"manifest":{...},"keyId":"ed25519:0123abcd4567ef89","signature":"<base64>"}
//
// The signature covers the exact bytes of the "manifest" value as they appear in the file, so
// re-formatting the file invalidates it; Sign writes compact JSON. The manifest value is:
//
//	{"schemaVersion":1,"generated":"2026-03-01T00:00:00Z","updates":[{
//	  "guid":"3f2504e0-4f89-41d3-9a0c-0305e82c3301","name":"Configuration Manager 2509",
//	  "kind":"update","version":"5.00.9140.1000","applicableFrom":["5.00.9135.1000"],
//	  "payloadUrl":"https://configmgrbits.cdn.manage.microsoft.com/release/5.00.9140.1000/<guid>/<guid>.cab",
//	  "size":123456,"sha256":"<64 lowercase hex>","published":"2026-02-01T00:00:00Z","description":"..."}]}
//
// Parsing is strict: unknown or differently-cased keys, duplicate keys, trailing data, duplicate
// GUIDs and malformed fields are all errors, because a manifest decides what code a site installs.
package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"
)

const (
	// FileName is the simulation's manifest file name (the real product's is
	// ConfigMgr.Update.Manifest.cab, a signed CAB we do not imitate).
	FileName = "ConfigMgr.Update.Manifest.json"
	// CurrentSchemaVersion is the only schema version this package reads and writes.
	CurrentSchemaVersion = 1
	// MaxSize bounds a signed manifest file. Real manifests are tens of KiB; the limit keeps a
	// hostile or broken download from exhausting memory before the signature is even checked.
	MaxSize = 4 << 20

	// KindUpdate is an in-console update (a new ConfigMgr release).
	KindUpdate = "update"
	// KindHotfix is a hotfix or update rollup for one installed build.
	KindHotfix = "hotfix"
)

var (
	// ErrTooLarge means the input exceeds MaxSize.
	ErrTooLarge = errors.New("manifest: larger than the size limit")
	// ErrSignature means the signature is missing, malformed or does not verify with the key.
	ErrSignature = errors.New("manifest: signature does not verify")
	// ErrMalformed means the input is not a well-formed manifest file (JSON syntax, unknown or
	// duplicate keys, trailing data, wrong types).
	ErrMalformed = errors.New("manifest: malformed")
	// ErrInvalid means the manifest is well-formed and signed but breaks a content rule
	// (schema version, duplicate GUID, bad version, bad SHA-256, ...).
	ErrInvalid = errors.New("manifest: invalid")
)

// Manifest lists the updates the cloud offers.
type Manifest struct {
	SchemaVersion int       `json:"schemaVersion"`
	Generated     time.Time `json:"generated"`
	Updates       []Update  `json:"updates"`
}

// Update is one downloadable update or hotfix.
type Update struct {
	// GUID is the package id; it names the payload folder (EasySetupPayload/<GUID>), so it must
	// be a canonical 8-4-4-4-12 hex GUID and nothing else.
	GUID string `json:"guid"`
	Name string `json:"name"`
	// Kind is KindUpdate or KindHotfix.
	Kind string `json:"kind"`
	// Version is the site version after installing, e.g. "5.00.9140.1000".
	Version string `json:"version"`
	// ApplicableFrom lists the exact installed site versions this update installs on top of
	// (compared numerically). An explicit list, not a range, because that is how ConfigMgr
	// ships: each release and hotfix names the builds it supports.
	ApplicableFrom []string `json:"applicableFrom"`
	// PayloadURL is an absolute https URL of the payload.
	PayloadURL string `json:"payloadUrl"`
	// Size is the payload size in bytes (> 0).
	Size int64 `json:"size"`
	// SHA256 is the payload digest as 64 lowercase hex characters.
	SHA256      string    `json:"sha256"`
	Published   time.Time `json:"published"`
	Description string    `json:"description,omitempty"`
}

// Signed is the on-disk envelope: the manifest bytes, the id of the signing key and an Ed25519
// signature over exactly those bytes.
type Signed struct {
	Manifest  json.RawMessage `json:"manifest"`
	KeyID     string          `json:"keyId"`
	Signature []byte          `json:"signature"`
}

// knownKeys is every object key of the format, spelled exactly. encoding/json matches keys
// case-insensitively and keeps the last of duplicate keys; rejecting both up front means every
// reader of a signed manifest sees the same content.
var knownKeys = map[string]bool{
	"manifest": true, "keyId": true, "signature": true,
	"schemaVersion": true, "generated": true, "updates": true,
	"guid": true, "name": true, "kind": true, "version": true, "applicableFrom": true,
	"payloadUrl": true, "size": true, "sha256": true, "published": true, "description": true,
}

// maxDepth is far deeper than the format needs (envelope > manifest > updates > update >
// applicableFrom) and stops pathological nesting early.
const maxDepth = 16

// Sign validates m, encodes it as compact JSON and returns the signed envelope. An empty keyID
// is replaced by KeyIDOf(the public key).
func Sign(m Manifest, key ed25519.PrivateKey, keyID string) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("manifest: signing key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if m.Updates == nil {
		m.Updates = []Update{} // "updates":[] rather than null
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("manifest: encode: %w", err)
	}
	if keyID == "" {
		keyID = KeyIDOf(key.Public().(ed25519.PublicKey))
	}
	out, err := json.Marshal(Signed{Manifest: body, KeyID: keyID, Signature: ed25519.Sign(key, body)})
	if err != nil {
		return nil, fmt.Errorf("manifest: encode envelope: %w", err)
	}
	if len(out) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(out))
	}
	return out, nil
}

// Verify checks the envelope's signature with pub and returns the validated manifest. The
// signature is checked before the manifest is decoded, so unauthenticated content is never
// interpreted beyond the envelope.
func Verify(data []byte, pub ed25519.PublicKey) (Manifest, error) {
	if len(data) > MaxSize {
		return Manifest{}, fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, len(data), MaxSize)
	}
	if len(pub) != ed25519.PublicKeySize {
		// ed25519.Verify panics on a wrong-sized key; a bad configuration must be an error.
		return Manifest{}, fmt.Errorf("manifest: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if err := checkKeys(data); err != nil {
		return Manifest{}, err
	}
	var env Signed
	if err := decodeStrict(data, &env); err != nil {
		return Manifest{}, err
	}
	if len(env.Manifest) == 0 {
		return Manifest{}, fmt.Errorf("%w: no manifest", ErrMalformed)
	}
	if len(env.Signature) != ed25519.SignatureSize {
		return Manifest{}, fmt.Errorf("%w: signature has %d bytes, want %d", ErrSignature, len(env.Signature), ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, env.Manifest, env.Signature) {
		return Manifest{}, fmt.Errorf("%w (key id in file %q, expected key %s)", ErrSignature, env.KeyID, KeyIDOf(pub))
	}
	var m Manifest
	if err := decodeStrict(env.Manifest, &m); err != nil {
		return Manifest{}, err
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown fields and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON value", ErrMalformed)
	}
	return nil
}

// checkKeys walks the JSON tokens of data and rejects keys not spelled exactly as in the format,
// duplicate keys within one object, and nesting deeper than maxDepth. Only the first JSON value
// is walked; decodeStrict rejects anything after it.
func checkKeys(data []byte) error {
	type frame struct {
		object    bool
		expectKey bool
		seen      map[string]bool
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers are not interpreted here; avoid float conversion work
	var stack []*frame
	// valueDone marks the value of the enclosing object's current key as consumed.
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].expectKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
			top := stack[n-1]
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				valueDone()
			} else {
				k, _ := tok.(string) // the decoder only yields strings or '}' here
				if !knownKeys[k] {
					return fmt.Errorf("%w: unknown field %q", ErrMalformed, k)
				}
				if top.seen[k] {
					return fmt.Errorf("%w: duplicate field %q", ErrMalformed, k)
				}
				top.seen[k] = true
				top.expectKey = false
			}
		} else {
			switch tok {
			case json.Delim('{'), json.Delim('['):
				if len(stack) >= maxDepth {
					return fmt.Errorf("%w: nested deeper than %d", ErrMalformed, maxDepth)
				}
				obj := tok == json.Delim('{')
				f := &frame{object: obj, expectKey: obj}
				if obj {
					f.seen = map[string]bool{}
				}
				stack = append(stack, f)
			case json.Delim(']'):
				stack = stack[:len(stack)-1]
				valueDone()
			default:
				valueDone()
			}
		}
		if len(stack) == 0 {
			return nil
		}
	}
}

// Validate checks every content rule; Sign and Verify call it. Errors wrap ErrInvalid and name
// the offending update.
func (m Manifest) Validate() error {
	if m.SchemaVersion != CurrentSchemaVersion {
		return fmt.Errorf("%w: schemaVersion %d is not supported (want %d)", ErrInvalid, m.SchemaVersion, CurrentSchemaVersion)
	}
	if m.Generated.IsZero() {
		return fmt.Errorf("%w: generated time missing", ErrInvalid)
	}
	seen := make(map[string]int, len(m.Updates))
	for i, u := range m.Updates {
		if err := u.validate(); err != nil {
			return fmt.Errorf("%w: updates[%d] (guid %q): %v", ErrInvalid, i, u.GUID, err)
		}
		g := strings.ToLower(u.GUID)
		if j, dup := seen[g]; dup {
			return fmt.Errorf("%w: updates[%d]: guid %q duplicates updates[%d]", ErrInvalid, i, u.GUID, j)
		}
		seen[g] = i
	}
	return nil
}

func (u Update) validate() error {
	if !validGUID(u.GUID) {
		return errors.New("guid: want a canonical 8-4-4-4-12 hex GUID")
	}
	if strings.TrimSpace(u.Name) == "" {
		return errors.New("name: empty")
	}
	if u.Kind != KindUpdate && u.Kind != KindHotfix {
		return fmt.Errorf("kind %q: want %q or %q", u.Kind, KindUpdate, KindHotfix)
	}
	if _, err := ParseVersion(u.Version); err != nil {
		return err
	}
	if len(u.ApplicableFrom) == 0 {
		return errors.New("applicableFrom: empty")
	}
	from := make(map[Version]bool, len(u.ApplicableFrom))
	for _, s := range u.ApplicableFrom {
		v, err := ParseVersion(s)
		if err != nil {
			return fmt.Errorf("applicableFrom: %w", err)
		}
		if from[v] {
			return fmt.Errorf("applicableFrom: %s listed twice", v)
		}
		from[v] = true
	}
	pu, err := url.Parse(u.PayloadURL)
	if err != nil || pu.Scheme != "https" || pu.Host == "" || pu.User != nil || pu.Fragment != "" {
		// https only: the payload's integrity rests on the SHA-256, but its confidentiality and
		// the gateway's SNI check rest on TLS.
		return fmt.Errorf("payloadUrl %q: want an absolute https URL without user info or fragment", u.PayloadURL)
	}
	if u.Size <= 0 {
		return fmt.Errorf("size %d: must be positive", u.Size)
	}
	if !validSHA256(u.SHA256) {
		return fmt.Errorf("sha256 %q: want 64 lowercase hex characters", u.SHA256)
	}
	if u.Published.IsZero() {
		return errors.New("published time missing")
	}
	return nil
}

// validGUID accepts only 8-4-4-4-12 hex digits, so a GUID is always safe as a path element.
func validGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !isHex(c) {
			return false
		}
	}
	return true
}

func validSHA256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Applicable returns the updates that install on top of installed, oldest version first (the
// order in which they would be applied), ties broken by kind (update before hotfix) and GUID.
//
// An update applies when installed is listed in its ApplicableFrom (numerically) and its Version
// is newer than installed (a listed but not newer entry is already installed or a downgrade).
// Hotfixes are skipped unless includeHotfixes. Entries whose versions do not parse are skipped;
// manifests returned by Verify never have any. The returned updates are copies.
func (m Manifest) Applicable(installed Version, includeHotfixes bool) []Update {
	type cand struct {
		v Version
		u Update
	}
	var out []cand
	for _, u := range m.Updates {
		if u.Kind == KindHotfix && !includeHotfixes {
			continue
		}
		if u.Kind != KindUpdate && u.Kind != KindHotfix {
			continue
		}
		v, err := ParseVersion(u.Version)
		if err != nil || v.Compare(installed) <= 0 {
			continue
		}
		applies := false
		for _, s := range u.ApplicableFrom {
			if f, err := ParseVersion(s); err == nil && f == installed {
				applies = true
				break
			}
		}
		if !applies {
			continue
		}
		u.ApplicableFrom = slices.Clone(u.ApplicableFrom)
		out = append(out, cand{v, u})
	}
	slices.SortFunc(out, func(a, b cand) int {
		if c := a.v.Compare(b.v); c != 0 {
			return c
		}
		if a.u.Kind != b.u.Kind {
			if a.u.Kind == KindUpdate {
				return -1
			}
			return 1
		}
		return strings.Compare(strings.ToLower(a.u.GUID), strings.ToLower(b.u.GUID))
	})
	res := make([]Update, len(out))
	for i, c := range out {
		res[i] = c.u
	}
	return res
}
