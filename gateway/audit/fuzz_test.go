package audit

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func FuzzDecodeLine(f *testing.F) {
	good, _ := json.Marshal(sample(7))
	f.Add(good)
	f.Add([]byte(`{"time":"2026-11-22T10:00:00+01:00","conn_id":"x","port":65535,"duration_ms":1e308,"event":"close"}`))
	f.Add([]byte(`{"host":"a\u0000\n\ud800","port":65536}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte("{\"conn_id\":\"\xff\"}\r\n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := DecodeLine(line)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode as one line and decode to the same record.
		enc, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		for _, c := range enc {
			if c == '\n' || c == '\r' {
				t.Fatalf("encoded record spans lines: %q", enc)
			}
		}
		r2, err := DecodeLine(enc)
		if err != nil {
			t.Fatalf("decode of re-encoded %q: %v", enc, err)
		}
		if !r.Time.Equal(r2.Time) {
			t.Fatalf("time %v != %v", r.Time, r2.Time)
		}
		r.Time, r2.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip:\n%+v\n%+v", r, r2)
		}
	})
}
