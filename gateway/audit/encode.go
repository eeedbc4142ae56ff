package audit

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJSON appends r as encoding/json would marshal it, byte for byte (FuzzAppendJSON holds
// the two together), without reflection: every tunnel writes one record, and json.Marshal was
// the gateway's largest cost per CONNECT after the system calls. ok is false for what
// json.Marshal would refuse (a year outside 0–9999, a duration that is not a finite number).
func (r *Record) appendJSON(b []byte) (_ []byte, ok bool) {
	if y := r.Time.Year(); y < 0 || y > 9999 || math.IsNaN(r.DurationMS) || math.IsInf(r.DurationMS, 0) {
		return b, false
	}
	b = append(b, `{"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "conn_id", r.ConnID, false)
	b = appendField(b, "client", r.Client, false)
	b = appendField(b, "user", r.User, true)
	b = appendField(b, "method", r.Method, false)
	b = appendField(b, "host", r.Host, false)
	b = append(b, `,"port":`...)
	b = strconv.AppendUint(b, uint64(r.Port), 10)
	b = appendField(b, "target", r.Target, true)
	b = appendField(b, "address", r.Address, true)
	b = appendField(b, "group", r.Group, true)
	b = appendField(b, "pattern", r.Pattern, true)
	b = appendField(b, "mode", r.Mode, true)
	b = appendField(b, "decision", r.Decision, false)
	b = appendField(b, "reason", r.Reason, true)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = appendField(b, "sni", r.SNI, true)
	b = append(b, `,"bytes_up":`...)
	b = strconv.AppendInt(b, r.BytesUp, 10)
	b = append(b, `,"bytes_down":`...)
	b = strconv.AppendInt(b, r.BytesDown, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendFloat(b, r.DurationMS)
	b = appendField(b, "event", r.Event, false)
	return append(b, '}'), true
}

func appendField(b []byte, name, value string, omitEmpty bool) []byte {
	if omitEmpty && value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does with HTML escaping on (its default): control
// characters, <, >, & and U+2028/U+2029 escaped, invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendFloat formats f as encoding/json does (ES6 number formatting).
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
