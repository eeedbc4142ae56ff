package auditreport

import (
	"math"
	"math/bits"
)

// hllPrecision is the HyperLogLog precision: 2^12 one-byte registers (4 KiB), a standard error
// of 1.04/sqrt(4096) ≈ 1.6 %.
const hllPrecision = 12

// clientSet counts distinct client addresses in bounded memory: exactly (a set) up to limit
// members, then with a HyperLogLog sketch seeded with the exact members. Count says which.
type clientSet struct {
	exact map[string]struct{}
	regs  []uint8 // non-nil once the set went past its limit
}

func (s *clientSet) add(client string, limit int) {
	if client == "" {
		return // a record without a client address names nobody
	}
	if s.regs == nil {
		if _, ok := s.exact[client]; ok {
			return
		}
		if len(s.exact) < limit {
			if s.exact == nil {
				s.exact = make(map[string]struct{})
			}
			s.exact[client] = struct{}{}
			return
		}
		s.regs = make([]uint8, 1<<hllPrecision)
		for c := range s.exact {
			s.addHash(hashString(c))
		}
		s.exact = nil
	}
	s.addHash(hashString(client))
}

func (s *clientSet) addHash(h uint64) {
	idx := h >> (64 - hllPrecision)
	w := h<<hllPrecision | 1<<(hllPrecision-1) // the guard bit bounds rho
	if rho := uint8(bits.LeadingZeros64(w) + 1); rho > s.regs[idx] {
		s.regs[idx] = rho
	}
}

// count returns the number of distinct clients and whether it is an estimate.
func (s *clientSet) count() (int64, bool) {
	if s.regs == nil {
		return int64(len(s.exact)), false
	}
	m := float64(len(s.regs))
	sum, zeros := 0.0, 0
	for _, r := range s.regs {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	est := 0.7213 / (1 + 1.079/m) * m * m / sum
	if est <= 2.5*m && zeros > 0 {
		est = m * math.Log(m/float64(zeros)) // linear counting for small cardinalities
	}
	return int64(math.Round(est)), true
}

// hashString is FNV-1a followed by the SplitMix64 finaliser: stable across runs (reports are
// reproducible) and well mixed in the high bits the sketch indexes by.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
