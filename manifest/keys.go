package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// PEM block types. Public keys use the standard PKIX "PUBLIC KEY" block (what `openssl pkey
// -pubout` writes for Ed25519) and private keys PKCS#8 "PRIVATE KEY", so operators can inspect
// and generate them with stock tools.
const (
	pemPublicKey  = "PUBLIC KEY"
	pemPrivateKey = "PRIVATE KEY"
)

// KeyIDOf is the key id Sign records when none is given: "ed25519:" and the first 8 bytes of
// the SHA-256 of the raw public key, in hex. It only helps humans and logs tell keys apart;
// Verify never trusts it.
func KeyIDOf(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" (PKIX) block.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("manifest: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der}), nil
}

// LoadPublicKey accepts either the raw 32-byte key or exactly one PEM "PUBLIC KEY" (PKIX) block
// holding an Ed25519 key (surrounding whitespace allowed, nothing else).
func LoadPublicKey(pemOrRaw []byte) (ed25519.PublicKey, error) {
	if len(pemOrRaw) == ed25519.PublicKeySize && !bytes.HasPrefix(pemOrRaw, []byte("-----")) {
		return ed25519.PublicKey(bytes.Clone(pemOrRaw)), nil
	}
	der, err := singlePEM(pemOrRaw, pemPublicKey)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("manifest: public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("manifest: public key is %T, want Ed25519", k)
	}
	return pub, nil
}

// MarshalPrivateKey encodes key as a PEM "PRIVATE KEY" (PKCS#8) block.
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("manifest: private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// LoadPrivateKey reads exactly one PEM "PRIVATE KEY" (PKCS#8) block holding an Ed25519 key.
func LoadPrivateKey(data []byte) (ed25519.PrivateKey, error) {
	der, err := singlePEM(data, pemPrivateKey)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("manifest: private key: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("manifest: private key is %T, want Ed25519", k)
	}
	return key, nil
}

// singlePEM insists on one block of the wanted type and nothing but whitespace around it, so a
// file with two keys cannot silently mean the first one.
func singlePEM(data []byte, typ string) ([]byte, error) {
	// pem.Decode skips any text before the block; we do not.
	if !bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("manifest: want a PEM %q block", typ)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("manifest: no PEM %q block found", typ)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("manifest: PEM block is %q, want %q", block.Type, typ)
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("manifest: PEM block has headers (encrypted keys are not supported)")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("manifest: data after the PEM block")
	}
	return block.Bytes, nil
}
