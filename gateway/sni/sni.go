// Package sni reads the TLS ClientHello a client sends first inside a CONNECT tunnel, so the
// gateway can compare its server_name with the CONNECT host (README.md, "What a client gets").
//
// Nothing is decrypted and nothing is consumed on the client's behalf: ReadClientHello returns
// every byte it read so the caller forwards them upstream unchanged, and it reads exactly the
// records that carry the ClientHello, never more, so the caller can splice the rest of the stream.
//
// The parser is deliberately strict where leniency would let a client make the gateway and the
// upstream server disagree about the name (two host_name entries, two server_name extensions,
// bytes after the ClientHello): the gateway must check the same name the server will use.
package sni

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

var (
	// ErrNotTLS means the first bytes are not a TLS handshake record: plain HTTP, SSH, an
	// SSLv2-compatible hello (no TLS 1.2+ server accepts one), or anything else.
	ErrNotTLS = errors.New("sni: not a TLS handshake")
	// ErrNoServerName means a well-formed ClientHello without a host_name in server_name.
	ErrNoServerName = errors.New("sni: ClientHello has no server name")
	// ErrTooLarge means the ClientHello (with its record headers) exceeds the size limit.
	ErrTooLarge = errors.New("sni: ClientHello too large")
	// ErrMalformed means the bytes claim to be a TLS handshake but do not form a valid
	// ClientHello, or its server name is not a valid host name.
	ErrMalformed = errors.New("sni: malformed ClientHello")
	// ErrIPServerName means the server name is an IP literal, which RFC 6066 §3 forbids.
	// Errors carrying it also match ErrMalformed, so callers that do not care can test one.
	ErrIPServerName = errors.New("sni: server name is an IP literal")
)

// DefaultMaxSize is the limit used when ReadClientHello gets maxSize <= 0: one full 16 KiB
// handshake message plus room for the headers of the records it is split into. Real
// ClientHellos are 0.5–2 KiB (about 1.8 KiB with a post-quantum key share).
const DefaultMaxSize = 1<<14 + 1<<10

const (
	recordHeaderLen    = 5
	handshakeHeaderLen = 4
	maxPlaintext       = 1 << 14 // RFC 8446 §5.1: a plaintext record fragment never exceeds 2^14

	recordTypeHandshake       = 22
	handshakeTypeClientHello  = 1
	extServerName             = 0
	extALPN                   = 16
	extSupportedVersions      = 43
	serverNameTypeHostName    = 0
	maxHostNameLen            = 253
	maxLabelLen               = 63
	maxSessionIDLen           = 32
	tlsRandomLen              = 32
	protocolVersionMajor      = 3
	maxKnownProtocolVersionLo = 4 // 3.4 = TLS 1.3
)

// Hello is what the gateway needs from a ClientHello.
type Hello struct {
	// ServerName is the host_name of the server_name extension, lowercased, with one trailing
	// dot removed. It is empty only together with ErrNoServerName.
	ServerName string
	// Versions lists the supported_versions extension in the client's order, or the
	// ClientHello's legacy_version alone when the extension is absent (TLS 1.2 and older).
	// GREASE values (RFC 8701) are left out: they carry no information.
	Versions []uint16
	// ALPN lists the application protocols offered, in the client's order; nil if none.
	ALPN []string
}

// ReadClientHello reads the TLS record(s) carrying the ClientHello from r and parses it.
//
// raw holds every byte read from r, also when err != nil, so the caller can still forward or
// log them. ReadClientHello reads exactly the records that make up the ClientHello (each read
// asks for at most the rest of the current record header or body), so after it returns r is
// positioned at the first byte after them. A ClientHello split over several handshake records is
// reassembled. maxSize bounds len(raw), record headers included; maxSize <= 0 means
// DefaultMaxSize. Allocation is bounded by maxSize because every length is checked against it
// before the bytes are read.
//
// Errors: ErrNotTLS, ErrTooLarge, ErrMalformed (possibly with ErrIPServerName) and
// ErrNoServerName (h is filled except ServerName) match with errors.Is. Read errors from r are
// returned unwrapped: io.EOF if r ended before the first byte, io.ErrUnexpectedEOF if it ended
// inside the ClientHello, or r's own error (a deadline, a reset).
func ReadClientHello(r io.Reader, maxSize int) (raw []byte, h Hello, err error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	maxSize = max(maxSize, recordHeaderLen) // a smaller limit could never hold a header

	// Read the first header with ReadAtLeast(1) rather than ReadFull(5): a client that sends
	// something other than TLS is recognised by its first byte, without waiting for more.
	var hdr [recordHeaderLen]byte
	n, err := io.ReadAtLeast(r, hdr[:], 1)
	if err != nil {
		return nil, Hello{}, err // io.EOF: the client closed without sending anything
	}
	if !looksLikeRecordStart(hdr[:n]) {
		return append([]byte(nil), hdr[:n]...), Hello{}, ErrNotTLS
	}
	if n < recordHeaderLen {
		m, err := io.ReadFull(r, hdr[n:])
		n += m
		if err != nil {
			return append([]byte(nil), hdr[:n]...), Hello{}, unexpectedEOF(err)
		}
		if !looksLikeRecordStart(hdr[:]) {
			return append([]byte(nil), hdr[:]...), Hello{}, ErrNotTLS
		}
	}
	// Size raw for the usual single-record hello so it is allocated once.
	first := recordHeaderLen + (int(hdr[3])<<8 | int(hdr[4]))
	raw = append(make([]byte, 0, min(first, maxSize)), hdr[:]...)

	var (
		hsHeader [handshakeHeaderLen]byte // the handshake header may itself span records
		hsRead   int                      // handshake bytes received so far
		hsTotal  = -1                     // full handshake message length, once known
		records  int
	)
	for {
		// raw ends with a complete record header.
		h5 := raw[len(raw)-recordHeaderLen:]
		if records > 0 && (h5[0] != recordTypeHandshake || h5[1] != protocolVersionMajor) {
			// RFC 8446 §5.1: handshake messages must not be interleaved with other records.
			return raw, Hello{}, fmt.Errorf("%w: record type %d inside the ClientHello", ErrMalformed, h5[0])
		}
		recLen := int(h5[3])<<8 | int(h5[4])
		if recLen == 0 || recLen > maxPlaintext {
			return raw, Hello{}, fmt.Errorf("%w: record length %d", ErrMalformed, recLen)
		}
		if len(raw)+recLen > maxSize {
			return raw, Hello{}, ErrTooLarge
		}
		start := len(raw)
		raw = grow(raw, recLen)
		m, err := io.ReadFull(r, raw[start:start+recLen])
		raw = raw[:start+m]
		if err != nil {
			return raw, Hello{}, unexpectedEOF(err)
		}
		records++
		frag := raw[start:]

		if hsRead < handshakeHeaderLen {
			k := copy(hsHeader[hsRead:], frag)
			if hsRead+k == handshakeHeaderLen {
				if hsHeader[0] != handshakeTypeClientHello {
					return raw, Hello{}, fmt.Errorf("%w: first handshake message has type %d, not ClientHello", ErrMalformed, hsHeader[0])
				}
				hsTotal = handshakeHeaderLen + (int(hsHeader[1])<<16 | int(hsHeader[2])<<8 | int(hsHeader[3]))
				// Fail now rather than after reading up to maxSize bytes: the handshake bytes
				// not yet received need at least their own room in raw.
				if len(raw)-len(frag)+hsTotal-hsRead > maxSize {
					return raw, Hello{}, ErrTooLarge
				}
			}
		}
		hsRead += len(frag)

		if hsTotal >= 0 && hsRead >= hsTotal {
			if hsRead > hsTotal {
				// Only the server may speak next; anything the client packs after its
				// ClientHello in the same record would be parsed by the server, not by us.
				return raw, Hello{}, fmt.Errorf("%w: %d bytes after the ClientHello in its record", ErrMalformed, hsRead-hsTotal)
			}
			break
		}

		if len(raw)+recordHeaderLen > maxSize {
			return raw, Hello{}, ErrTooLarge
		}
		start = len(raw)
		raw = grow(raw, recordHeaderLen)
		m, err = io.ReadFull(r, raw[start:start+recordHeaderLen])
		raw = raw[:start+m]
		if err != nil {
			return raw, Hello{}, unexpectedEOF(err)
		}
	}

	msg := raw[recordHeaderLen:] // the common case: one record, no copy
	if records > 1 {
		msg = reassemble(raw, hsTotal)
	}
	h, err = parseClientHello(msg[handshakeHeaderLen:])
	return raw, h, err
}

// IsTLSRecordStart reports whether b starts like a TLS handshake record: content type 22 and
// a protocol version from SSL 3.0 to TLS 1.3. It needs at least 3 bytes (fewer give false);
// when b holds the full 5-byte header, the record length must also be valid (1..2^14).
// Use it to peek (bufio.Reader.Peek) before deciding to call ReadClientHello.
func IsTLSRecordStart(b []byte) bool {
	if len(b) < 3 || !looksLikeRecordStart(b) {
		return false
	}
	if len(b) >= recordHeaderLen {
		n := int(b[3])<<8 | int(b[4])
		return n > 0 && n <= maxPlaintext
	}
	return true
}

// looksLikeRecordStart checks as many of the first three header bytes as b holds.
func looksLikeRecordStart(b []byte) bool {
	if len(b) > 0 && b[0] != recordTypeHandshake {
		return false
	}
	if len(b) > 1 && b[1] != protocolVersionMajor {
		return false
	}
	if len(b) > 2 && b[2] > maxKnownProtocolVersionLo {
		return false
	}
	return true
}

// unexpectedEOF turns io.EOF into io.ErrUnexpectedEOF: once a byte of the hello has been read,
// the stream ending is a truncation, not a clean close.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// grow extends b by n bytes (contents undefined). It grows like append, so a hello sent in many
// small records costs amortised linear copying, and never beyond about twice maxSize.
func grow(b []byte, n int) []byte {
	return slices.Grow(b, n)[:len(b)+n]
}

// reassemble concatenates the fragments of the already validated records in raw.
func reassemble(raw []byte, total int) []byte {
	msg := make([]byte, 0, total)
	for len(raw) >= recordHeaderLen {
		n := int(raw[3])<<8 | int(raw[4])
		msg = append(msg, raw[recordHeaderLen:recordHeaderLen+n]...)
		raw = raw[recordHeaderLen+n:]
	}
	return msg
}

// parseClientHello parses a ClientHello body (after the 4-byte handshake header), following
// RFC 8446 §4.1.2 (which is wire-compatible with RFC 5246 §7.4.1.2).
func parseClientHello(body []byte) (Hello, error) {
	var h Hello
	s := cryptobyte.String(body)
	var (
		legacyVersion                                  uint16
		sessionID, cipherSuites, compression, extBlock cryptobyte.String
	)
	if !s.ReadUint16(&legacyVersion) ||
		!s.Skip(tlsRandomLen) ||
		!s.ReadUint8LengthPrefixed(&sessionID) || len(sessionID) > maxSessionIDLen ||
		!s.ReadUint16LengthPrefixed(&cipherSuites) || len(cipherSuites) == 0 || len(cipherSuites)%2 != 0 ||
		!s.ReadUint8LengthPrefixed(&compression) || len(compression) == 0 {
		return Hello{}, fmt.Errorf("%w: bad ClientHello fixed fields", ErrMalformed)
	}
	if s.Empty() {
		// Extensions are optional before TLS 1.3; without them there is no server_name.
		h.Versions = []uint16{legacyVersion}
		return h, ErrNoServerName
	}
	if !s.ReadUint16LengthPrefixed(&extBlock) || !s.Empty() {
		return Hello{}, fmt.Errorf("%w: bad extensions block", ErrMalformed)
	}

	var seenSNI, seenALPN, seenVersions, haveName bool
	for !extBlock.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !extBlock.ReadUint16(&typ) || !extBlock.ReadUint16LengthPrefixed(&data) {
			return Hello{}, fmt.Errorf("%w: bad extension framing", ErrMalformed)
		}
		// Only the extensions read here are checked for duplicates (RFC 8446 §4.2 forbids all
		// duplicates): for the others the server decides, and we make no decision on them.
		switch typ {
		case extServerName:
			if seenSNI {
				return Hello{}, fmt.Errorf("%w: duplicate server_name extension", ErrMalformed)
			}
			seenSNI = true
			name, ok, err := parseServerName(data)
			if err != nil {
				return Hello{}, err
			}
			h.ServerName, haveName = name, ok
		case extALPN:
			if seenALPN {
				return Hello{}, fmt.Errorf("%w: duplicate ALPN extension", ErrMalformed)
			}
			seenALPN = true
			protos, err := parseALPN(data)
			if err != nil {
				return Hello{}, err
			}
			h.ALPN = protos
		case extSupportedVersions:
			if seenVersions {
				return Hello{}, fmt.Errorf("%w: duplicate supported_versions extension", ErrMalformed)
			}
			seenVersions = true
			var list cryptobyte.String
			if !data.ReadUint8LengthPrefixed(&list) || !data.Empty() || len(list) < 2 || len(list)%2 != 0 {
				return Hello{}, fmt.Errorf("%w: bad supported_versions", ErrMalformed)
			}
			h.Versions = make([]uint16, 0, len(list)/2)
			for !list.Empty() {
				var v uint16
				list.ReadUint16(&v) // cannot fail: the length is even
				if !isGREASE(v) {
					h.Versions = append(h.Versions, v)
				}
			}
			if len(h.Versions) == 0 {
				h.Versions = nil // keep one representation of "nothing but GREASE"
			}
		}
	}
	if !seenVersions {
		h.Versions = []uint16{legacyVersion}
	}
	if !haveName {
		return h, ErrNoServerName
	}
	return h, nil
}

// parseServerName reads the server_name extension (RFC 6066 §3). ok is false when the list
// holds no host_name (only other name types, none of which are defined).
func parseServerName(data cryptobyte.String) (name string, ok bool, err error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return "", false, fmt.Errorf("%w: bad server_name list", ErrMalformed)
	}
	for !list.Empty() {
		var typ uint8
		var entry cryptobyte.String
		// Every name type uses a 16-bit length prefix in practice (Go, OpenSSL and BoringSSL
		// all parse it so); assuming it lets us skip unknown types like they do.
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&entry) {
			return "", false, fmt.Errorf("%w: bad server_name entry", ErrMalformed)
		}
		if typ != serverNameTypeHostName {
			continue
		}
		if ok {
			// RFC 6066: at most one name per type. Two would let the client show us one
			// name and the server another.
			return "", false, fmt.Errorf("%w: more than one host_name", ErrMalformed)
		}
		name, err = normalizeHostName(entry)
		if err != nil {
			return "", false, err
		}
		ok = true
	}
	return name, ok, nil
}

// normalizeHostName lowercases b, strips one trailing dot, and rejects what is not an ASCII
// host name (LDH labels; IDNs arrive as punycode, RFC 6066 §3) or is an IPv4 literal.
func normalizeHostName(b []byte) (string, error) {
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 || len(b) > maxHostNameLen {
		return "", fmt.Errorf("%w: server name length %d", ErrMalformed, len(b))
	}
	var out strings.Builder // one allocation: the returned string
	out.Grow(len(b))
	labelStart := 0
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-':
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '.':
			if i == labelStart {
				return "", fmt.Errorf("%w: empty label in server name", ErrMalformed)
			}
			labelStart = i + 1
		default:
			// The byte is attacker-chosen: report its value, never echo the raw name.
			return "", fmt.Errorf("%w: byte 0x%02x at offset %d of server name", ErrMalformed, c, i)
		}
		if i-labelStart >= maxLabelLen {
			return "", fmt.Errorf("%w: label longer than %d bytes in server name", ErrMalformed, maxLabelLen)
		}
		out.WriteByte(c)
	}
	if labelStart == len(b) {
		return "", fmt.Errorf("%w: empty label in server name", ErrMalformed)
	}
	name := out.String()
	if isNumericLabel(name[labelStart:]) {
		return "", &ipNameError{name: name}
	}
	return name, nil
}

// isNumericLabel reports whether the last label makes the name an IPv4 literal in some form.
// Like the WHATWG URL host parser, a name whose last label is a decimal number or 0x-hex is
// treated as an address, which covers 1.2.3.4 and also 127.1, 2130706433, 0x7f.1 and 0177.0.0.1
// that inet_aton-style resolvers accept. No top-level domain is numeric (RFC 3696 §2), and IPv6
// literals cannot get here: ':' is rejected above.
func isNumericLabel(l string) bool {
	if len(l) >= 2 && l[0] == '0' && l[1] == 'x' {
		for i := 2; i < len(l); i++ {
			c := l[i]
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

// ipNameError matches both ErrIPServerName and ErrMalformed.
type ipNameError struct{ name string }

func (e *ipNameError) Error() string {
	return ErrIPServerName.Error() + ": " + strconv.Quote(e.name)
}

func (e *ipNameError) Is(target error) bool {
	return target == ErrIPServerName || target == ErrMalformed
}

// parseALPN reads the ALPN extension (RFC 7301 §3.1): a non-empty list of non-empty names.
func parseALPN(data cryptobyte.String) ([]string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return nil, fmt.Errorf("%w: bad ALPN list", ErrMalformed)
	}
	// Validate and count first so the result is allocated once.
	n := 0
	for l := list; !l.Empty(); n++ {
		var p cryptobyte.String
		if !l.ReadUint8LengthPrefixed(&p) || p.Empty() {
			return nil, fmt.Errorf("%w: bad ALPN protocol name", ErrMalformed)
		}
	}
	protos := make([]string, 0, n)
	for !list.Empty() {
		var p cryptobyte.String
		list.ReadUint8LengthPrefixed(&p) // cannot fail: validated above
		protos = append(protos, string(p))
	}
	return protos, nil
}

// isGREASE reports whether v is one of RFC 8701's reserved values 0x?A?A with equal bytes.
func isGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}
