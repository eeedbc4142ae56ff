package manifest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

// testKey is deterministic so fuzz corpora stay meaningful across runs.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

var (
	t0      = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	sumA    = strings.Repeat("ab", 32)
	sumB    = strings.Repeat("0f", 32)
	guidUpd = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
	guidHF  = "9a7c1b52-6d0e-4c8f-b1a2-55e0c3d4f601"
)

func update(guid, kind, version string, from ...string) Update {
	return Update{
		GUID:           guid,
		Name:           "Configuration Manager " + version,
		Kind:           kind,
		Version:        version,
		ApplicableFrom: from,
		PayloadURL:     "https://configmgrbits.cdn.manage.microsoft.com/release/" + version + "/" + guid + "/" + guid + ".cab",
		Size:           1234,
		SHA256:         sumA,
		Published:      t0,
		Description:    "test <&> update",
	}
}

func validManifest() Manifest {
	return Manifest{
		SchemaVersion: CurrentSchemaVersion,
		Generated:     t0,
		Updates: []Update{
			update(guidUpd, KindUpdate, "5.00.9140.1000", "5.00.9132.1000", "5.00.9135.1000"),
			update(guidHF, KindHotfix, "5.00.9135.1008", "5.00.9135.1000"),
		},
	}
}

// signRaw signs arbitrary manifest bytes, to test what Verify does with content Sign would
// refuse to produce.
func signRaw(t testing.TB, body string, key ed25519.PrivateKey) []byte {
	t.Helper()
	out, err := json.Marshal(Signed{Manifest: json.RawMessage(body), KeyID: "k", Signature: ed25519.Sign(key, []byte(body))})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustSign(t testing.TB, m Manifest, key ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := Sign(m, key, "")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	key := testKey(1)
	m := validManifest()
	data := mustSign(t, m, key)
	got, err := Verify(data, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(m)
	b, _ := json.Marshal(got)
	if !bytes.Equal(a, b) {
		t.Fatalf("round trip differs:\n%s\n%s", a, b)
	}
	var env Signed
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	if want := KeyIDOf(key.Public().(ed25519.PublicKey)); env.KeyID != want {
		t.Fatalf("default key id %q, want %q", env.KeyID, want)
	}
	// Sign and Verify agree on the signed bytes even with characters json escapes.
	if !bytes.Contains(env.Manifest, []byte(`\u003c`)) {
		t.Fatalf("expected HTML-escaped description in %s", env.Manifest)
	}
	if data2, _ := Sign(m, key, "mykey"); !bytes.Contains(data2, []byte(`"keyId":"mykey"`)) {
		t.Fatalf("explicit key id not used: %s", data2)
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	key := testKey(1)
	pub := key.Public().(ed25519.PublicKey)
	good := mustSign(t, validManifest(), key)
	goodBody, _ := json.Marshal(validManifest())

	// replaceBody signs validManifest's JSON after a textual substitution.
	replaceBody := func(old, new string) []byte {
		s := string(goodBody)
		if !strings.Contains(s, old) {
			t.Fatalf("fixture lacks %q", old)
		}
		return signRaw(t, strings.Replace(s, old, new, 1), key)
	}
	flipSig := func() []byte {
		var env Signed
		if err := json.Unmarshal(good, &env); err != nil {
			t.Fatal(err)
		}
		env.Signature[0] ^= 1
		out, _ := json.Marshal(env)
		return out
	}
	tamper := func() []byte {
		// Change the manifest but keep the old signature.
		return bytes.Replace(good, []byte(`"size":1234`), []byte(`"size":1235`), 1)
	}
	dupUpdates := func() []byte {
		m := validManifest()
		m.Updates[1].GUID = strings.ToUpper(m.Updates[0].GUID)
		b, _ := json.Marshal(m)
		return signRaw(t, string(b), key)
	}

	tests := []struct {
		name string
		data []byte
		pub  ed25519.PublicKey
		want error
	}{
		{"bad signature", flipSig(), pub, ErrSignature},
		{"wrong key", good, testKey(2).Public().(ed25519.PublicKey), ErrSignature},
		{"tampered manifest", tamper(), pub, ErrSignature},
		{"short signature", []byte(`{"manifest":{},"keyId":"k","signature":"AAAA"}`), pub, ErrSignature},
		{"no signature", []byte(`{"manifest":{},"keyId":"k"}`), pub, ErrSignature},
		{"no manifest", []byte(`{"keyId":"k","signature":"AAAA"}`), pub, ErrMalformed},
		{"unknown envelope field", bytes.Replace(good, []byte(`{"manifest"`), []byte(`{"extra":1,"manifest"`), 1), pub, ErrMalformed},
		{"unknown manifest field", replaceBody(`"schemaVersion":1`, `"schemaVersion":1,"extra":true`), pub, ErrMalformed},
		{"known key at wrong level", replaceBody(`"schemaVersion":1`, `"schemaVersion":1,"guid":"x"`), pub, ErrMalformed},
		{"wrong-case key", replaceBody(`"guid"`, `"GUID"`), pub, ErrMalformed},
		{"duplicate key", replaceBody(`"size":1234`, `"size":1234,"size":1`), pub, ErrMalformed},
		{"duplicate envelope key", bytes.Replace(good, []byte(`{"manifest"`), []byte(`{"keyId":"x","manifest"`), 1), pub, ErrMalformed},
		{"trailing garbage", append(bytes.Clone(good), " x"...), pub, ErrMalformed},
		{"second value", append(bytes.Clone(good), "{}"...), pub, ErrMalformed},
		{"wrong type", replaceBody(`"size":1234`, `"size":"1234"`), pub, ErrMalformed},
		{"duplicate GUIDs", dupUpdates(), pub, ErrInvalid},
		{"bad sha256 hex", replaceBody(sumA, strings.Repeat("zz", 32)), pub, ErrInvalid},
		{"uppercase sha256", replaceBody(sumA, strings.ToUpper(sumA)), pub, ErrInvalid},
		{"short sha256", replaceBody(sumA, sumA[:62]), pub, ErrInvalid},
		{"schema version", replaceBody(`"schemaVersion":1`, `"schemaVersion":2`), pub, ErrInvalid},
		{"path traversal guid", replaceBody(`"guid":"`+guidUpd, `"guid":"../../../../../etc/passwd/0000000000`), pub, ErrInvalid},
		{"bad kind", replaceBody(`"kind":"update"`, `"kind":"feature"`), pub, ErrInvalid},
		{"bad version", replaceBody(`"version":"5.00.9140.1000"`, `"version":"5.00.9140"`), pub, ErrInvalid},
		{"empty applicableFrom", replaceBody(`"applicableFrom":["5.00.9135.1000"]`, `"applicableFrom":[]`), pub, ErrInvalid},
		{"http payload", replaceBody(`"payloadUrl":"https:`, `"payloadUrl":"http:`), pub, ErrInvalid},
		{"zero size", replaceBody(`"size":1234`, `"size":0`), pub, ErrInvalid},
		{"missing generated", replaceBody(`"generated":"2026-03-01T00:00:00Z",`, ``), pub, ErrInvalid},
		{"null manifest", signRaw(t, `null`, key), pub, ErrInvalid},
		{"too large", append(bytes.Clone(good), bytes.Repeat([]byte(" "), MaxSize)...), pub, ErrTooLarge},
		{"empty input", nil, pub, ErrMalformed},
		{"not JSON", []byte("MSCF\x00\x00\x00\x00"), pub, ErrMalformed},
		{"deep nesting", []byte(strings.Repeat("[", 100) + strings.Repeat("]", 100)), pub, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.data, tc.pub)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify: err = %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("bad public key size", func(t *testing.T) {
		if _, err := Verify(good, pub[:31]); err == nil {
			t.Fatal("short public key accepted")
		}
	})
}

func TestSignRejectsInvalid(t *testing.T) {
	t.Parallel()
	key := testKey(1)
	m := validManifest()
	m.Updates[0].SHA256 = "nothex"
	if _, err := Sign(m, key, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Sign invalid manifest: %v", err)
	}
	if _, err := Sign(validManifest(), key[:10], ""); err == nil {
		t.Fatal("Sign with short key succeeded")
	}
	empty := Manifest{SchemaVersion: 1, Generated: t0}
	data := mustSign(t, empty, key)
	if !bytes.Contains(data, []byte(`"updates":[]`)) {
		t.Fatalf("empty manifest encodes updates as %s", data)
	}
	if _, err := Verify(data, key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
}

func TestApplicable(t *testing.T) {
	t.Parallel()
	m := Manifest{SchemaVersion: 1, Generated: t0, Updates: []Update{
		update("00000000-0000-0000-0000-000000000001", KindUpdate, "5.00.9140.1000", "5.00.9132.1000", "5.00.9135.1000"),
		update("00000000-0000-0000-0000-000000000002", KindHotfix, "5.00.9135.1008", "5.00.9135.1000"),
		update("00000000-0000-0000-0000-000000000003", KindHotfix, "5.00.9132.1011", "5.00.9132.1000"),
		update("00000000-0000-0000-0000-000000000004", KindUpdate, "5.00.9135.1000", "5.00.9132.1000", "5.00.9135.1000"), // already installed
		update("00000000-0000-0000-0000-000000000005", KindUpdate, "5.00.9145.1000", "5.0.9135.1000"),                    // numeric match
		update("00000000-0000-0000-0000-000000000006", KindHotfix, "5.00.9140.1004", "5.00.9140.1000"),
		update("00000000-0000-0000-0000-000000000000", KindUpdate, "5.00.9140.1000", "5.00.9135.1000"), // same version: GUID order
	}}
	ids := func(us []Update) []string {
		var s []string
		for _, u := range us {
			s = append(s, u.GUID[len(u.GUID)-1:])
		}
		return s
	}
	tests := []struct {
		installed string
		hotfixes  bool
		want      string
	}{
		{"5.00.9135.1000", true, "2,0,1,5"},
		{"5.00.9135.1000", false, "0,1,5"},
		{"5.00.9132.1000", true, "3,4,1"},
		{"5.00.9132.1000", false, "4,1"},
		{"5.00.9140.1000", true, "6"},
		{"5.00.9140.1000", false, ""},
		{"5.00.9999.1000", true, ""},
	}
	for _, tc := range tests {
		got := strings.Join(ids(m.Applicable(MustParseVersion(tc.installed), tc.hotfixes)), ",")
		if got != tc.want {
			t.Errorf("Applicable(%s, %v) = %q, want %q", tc.installed, tc.hotfixes, got, tc.want)
		}
	}
	// The result does not alias the manifest.
	got := m.Applicable(MustParseVersion("5.00.9135.1000"), false)
	got[0].ApplicableFrom[0] = "mutated"
	if m.Updates[6].ApplicableFrom[0] == "mutated" {
		t.Fatal("Applicable result aliases the manifest")
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	key := testKey(3)
	pub := key.Public().(ed25519.PublicKey)
	pubPEM, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pubPEM, []byte("-----BEGIN PUBLIC KEY-----")) {
		t.Fatalf("public PEM: %s", pubPEM)
	}
	privPEM, err := MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})

	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"pem", pubPEM, true},
		{"pem with whitespace", append(append([]byte("\n\n"), pubPEM...), "\n\n"...), true},
		{"raw", []byte(pub), true},
		{"ecdsa key", ecPEM, false},
		{"private key block", privPEM, false},
		{"two blocks", append(bytes.Clone(pubPEM), pubPEM...), false},
		{"text before", append([]byte("hello\n"), pubPEM...), false},
		{"garbage", []byte("not a key"), false},
		{"31 bytes", []byte(pub[:31]), false},
		{"empty", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadPublicKey(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("LoadPublicKey: err=%v, want ok=%v", err, tc.ok)
			}
			if tc.ok && !got.Equal(pub) {
				t.Fatal("loaded a different key")
			}
		})
	}

	gotKey, err := LoadPrivateKey(privPEM)
	if err != nil || !gotKey.Equal(key) {
		t.Fatalf("LoadPrivateKey: %v", err)
	}
	if _, err := LoadPrivateKey(pubPEM); err == nil {
		t.Fatal("LoadPrivateKey accepted a public key")
	}
	if id := KeyIDOf(pub); !strings.HasPrefix(id, "ed25519:") || len(id) != len("ed25519:")+16 {
		t.Fatalf("KeyIDOf = %q", id)
	}
}

func FuzzVerify(f *testing.F) {
	key := testKey(1)
	pub := key.Public().(ed25519.PublicKey)
	good := mustSign(f, validManifest(), key)
	f.Add(good)
	f.Add(mustSign(f, Manifest{SchemaVersion: 1, Generated: t0}, key))
	f.Add([]byte(`{"manifest":{},"keyId":"k","signature":""}`))
	f.Add([]byte(`{"manifest":null}`))
	f.Add([]byte(`[[[[{"a":1}]]]]`))
	f.Add(bytes.Replace(good, []byte(`"size":1234`), []byte(`"size":-1`), 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Verify(data, pub)
		if err != nil {
			return
		}
		// Whatever verifies re-signs, verifies again and encodes identically.
		again, err := Sign(m, key, "")
		if err != nil {
			t.Fatalf("verified manifest does not re-sign: %v", err)
		}
		m2, err := Verify(again, pub)
		if err != nil {
			t.Fatalf("re-signed manifest does not verify: %v", err)
		}
		a, _ := json.Marshal(m)
		b, _ := json.Marshal(m2)
		if !bytes.Equal(a, b) {
			t.Fatalf("round trip differs:\n%s\n%s", a, b)
		}
	})
}
