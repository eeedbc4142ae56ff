package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/scpgate/scpgate/manifest"
)

// benchHost serves the benchmark's own update chain: the cloud simulator keeps payloads in
// memory (64 MiB at most), so a 1 GiB payload needs an origin that generates its bytes.
const benchHost = "bench.manage.microsoft.com"

const benchGUID = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"

// patternPayload is size bytes of a 1 MiB random block repeated: generated on the fly, seekable,
// and too random within a block for any compression on the way to matter.
type patternPayload struct {
	block []byte
	size  int64
	off   int64
}

func (p *patternPayload) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(b) && p.off < p.size {
		i := p.off % int64(len(p.block))
		c := copy(b[n:], p.block[i:min(int64(len(p.block)), i+p.size-p.off)])
		n += c
		p.off += int64(c)
	}
	return n, nil
}

func (p *patternPayload) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += p.off
	case io.SeekEnd:
		offset += p.size
	}
	if offset < 0 {
		return 0, errors.New("negative offset")
	}
	p.off = offset
	return offset, nil
}

// BenchmarkSCPClientDownload1GiB: the scpclient binary downloads, hashes and places a 1 GiB
// payload through a real gateway; curl fetches the same URL through the same gateway. It reports
// both throughputs, their ratio (client/curl, want >= 0.8) and the client's peak RSS (want
// < 64 MiB). Run it with `make bench-client`; it is not part of `make test`.
func BenchmarkSCPClientDownload1GiB(b *testing.B) {
	const size = 1 << 30
	w := newWorld(b)
	block := make([]byte, 1<<20)
	_, _ = rand.Read(block)
	h := sha256.New()
	if _, err := io.Copy(h, &patternPayload{block: block, size: size}); err != nil {
		b.Fatal(err)
	}
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	payloadPath := "/release/5.00.9140.1000/" + benchGUID + "/" + benchGUID + ".cab"
	m := manifest.Manifest{SchemaVersion: manifest.CurrentSchemaVersion, Generated: time.Now().UTC(), Updates: []manifest.Update{{
		GUID: benchGUID, Name: "1 GiB benchmark payload", Kind: manifest.KindUpdate, Version: "5.00.9140.1000",
		ApplicableFrom: []string{"5.00.9135.1000"}, PayloadURL: "https://" + benchHost + payloadPath,
		Size: size, SHA256: hex.EncodeToString(h.Sum(nil)), Published: time.Now().UTC(),
	}}}
	signed, err := manifest.Sign(m, key, "")
	if err != nil {
		b.Fatal(err)
	}
	keyPEM, _ := manifest.MarshalPublicKey(pub)
	dir := b.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o644); err != nil {
		b.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/fwlink/", func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, "https://"+benchHost+"/SCCMConnectedService.svc/Manifest?"+r.URL.RawQuery, http.StatusFound)
	})
	mux.HandleFunc("/SCCMConnectedService.svc/Manifest", func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, "https://"+benchHost+"/manifest.json", http.StatusFound)
	})
	mux.HandleFunc("/manifest.json", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write(signed) })
	mux.HandleFunc(payloadPath, func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("ETag", `"bench"`)
		http.ServeContent(rw, r, "payload.cab", time.Time{}, &patternPayload{block: block, size: size})
	})
	cert, err := w.ca.Issue(benchHost)
	if err != nil {
		b.Fatal(err)
	}
	ln := listenLoopback443(b)
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	b.Cleanup(func() { _ = srv.Close() })
	origin := addrOf(ln)
	w.dns.SetA(benchHost, origin.Addr())

	pol := "version: 1\ngroups:\n  bench:\n    enabled: true\n    hosts: [" + benchHost + "]\n"
	gw := w.gateway(pol, origin.Addr().String()+"/32")
	bin := buildCommand(b, "scpclient")

	var clientSecs, curlSecs float64
	var peakRSS int64
	for i := 0; i < b.N; i++ {
		data := filepath.Join(b.TempDir(), "data")
		cfg := filepath.Join(filepath.Dir(data), "scpclient.yaml")
		text := fmt.Sprintf("site_code: XYZ\nsite_role: cas\nhierarchy_id: %s\ninstalled_version: 5.00.9135.1000\nfwlink: https://%s/fwlink/?LinkId=1\n"+
			"proxy:\n  url: http://%s\ntrusted_ca_file: %s\nmanifest_key_file: %s\ndata_dir: %s\n", testHierarchy, benchHost, gw.addr, w.caFile, keyFile, data)
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(bin, "check", "-config", cfg, "-attempts", "1", "-no-upload")
		cmd.Env = append(os.Environ(), "HTTPS_PROXY=", "https_proxy=")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("scpclient check: %v\n%s", err, out)
		}
		clientSecs += time.Since(start).Seconds()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peakRSS = max(peakRSS, ru.Maxrss*1024) // KiB on Linux
		}
		placed := filepath.Join(data, "EasySetupPayload", benchGUID, benchGUID+".cab")
		if st, err := os.Stat(placed); err != nil || st.Size() != size {
			b.Fatalf("payload not placed: %v", err)
		}
		_ = os.RemoveAll(data)

		dest := filepath.Join(b.TempDir(), "curl.cab")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		curl := exec.CommandContext(ctx, "curl", "-sS", "--fail", "--noproxy", "", "-x", "http://"+gw.addr, "--cacert", w.caFile, "-o", dest, "https://"+benchHost+payloadPath)
		curl.Env = append(os.Environ(), "http_proxy=", "https_proxy=", "HTTPS_PROXY=", "ALL_PROXY=")
		start = time.Now()
		cout, err := curl.CombinedOutput()
		cancel()
		if err != nil {
			b.Fatalf("curl: %v\n%s", err, cout)
		}
		curlSecs += time.Since(start).Seconds()
		_ = os.Remove(dest)
	}
	mib := float64(size) / (1 << 20) * float64(b.N)
	clientRate, curlRate := mib/clientSecs, mib/curlSecs
	ratio := clientRate / curlRate
	b.ReportMetric(clientRate, "client-MiB/s")
	b.ReportMetric(curlRate, "curl-MiB/s")
	b.ReportMetric(ratio, "client/curl")
	b.ReportMetric(float64(peakRSS)/(1<<20), "client-peak-RSS-MiB")
	b.Logf("1 GiB through the gateway: scpclient %.0f MiB/s (download + SHA-256 + place), curl %.0f MiB/s, ratio %.2f; scpclient peak RSS %.1f MiB",
		clientRate, curlRate, ratio, float64(peakRSS)/(1<<20))
	if peakRSS >= 64<<20 {
		b.Errorf("scpclient peak RSS %.1f MiB, want < 64 MiB", float64(peakRSS)/(1<<20))
	}
	if ratio < 0.8 {
		b.Errorf("scpclient throughput is %.2f of curl's, want at least 0.8", ratio)
	}
}
