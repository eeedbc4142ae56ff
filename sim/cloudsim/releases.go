package cloudsim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/scpgate/scpgate/manifest"
)

// Release is an update the cloud publishes. The cloud makes up its payload (deterministic
// pseudo-random bytes derived from the GUID) and puts the payload's size, SHA-256 and URL into
// the manifest, so a Release carries only what a test wants to choose.
type Release struct {
	GUID           string
	Name           string
	Kind           string // manifest.KindUpdate or manifest.KindHotfix
	Version        string
	ApplicableFrom []string
	// Size is the payload size in bytes; 0 derives one between 256 KiB and 2 MiB from the GUID.
	Size        int64
	Published   time.Time
	Description string
}

const (
	minDerivedSize = 256 << 10
	maxDerivedSize = 2 << 20
	// MaxPayloadSize bounds Release.Size: payloads are held in memory.
	MaxPayloadSize = 64 << 20
)

// DefaultInstalledVersion is the site version the default releases are arranged around
// (Configuration Manager 2503).
const DefaultInstalledVersion = "5.00.9135.1000"

// DefaultReleases is a small fictional catalogue around DefaultInstalledVersion. Applicable to
// 5.00.9135.1000: the 5.00.9140.1000 update and, with hotfixes, the 5.00.9135.1008 hotfix. Not
// applicable: the release already installed, an older release, a hotfix for another build and a
// hotfix for the next release. Version numbers and GUIDs are made up for the simulation.
func DefaultReleases() []Release {
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	return []Release{
		{
			GUID: "2d7523f1-d03f-4fc8-9a36-06c1ec6e7d29", Name: "Configuration Manager 2409 (simulated)",
			Kind: manifest.KindUpdate, Version: "5.00.9132.1000",
			ApplicableFrom: []string{"5.00.9122.1000", "5.00.9128.1000"},
			Size:           300 << 10, Published: day(2024, 12, 2),
			Description: "Older release; not applicable to 5.00.9135.1000.",
		},
		{
			GUID: "61f62ec5-34a7-4119-9ed5-2a666beaf13d", Name: "Hotfix rollup for Configuration Manager 2409 (simulated)",
			Kind: manifest.KindHotfix, Version: "5.00.9132.1011",
			ApplicableFrom: []string{"5.00.9132.1000"},
			Size:           280 << 10, Published: day(2025, 2, 10),
			Description: "Hotfix for another build; not applicable to 5.00.9135.1000.",
		},
		{
			GUID: "a325d9f8-389c-4caf-aea6-1ef7ea832314", Name: "Configuration Manager 2503 (simulated)",
			Kind: manifest.KindUpdate, Version: "5.00.9135.1000",
			ApplicableFrom: []string{"5.00.9128.1000", "5.00.9132.1000"},
			Size:           1 << 20, Published: day(2025, 4, 7),
			Description: "The installed release; not applicable to itself.",
		},
		{
			GUID: "81ed69d4-a6e9-4ab7-a911-fe3343806b31", Name: "Hotfix rollup for Configuration Manager 2503 (simulated)",
			Kind: manifest.KindHotfix, Version: "5.00.9135.1008",
			ApplicableFrom: []string{"5.00.9135.1000"},
			Size:           384 << 10, Published: day(2025, 6, 16),
			Description: "Applicable to 5.00.9135.1000 when hotfixes are included.",
		},
		{
			GUID: "d8426602-cfde-4854-9761-60ce34c5c362", Name: "Configuration Manager 2509 (simulated)",
			Kind: manifest.KindUpdate, Version: "5.00.9140.1000",
			ApplicableFrom: []string{"5.00.9132.1000", "5.00.9135.1000"},
			Size:           (2 << 20) - 4321, Published: day(2025, 10, 6),
			Description: "Applicable to 5.00.9135.1000.",
		},
		{
			GUID: "8dc9d39b-66d3-41d3-b218-d8b99a2725d5", Name: "Hotfix for Configuration Manager 2509 (simulated)",
			Kind: manifest.KindHotfix, Version: "5.00.9140.1004",
			ApplicableFrom: []string{"5.00.9140.1000"},
			Size:           0, Published: day(2025, 11, 3),
			Description: "Hotfix for the next release; not applicable to 5.00.9135.1000.",
		},
	}
}

// payload is one generated payload and its manifest entry.
type payload struct {
	update manifest.Update
	data   []byte
}

func payloadSeed(guid string) [32]byte {
	return sha256.Sum256([]byte("scpgate cloudsim payload " + strings.ToLower(guid)))
}

// DerivedSize is the payload size the cloud picks for a Release with Size 0.
func DerivedSize(guid string) int64 {
	s := payloadSeed(guid)
	return minDerivedSize + int64(binary.BigEndian.Uint64(s[:8])%uint64(maxDerivedSize-minDerivedSize))
}

// PayloadBytes returns the payload the cloud serves for guid with the given size: the same bytes
// on every run, so tests and demos can be compared across runs.
func PayloadBytes(guid string, size int64) []byte {
	buf := make([]byte, size)
	rand.NewChaCha8(payloadSeed(guid)).Read(buf)
	return buf
}

// PayloadPath is the CDN path of a payload: /release/<version>/<GUID>/<GUID>.cab. The .cab name
// follows Microsoft's URL layout; the content is not a CAB.
func PayloadPath(version, guid string) string {
	return "/release/" + version + "/" + guid + "/" + guid + ".cab"
}

func buildPayload(r Release) (*payload, error) {
	size := r.Size
	if size == 0 {
		size = DerivedSize(r.GUID)
	}
	if size < 0 || size > MaxPayloadSize {
		return nil, fmt.Errorf("cloudsim: release %s: size %d out of range (1..%d)", r.GUID, size, MaxPayloadSize)
	}
	data := PayloadBytes(r.GUID, size)
	sum := sha256.Sum256(data)
	u := manifest.Update{
		GUID:           r.GUID,
		Name:           r.Name,
		Kind:           r.Kind,
		Version:        r.Version,
		ApplicableFrom: append([]string(nil), r.ApplicableFrom...),
		PayloadURL:     "https://" + HostCDN + PayloadPath(r.Version, r.GUID),
		Size:           size,
		SHA256:         hex.EncodeToString(sum[:]),
		Published:      r.Published.UTC(),
		Description:    r.Description,
	}
	return &payload{update: u, data: data}, nil
}
