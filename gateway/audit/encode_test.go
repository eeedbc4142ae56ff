package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// TestAppendJSONMatchesMarshal: the hand-written encoder writes what json.Marshal writes, for
// the records the gateway makes and for the hostile strings a client can put in them.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	full := sample(7)
	hostile := full
	hostile.Target = "a\x00b\n\r\t\b\f\"\\<>&\u2028\u2029\xff\xfe\u00e9\U0001F600"
	hostile.User = "<script>"
	for name, r := range map[string]Record{
		"sample":    full,
		"empty":     {Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		"hostile":   hostile,
		"tiny":      {Time: time.Unix(0, 1).UTC(), DurationMS: 1e-7, BytesUp: -1, Status: -5},
		"huge":      {Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), DurationMS: 1e21, Port: 65535},
		"fraction":  {Time: time.Unix(1, 5e8).UTC(), DurationMS: 0.123456789},
		"negzero":   {Time: time.Unix(1, 0).UTC(), DurationMS: math.Copysign(0, -1)},
		"smallexp":  {Time: time.Unix(1, 0).UTC(), DurationMS: 1.5e-9},
		"largeexp":  {Time: time.Unix(1, 0).UTC(), DurationMS: 2.5e300},
		"negative":  {Time: time.Unix(1, 0).UTC(), DurationMS: -3.25},
		"zerotime":  {},
		"year 0":    {Time: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
		"only sni":  {Time: time.Unix(1, 0).UTC(), SNI: "a.example"},
		"max bytes": {Time: time.Unix(1, 0).UTC(), BytesUp: math.MaxInt64, BytesDown: math.MinInt64},
	} {
		want, err := json.Marshal(r)
		got, ok := r.appendJSON(nil)
		if err != nil || !ok {
			t.Fatalf("%s: json.Marshal err %v, appendJSON ok %v", name, err, ok)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

// TestAppendJSONRefusesWhatMarshalRefuses: records json.Marshal cannot encode are not encoded.
func TestAppendJSONRefusesWhatMarshalRefuses(t *testing.T) {
	for name, r := range map[string]Record{
		"NaN":        {Time: time.Unix(1, 0).UTC(), DurationMS: math.NaN()},
		"+Inf":       {Time: time.Unix(1, 0).UTC(), DurationMS: math.Inf(1)},
		"year 10000": {Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"year -1":    {Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := json.Marshal(r); err == nil {
			t.Fatalf("%s: json.Marshal accepts it; the test is wrong", name)
		}
		if _, ok := r.appendJSON(nil); ok {
			t.Errorf("%s: appendJSON encoded what json.Marshal refuses", name)
		}
	}
}

// FuzzAppendJSON holds the hand-written encoder to json.Marshal on arbitrary field values.
func FuzzAppendJSON(f *testing.F) {
	f.Add("conn-1", "127.0.0.1:5", "user", "a.example", "x\x00\u2028<", int64(1), 1.25, int64(1700000000), uint16(443), 200)
	f.Add("", "", "", "", "\xff", int64(-1), 1e-7, int64(0), uint16(0), 0)
	f.Fuzz(func(t *testing.T, connID, client, user, host, target string, up int64, dur float64, unix int64, port uint16, status int) {
		r := Record{
			Time: time.Unix(unix%(250000000000), unix%1e9).UTC(), ConnID: connID, Client: client, User: user,
			Method: "CONNECT", Host: host, Port: port, Target: target, Address: client, Group: user, Pattern: host,
			Mode: target, Decision: connID, Reason: target, Status: status, SNI: host, BytesUp: up, BytesDown: -up,
			DurationMS: dur, Event: client,
		}
		want, err := json.Marshal(r)
		got, ok := r.appendJSON(nil)
		if (err == nil) != ok {
			t.Fatalf("json.Marshal err %v, appendJSON ok %v for %+v", err, ok, r)
		}
		if ok && !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

var encodeSink []byte

// BenchmarkEncodeRecord: one close record of a tunnel, as json.Marshal (the baseline) and as
// appendJSON, interleaved in one run (best of three rounds); reports both and the ratio.
func BenchmarkEncodeRecord(b *testing.B) {
	r := sample(7)
	measure := func(encode func()) float64 {
		const n = 20000
		start := time.Now()
		for range n {
			encode()
		}
		return float64(time.Since(start).Nanoseconds()) / n
	}
	marshal := func() { encodeSink, _ = json.Marshal(r) }
	appendRec := func() { encodeSink, _ = r.appendJSON(make([]byte, 0, 384)) }
	m, a := math.Inf(1), math.Inf(1)
	for range 3 {
		m = min(m, measure(marshal))
		a = min(a, measure(appendRec))
	}
	for b.Loop() {
		appendRec()
	}
	b.ReportMetric(m, "ns/op_json.Marshal")
	b.ReportMetric(a, "ns/op_appendJSON")
	b.ReportMetric(m/a, "ratio_marshal_vs_append")
	b.Logf("one audit record: json.Marshal %.0f ns, appendJSON %.0f ns, %.1fx", m, a, m/a)
}
