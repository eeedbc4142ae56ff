package server

import "testing"

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("listen: [127.0.0.1:3128]\ntimeouts: {idle: 10m}\n"))
	f.Add([]byte("tls_listen: [127.0.0.1:3129]\ntls: {acme: {directory_url: https://127.0.0.1/dir, domains: [a]}}\n"))
	f.Add([]byte("allow_ranges: [127.0.0.0/8, ::1]\nauth: {htpasswd: u, max_failures: 0}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data, "")
		if err == nil {
			// A configuration that validates must be usable as it is.
			if err := cfg.Validate(); err != nil {
				t.Fatalf("ParseConfig accepted a config that Validate refuses: %v", err)
			}
			if _, err := cfg.AllowPrefixes(); err != nil {
				t.Fatalf("accepted allow_ranges do not parse: %v", err)
			}
		}
	})
}
