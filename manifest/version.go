package manifest

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a Configuration Manager site version such as 5.00.9135.1000
// (major.minor.build.revision). Versions compare numerically, component by component.
type Version struct {
	Major, Minor, Build, Revision uint32
}

// maxVersionLen bounds the input so a hostile manifest cannot make parsing expensive.
const maxVersionLen = 64

// ParseVersion parses exactly four dot-separated decimal components, each fitting in 32 bits.
// Leading zeros are allowed because ConfigMgr writes the minor version as "00"; signs, spaces
// and empty components are not.
func ParseVersion(s string) (Version, error) {
	if len(s) > maxVersionLen {
		return Version{}, fmt.Errorf("manifest: version %.20q...: too long", s)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return Version{}, fmt.Errorf("manifest: version %q: want 4 dot-separated numbers", s)
	}
	var n [4]uint32
	for i, p := range parts {
		if p == "" {
			return Version{}, fmt.Errorf("manifest: version %q: empty component", s)
		}
		for j := 0; j < len(p); j++ {
			if p[j] < '0' || p[j] > '9' {
				return Version{}, fmt.Errorf("manifest: version %q: non-digit in component %d", s, i+1)
			}
		}
		u, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return Version{}, fmt.Errorf("manifest: version %q: component %d out of range", s, i+1)
		}
		n[i] = uint32(u)
	}
	return Version{Major: n[0], Minor: n[1], Build: n[2], Revision: n[3]}, nil
}

// MustParseVersion is ParseVersion for constants in tests and defaults; it panics on error.
func MustParseVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

// String formats the version the way ConfigMgr does, with a two-digit minor ("5.00.9135.1000").
func (v Version) String() string {
	return fmt.Sprintf("%d.%02d.%d.%d", v.Major, v.Minor, v.Build, v.Revision)
}

// IsZero reports whether v is the zero version (never a real site version).
func (v Version) IsZero() bool { return v == Version{} }

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than o.
func (v Version) Compare(o Version) int {
	a := [4]uint32{v.Major, v.Minor, v.Build, v.Revision}
	b := [4]uint32{o.Major, o.Minor, o.Build, o.Revision}
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}

// MarshalText lets a Version appear in configuration files and JSON as its string form.
func (v Version) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText parses the string form.
func (v *Version) UnmarshalText(b []byte) error {
	p, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}
