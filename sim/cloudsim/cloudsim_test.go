package cloudsim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/scpgate/scpgate/manifest"
	"github.com/scpgate/scpgate/sim/testca"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const installed = DefaultInstalledVersion

// startCloud starts a cloud on a random 127.x.y.z:443. Without the right to bind 443 it falls
// back to the port override, which exists for exactly this case.
func startCloud(t *testing.T, cfg Config) *Cloud {
	t.Helper()
	return startCloudCtx(t, context.Background(), cfg)
}

func startCloudCtx(t *testing.T, ctx context.Context, cfg Config) *Cloud {
	t.Helper()
	if cfg.CA == nil {
		ca, err := testca.New("cloudsim test root")
		if err != nil {
			t.Fatal(err)
		}
		cfg.CA = ca
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start(ctx)
	if errors.Is(err, os.ErrPermission) && cfg.Addr == "" {
		t.Logf("cannot bind port 443 (%v); using the unit-test port override", err)
		cfg.Addr = ":0"
		if c, err = New(cfg); err != nil {
			t.Fatal(err)
		}
		err = c.Start(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

type clientOpt func(*http.Transport)

// newClient returns a client that sends every connection to the cloud, whatever the name, and
// trusts only the cloud's CA. It never dials anything else.
func newClient(t *testing.T, c *Cloud, opts ...clientOpt) *http.Client {
	t.Helper()
	addr := c.Addr()
	if !addr.Addr().IsLoopback() {
		t.Fatalf("cloud address %s is not loopback", addr)
	}
	tr := &http.Transport{
		Proxy: nil, // never the environment's proxy
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr.String())
		},
		TLSClientConfig:    &tls.Config{RootCAs: c.CA().Pool()},
		DisableCompression: true,
	}
	for _, o := range opts {
		o(tr)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func noKeepAlive(tr *http.Transport) { tr.DisableKeepAlives = true }

func get(t *testing.T, cl *http.Client, url string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	return do(t, cl, context.Background(), http.MethodGet, url, nil, hdr...)
}

func do(t *testing.T, cl *http.Client, ctx context.Context, method, url string, body []byte, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func guids(us []manifest.Update) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.GUID)
	}
	return out
}

func fwlinkURL(query string) string {
	return "https://" + HostFwlink + "/fwlink/?" + query
}

const checkQuery = "LinkId=2079826&HierarchyId=HIER-0001&Version=5.00.9135.1000&Usage=enhanced"

func TestUpdateCheckChain(t *testing.T) {
	t.Parallel()
	c := startCloud(t, Config{})
	cl := newClient(t, c)

	resp, body, err := get(t, cl, fwlinkURL(checkQuery))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != c.ManifestURL() {
		t.Fatalf("final %d %s, want 200 %s", resp.StatusCode, resp.Request.URL, c.ManifestURL())
	}
	if !strings.HasSuffix(resp.Request.URL.Path, "/"+manifest.FileName) {
		t.Fatalf("manifest path %s", resp.Request.URL.Path)
	}
	m, err := manifest.Verify(body, c.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, c.SignedManifest()) {
		t.Fatal("served manifest differs from SignedManifest()")
	}

	v := manifest.MustParseVersion(installed)
	wantAll := []string{"81ed69d4-a6e9-4ab7-a911-fe3343806b31", "d8426602-cfde-4854-9761-60ce34c5c362"}
	if got := guids(m.Applicable(v, true)); !slices.Equal(got, wantAll) {
		t.Errorf("Applicable with hotfixes = %v, want %v", got, wantAll)
	}
	if got := guids(m.Applicable(v, false)); !slices.Equal(got, wantAll[1:]) {
		t.Errorf("Applicable without hotfixes = %v, want %v", got, wantAll[1:])
	}
	if len(m.Updates) != len(DefaultReleases()) {
		t.Errorf("manifest has %d updates, want %d", len(m.Updates), len(DefaultReleases()))
	}

	// The chain as the cloud saw it, with the client's query carried to the connected service.
	type hop struct {
		host, path, query string
		status            int
	}
	var hops []hop
	for _, r := range c.Requests() {
		hops = append(hops, hop{r.Host, r.Path, r.RawQuery, r.Status})
	}
	want := []hop{
		{HostFwlink, "/fwlink/", checkQuery, 302},
		{HostConnectedService, ServiceManifestPath, checkQuery, 302},
		{HostDownload, resp.Request.URL.Path, "", 200},
	}
	if !slices.Equal(hops, want) {
		t.Fatalf("hops:\n got %+v\nwant %+v", hops, want)
	}

	// Stable validators: a conditional GET is answered 304.
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if etag == "" || lm == "" {
		t.Fatalf("ETag %q Last-Modified %q", etag, lm)
	}
	for _, h := range [][]string{{"If-None-Match", etag}, {"If-Modified-Since", lm}} {
		resp, _, err := get(t, cl, c.ManifestURL(), h...)
		if err != nil || resp.StatusCode != http.StatusNotModified {
			t.Fatalf("conditional GET %s: %v %v", h[0], resp, err)
		}
	}
}

func TestConnectedServiceErrors(t *testing.T) {
	t.Parallel()
	c := startCloud(t, Config{})
	cl := newClient(t, c)
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	tests := []struct {
		name   string
		method string
		url    string
		status int
	}{
		{"fwlink without LinkId", "GET", "https://go.microsoft.com/fwlink/?Version=5.00.9135.1000", 404},
		{"fwlink non-numeric LinkId", "GET", fwlinkURL("LinkId=abc"), 404},
		{"fwlink lower-case key", "GET", fwlinkURL("linkid=1"), 302},
		{"fwlink POST", "POST", fwlinkURL("LinkId=1"), 405},
		{"service bad Version", "GET", "https://sccm.manage.microsoft.com/SCCMConnectedService.svc/Manifest?Version=5.00", 400},
		{"service path case", "GET", "https://sccm.manage.microsoft.com/sccmconnectedservice.svc/manifest", 302},
		{"manifest other path", "GET", "https://download.microsoft.com/download/x/" + manifest.FileName, 404},
		{"payload unknown guid", "GET", "https://" + HostCDN + PayloadPath("5.00.9140.1000", "00000000-0000-0000-0000-000000000000"), 404},
		{"payload wrong version", "GET", "https://" + HostCDN + PayloadPath("5.00.9135.1000", "d8426602-cfde-4854-9761-60ce34c5c362"), 404},
		{"payload short path", "GET", "https://" + HostCDN + "/release/5.00.9140.1000/", 404},
		{"unknown path", "GET", "https://aka.ms/nothing", 404},
		{"banner POST", "POST", "https://aka.ms/", 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.method == "POST" {
				body = []byte("x")
			}
			resp, _, err := do(t, cl, context.Background(), tc.method, tc.url, body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}

func TestPayloads(t *testing.T) {
	t.Parallel()
	c := startCloud(t, Config{})
	cl := newClient(t, c)
	m, err := manifest.Verify(c.SignedManifest(), c.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range m.Updates {
		for _, host := range []string{HostCDN, HostAzureEdge} {
			url := strings.Replace(u.PayloadURL, HostCDN, host, 1)
			resp, body, err := get(t, cl, url)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || int64(len(body)) != u.Size || sha(body) != u.SHA256 {
				t.Fatalf("%s: status %d, %d bytes (want %d), sha ok=%v", url, resp.StatusCode, len(body), u.Size, sha(body) == u.SHA256)
			}
			if u.Size < 256<<10 || u.Size > 2<<20 {
				t.Errorf("%s: size %d outside 256 KiB..2 MiB", u.GUID, u.Size)
			}
			wantTLS := uint16(tls.VersionTLS13)
			if host == HostAzureEdge {
				wantTLS = tls.VersionTLS12 // documented as TLS 1.2 only
			}
			if resp.TLS.Version != wantTLS || resp.ProtoMajor != 1 {
				t.Errorf("%s: TLS %x proto %s", host, resp.TLS.Version, resp.Proto)
			}
		}
	}
	// The content is a function of the GUID alone.
	u := m.Updates[0]
	if sha(PayloadBytes(u.GUID, u.Size)) != u.SHA256 {
		t.Fatal("PayloadBytes disagrees with the manifest")
	}
}

func TestRange(t *testing.T) {
	t.Parallel()
	c := startCloud(t, Config{})
	cl := newClient(t, c)
	u := c.Updates()[4]
	full := PayloadBytes(u.GUID, u.Size)
	etag := `"` + u.SHA256 + `"`
	tests := []struct {
		name      string
		hdr       []string
		status    int
		from, to  int64 // expected body = full[from:to]
		wantRange string
	}{
		{"middle", []string{"Range", "bytes=1000-1999"}, 206, 1000, 2000, fmt.Sprintf("bytes 1000-1999/%d", u.Size)},
		{"resume", []string{"Range", "bytes=65536-"}, 206, 65536, u.Size, fmt.Sprintf("bytes 65536-%d/%d", u.Size-1, u.Size)},
		{"suffix", []string{"Range", "bytes=-10"}, 206, u.Size - 10, u.Size, ""},
		{"If-Range match", []string{"Range", "bytes=10-19", "If-Range", etag}, 206, 10, 20, ""},
		{"If-Range stale", []string{"Range", "bytes=10-19", "If-Range", `"stale"`}, 200, 0, u.Size, ""},
		{"unsatisfiable", []string{"Range", fmt.Sprintf("bytes=%d-", u.Size+1)}, 416, 0, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := get(t, cl, u.PayloadURL, tc.hdr...)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 416 && !bytes.Equal(body, full[tc.from:tc.to]) {
				t.Fatalf("body: %d bytes, want full[%d:%d]", len(body), tc.from, tc.to)
			}
			if tc.wantRange != "" && resp.Header.Get("Content-Range") != tc.wantRange {
				t.Fatalf("Content-Range %q, want %q", resp.Header.Get("Content-Range"), tc.wantRange)
			}
		})
	}
	var ranges []string
	for _, r := range c.Requests() {
		ranges = append(ranges, r.Range)
	}
	if !slices.Contains(ranges, "bytes=1000-1999") {
		t.Fatalf("Requests() lacks the range header: %q", ranges)
	}
}

func TestUsageData(t *testing.T) {
	t.Parallel()
	c := startCloud(t, Config{MaxUploadSize: 1 << 20})
	cl := newClient(t, c)
	url := "https://" + HostConnectedService + ServiceUsageDataPath
	pkg := []byte(`{"site":"P01","level":"enhanced","data":"` + strings.Repeat("x", 5000) + `"}`)
	other := []byte("another package")
	tests := []struct {
		name   string
		method string
		body   []byte
		hdr    []string
		status int
		dup    bool
	}{
		{"first", "POST", pkg, []string{IdempotencyKeyHeader, "k1", ContentSHA256Header, sha(pkg)}, 202, false},
		{"retry same key", "POST", pkg, []string{IdempotencyKeyHeader, "k1"}, 202, true},
		{"same key other body", "POST", other, []string{IdempotencyKeyHeader, "k1"}, 409, false},
		{"second package", "POST", other, []string{IdempotencyKeyHeader, "k2", ContentSHA256Header, strings.ToUpper(sha(other))}, 202, false},
		{"sha mismatch", "POST", pkg, []string{IdempotencyKeyHeader, "k3", ContentSHA256Header, sha(other)}, 400, false},
		{"sha malformed", "POST", pkg, []string{IdempotencyKeyHeader, "k3", ContentSHA256Header, "abc"}, 400, false},
		{"no key", "POST", pkg, nil, 400, false},
		{"key with space", "POST", pkg, []string{IdempotencyKeyHeader, "a b"}, 400, false},
		{"empty body", "POST", []byte{}, []string{IdempotencyKeyHeader, "k4"}, 400, false},
		{"too large", "POST", make([]byte, 1<<20+1), []string{IdempotencyKeyHeader, "k5"}, 413, false},
		{"GET", "GET", nil, []string{IdempotencyKeyHeader, "k6"}, 405, false},
	}
	for _, tc := range tests {
		resp, body, err := do(t, cl, context.Background(), tc.method, url, tc.body, tc.hdr...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: status %d, want %d (%s)", tc.name, resp.StatusCode, tc.status, body)
		}
		if tc.status == 202 {
			var rc Receipt
			if err := json.Unmarshal(body, &rc); err != nil {
				t.Fatalf("%s: receipt: %v", tc.name, err)
			}
			if rc.Duplicate != tc.dup || rc.SHA256 != sha(tc.body) || rc.Size != int64(len(tc.body)) {
				t.Fatalf("%s: receipt %+v", tc.name, rc)
			}
		}
	}
	ups := c.Uploads()
	if len(ups) != 2 {
		t.Fatalf("%d uploads stored, want 2", len(ups))
	}
	if ups[0].IdempotencyKey != "k1" || !bytes.Equal(ups[0].Data, pkg) || ups[0].Acks != 2 || ups[0].SHA256 != sha(pkg) {
		t.Fatalf("upload k1: key %q acks %d size %d", ups[0].IdempotencyKey, ups[0].Acks, ups[0].Size)
	}
	if ups[1].IdempotencyKey != "k2" || ups[1].Acks != 1 {
		t.Fatalf("upload k2: %+v", ups[1])
	}
	ups[0].Data[0] = 'X' // a copy: the cloud's record is unaffected
	if c.Uploads()[0].Data[0] != '{' {
		t.Fatal("Uploads returned the cloud's own buffer")
	}
}

func TestMisdirected(t *testing.T) {
	t.Parallel()
	c := startCloud(t, Config{ExtraHosts: []string{"Extra.Example."}})
	cl := newClient(t, c)
	// SNI go.microsoft.com (so the certificate verifies) but an unknown Host.
	unknown := newClient(t, c, func(tr *http.Transport) { tr.TLSClientConfig.ServerName = HostFwlink })
	tests := []struct {
		name   string
		cl     *http.Client
		url    string
		hdr    []string
		status int
	}{
		{"unknown host", unknown, "https://unknown.example/", nil, 421},
		{"host differs from SNI", cl, "https://go.microsoft.com/", []string{"Host", HostDownload}, 421},
		{"IP literal host", unknown, "https://127.0.0.1/", nil, 421},
		{"host with port", cl, "https://go.microsoft.com/", []string{"Host", "go.microsoft.com:443"}, 200},
		{"extra host", cl, "https://extra.example/", nil, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, err := get(t, tc.cl, tc.url, tc.hdr...)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}

func TestBannerEveryHost(t *testing.T) {
	t.Parallel()
	c := startCloud(t, Config{})
	cl := newClient(t, c)
	hosts := c.Hosts()
	for _, want := range []string{"aka.ms", "a1.akamaiedge.net", "umwatsonc.events.data.microsoft.com", HostAzureEdge, HostCDN} {
		if !slices.Contains(hosts, want) {
			t.Errorf("Hosts() lacks %s", want)
		}
	}
	for _, h := range hosts {
		resp, body, err := get(t, cl, "https://"+h+"/")
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		if resp.StatusCode != 200 || string(body) != "scpgate cloudsim: "+h {
			t.Fatalf("%s: %d %q", h, resp.StatusCode, body)
		}
	}
}

func TestTLSMinimum(t *testing.T) {
	t.Parallel()
	c := startCloud(t, Config{})
	cl := newClient(t, c, func(tr *http.Transport) { tr.TLSClientConfig.MaxVersion = tls.VersionTLS11 })
	if _, _, err := get(t, cl, "https://aka.ms/"); err == nil {
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	h2 := newClient(t, c, func(tr *http.Transport) { tr.ForceAttemptHTTP2 = true })
	resp, _, err := get(t, h2, "https://aka.ms/")
	if err != nil || resp.ProtoMajor != 1 {
		t.Fatalf("HTTP/2-capable client: %v %v", resp, err)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	payloadOf := func(c *Cloud) manifest.Update { return c.Updates()[4] }
	tests := []struct {
		name  string
		setup func(t *testing.T, c *Cloud)
		check func(t *testing.T, c *Cloud)
	}{
		{
			name: "reset mid-body",
			setup: func(t *testing.T, c *Cloud) {
				mustFault(t, c, HostCDN, "/release/", Fault{Kind: FaultReset, AfterBytes: 4096, Count: 1})
			},
			check: func(t *testing.T, c *Cloud) {
				u := payloadOf(c)
				cl := newClient(t, c)
				resp, body, err := get(t, cl, u.PayloadURL)
				if err == nil || resp == nil || resp.StatusCode != 200 {
					t.Fatalf("want a 200 whose body fails; got resp=%v err=%v", resp, err)
				}
				t.Logf("client saw %d bytes, then: %v", len(body), err)
				if len(body) > 4096 {
					t.Fatalf("received %d bytes, want at most 4096", len(body))
				}
				if _, body, err = get(t, cl, u.PayloadURL); err != nil || sha(body) != u.SHA256 {
					t.Fatalf("after Count ran out: %v", err)
				}
			},
		},
		{
			name: "reset before the upload receipt",
			setup: func(t *testing.T, c *Cloud) {
				mustFault(t, c, HostConnectedService, ServiceUsageDataPath, Fault{Kind: FaultReset, Count: 1})
			},
			check: func(t *testing.T, c *Cloud) {
				// No keep-alive: net/http would transparently retry an idempotent request on a
				// reused connection, hiding the reset from this test.
				cl := newClient(t, c, noKeepAlive)
				url := "https://" + HostConnectedService + ServiceUsageDataPath
				pkg := []byte("usage package")
				_, _, err := do(t, cl, context.Background(), "POST", url, pkg, IdempotencyKeyHeader, "lost-ack")
				if err == nil {
					t.Fatal("upload with a reset answer succeeded")
				}
				t.Logf("client saw: %v", err)
				if n := len(c.Uploads()); n != 1 {
					t.Fatalf("%d uploads stored before the reset, want 1", n)
				}
				resp, body, err := do(t, cl, context.Background(), "POST", url, pkg, IdempotencyKeyHeader, "lost-ack")
				if err != nil || resp.StatusCode != 202 || !bytes.Contains(body, []byte(`"duplicate":true`)) {
					t.Fatalf("retry: %v %v %s", resp, err, body)
				}
				if ups := c.Uploads(); len(ups) != 1 || ups[0].Acks != 2 {
					t.Fatalf("after retry: %d uploads", len(ups))
				}
			},
		},
		{
			name: "corrupt",
			setup: func(t *testing.T, c *Cloud) {
				mustFault(t, c, HostCDN, "", Fault{Kind: FaultCorrupt, AfterBytes: 12345})
			},
			check: func(t *testing.T, c *Cloud) {
				u := payloadOf(c)
				resp, body, err := get(t, newClient(t, c), u.PayloadURL)
				if err != nil || resp.StatusCode != 200 {
					t.Fatal(resp, err)
				}
				if int64(len(body)) != u.Size || sha(body) == u.SHA256 {
					t.Fatalf("want same size, different sha; got %d bytes, sha equal=%v", len(body), sha(body) == u.SHA256)
				}
				full := PayloadBytes(u.GUID, u.Size)
				for i := range body {
					if (body[i] != full[i]) != (i == 12345) {
						t.Fatalf("byte %d differs=%v", i, body[i] != full[i])
					}
				}
			},
		},
		{
			name: "status",
			setup: func(t *testing.T, c *Cloud) {
				mustFault(t, c, HostDownload, "/download/", Fault{Kind: FaultStatus, Count: 1})
			},
			check: func(t *testing.T, c *Cloud) {
				cl := newClient(t, c)
				resp, _, err := get(t, cl, fwlinkURL(checkQuery))
				if err != nil || resp.StatusCode != 503 {
					t.Fatalf("want 503 at the end of the chain: %v %v", resp, err)
				}
				resp, body, err := get(t, cl, fwlinkURL(checkQuery))
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("after Count ran out: %v %v", resp, err)
				}
				if _, err := manifest.Verify(body, c.PublicKey()); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "wrongcert",
			setup: func(t *testing.T, c *Cloud) {
				mustFault(t, c, HostDownload, "", Fault{Kind: FaultWrongCert, Count: 1})
			},
			check: func(t *testing.T, c *Cloud) {
				cl := newClient(t, c)
				_, _, err := get(t, cl, c.ManifestURL())
				var he x509.HostnameError
				if !errors.As(err, &he) || he.Certificate.DNSNames[0] != WrongCertName {
					t.Fatalf("want an x509.HostnameError for %s, got %v", WrongCertName, err)
				}
				if resp, _, err := get(t, cl, c.ManifestURL()); err != nil || resp.StatusCode != 200 {
					t.Fatalf("after Count ran out: %v %v", resp, err)
				}
				if r := c.Requests()[0]; r.Fault != FaultWrongCert || r.SNI != HostDownload || r.Method != "" {
					t.Fatalf("handshake record %+v", r)
				}
			},
		},
		{
			name: "slow until the client gives up",
			setup: func(t *testing.T, c *Cloud) {
				mustFault(t, c, HostDownload, "/download/", Fault{Kind: FaultSlow})
			},
			check: func(t *testing.T, c *Cloud) {
				// Warm the connection first, so the deadline below only covers the stalled
				// request and not a handshake slowed down by the race detector.
				cl := newClient(t, c)
				if resp, _, err := get(t, cl, "https://"+HostDownload+"/"); err != nil || resp.StatusCode != 200 {
					t.Fatal(resp, err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				resp, _, err := do(t, cl, ctx, "GET", c.ManifestURL(), nil)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("want a deadline error, got %v %v", err, resp)
				}
				_ = c.Close() // waits for the stalled handler, so its record is final
				if r := c.Requests(); len(r) != 2 || r[1].Fault != FaultSlow || r[1].Status != 0 {
					t.Fatalf("records %+v", r)
				}
			},
		},
		{
			name: "slow with a delay",
			setup: func(t *testing.T, c *Cloud) {
				mustFault(t, c, "", "/", Fault{Kind: FaultSlow, Delay: 30 * time.Millisecond, Count: 1})
			},
			check: func(t *testing.T, c *Cloud) {
				start := time.Now()
				resp, _, err := get(t, newClient(t, c), "https://aka.ms/")
				if err != nil || resp.StatusCode != 200 {
					t.Fatal(resp, err)
				}
				if d := time.Since(start); d < 30*time.Millisecond {
					t.Fatalf("answered after %s, want >= 30ms", d)
				}
			},
		},
		{
			name: "slow trickle",
			setup: func(t *testing.T, c *Cloud) {
				mustFault(t, c, HostCDN, "/release/", Fault{Kind: FaultSlow, AfterBytes: 100})
			},
			check: func(t *testing.T, c *Cloud) {
				u := payloadOf(c)
				cl := newClient(t, c)
				if resp, _, err := get(t, cl, "https://"+HostCDN+"/"); err != nil || resp.StatusCode != 200 {
					t.Fatal(resp, err) // warm connection: the deadline covers only the payload
				}
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "GET", u.PayloadURL, nil)
				resp, err := cl.Do(req)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("headers should arrive: %v %v", resp, err)
				}
				defer resp.Body.Close()
				head := make([]byte, 100)
				if _, err := io.ReadFull(resp.Body, head); err != nil || !bytes.Equal(head, PayloadBytes(u.GUID, 100)) {
					t.Fatalf("first 100 bytes: %v", err)
				}
				if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("rest of body: want deadline, got %v", err)
				}
			},
		},
		{
			name: "longest prefix wins",
			setup: func(t *testing.T, c *Cloud) {
				mustFault(t, c, HostDownload, "", Fault{Kind: FaultStatus, Status: 500})
				mustFault(t, c, HostDownload, "/download/", Fault{Kind: FaultStatus, Status: 502})
			},
			check: func(t *testing.T, c *Cloud) {
				cl := newClient(t, c)
				for url, want := range map[string]int{c.ManifestURL(): 502, "https://download.microsoft.com/": 500, "https://aka.ms/": 200} {
					if resp, _, err := get(t, cl, url); err != nil || resp.StatusCode != want {
						t.Fatalf("%s: %v %v, want %d", url, resp, err, want)
					}
				}
				c.ClearFaults()
				if resp, _, err := get(t, cl, c.ManifestURL()); err != nil || resp.StatusCode != 200 {
					t.Fatalf("after ClearFaults: %v %v", resp, err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := startCloud(t, Config{})
			tc.setup(t, c)
			tc.check(t, c)
		})
	}
}

func mustFault(t *testing.T, c *Cloud, host, prefix string, f Fault) {
	t.Helper()
	if err := c.SetFault(host, prefix, f); err != nil {
		t.Fatal(err)
	}
}

func TestSetFaultRejects(t *testing.T) {
	t.Parallel()
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		f    Fault
	}{
		{"aka.ms", Fault{Kind: "explode"}},
		{"aka.ms", Fault{Kind: FaultStatus, Status: 99}},
		{"aka.ms", Fault{Kind: FaultSlow, Delay: -1}},
		{"aka.ms", Fault{Kind: FaultReset, Count: -1}},
		{"not-served.example", Fault{Kind: FaultReset}},
	} {
		if err := c.SetFault(tc.host, "", tc.f); err == nil {
			t.Errorf("SetFault(%q, %+v) succeeded", tc.host, tc.f)
		}
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	rel := func(mut func(*Release)) []Release {
		r := DefaultReleases()
		mut(&r[0])
		return r
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"public address", Config{Addr: "10.0.0.1:443"}},
		{"public address no port", Config{Addr: "192.0.2.1"}},
		{"unspecified", Config{Addr: "0.0.0.0:443"}},
		{"name", Config{Addr: "localhost:443"}},
		{"bad port", Config{Addr: ":99999"}},
		{"short key", Config{SigningKey: make(ed25519.PrivateKey, 10)}},
		{"bad extra host", Config{ExtraHosts: []string{"bad host"}}},
		{"IP extra host", Config{ExtraHosts: []string{"127.0.0.1"}}},
		{"negative upload limit", Config{MaxUploadSize: -1}},
		{"duplicate GUID", Config{Releases: rel(func(r *Release) { r.GUID = strings.ToUpper(DefaultReleases()[1].GUID) })}},
		{"bad version", Config{Releases: rel(func(r *Release) { r.Version = "5.00" })}},
		{"traversal GUID", Config{Releases: rel(func(r *Release) { r.GUID = "../../../../../../../../../../etc/x" })}},
		{"huge payload", Config{Releases: rel(func(r *Release) { r.Size = MaxPayloadSize + 1 })}},
		{"bad kind", Config{Releases: rel(func(r *Release) { r.Kind = "feature" })}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}

	c, err := New(Config{Releases: []Release{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Verify(c.SignedManifest(), c.PublicKey()); err != nil || len(c.Updates()) != 0 {
		t.Fatalf("empty catalogue: %v, %d updates", err, len(c.Updates()))
	}
}

func TestParseAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		ip     string // "" = random
		port   uint16
		wantOK bool
	}{
		{"", "", 443, true},
		{"127.0.0.10", "127.0.0.10", 443, true},
		{"127.9.8.7:443", "127.9.8.7", 443, true},
		{"127.0.0.10:8443", "127.0.0.10", 8443, true},
		{":0", "", 0, true},
		{"[::1]:443", "::1", 443, true},
		{"::1", "::1", 443, true},
		{"[::ffff:127.0.0.2]:443", "127.0.0.2", 443, true},
		{"10.1.2.3", "", 0, false},
		{"[fe80::1%lo]:443", "", 0, false},
		{"127.0.0.1:", "", 0, false},
	}
	for _, tc := range tests {
		ip, port, err := parseAddr(tc.in)
		if (err == nil) != tc.wantOK {
			t.Errorf("parseAddr(%q): err=%v", tc.in, err)
			continue
		}
		if !tc.wantOK {
			continue
		}
		got := ""
		if ip.IsValid() {
			got = ip.String()
		}
		if got != tc.ip || port != tc.port {
			t.Errorf("parseAddr(%q) = %s %d, want %s %d", tc.in, got, port, tc.ip, tc.port)
		}
	}
}

// signalHandler reports when a log message is written, so lifecycle tests wait on an event
// instead of sleeping.
type signalHandler struct {
	slog.Handler
	msg string
	ch  chan struct{}
}

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		close(h.ch)
	}
	return nil
}

func closeSignal() (*slog.Logger, <-chan struct{}) {
	ch := make(chan struct{})
	return slog.New(signalHandler{Handler: slog.DiscardHandler, msg: "cloudsim: closed", ch: ch}), ch
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	c := startCloud(t, Config{})
	if err := c.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded")
	}
	// Two clouds never share an address.
	c2 := startCloud(t, Config{})
	if c.Addr() == c2.Addr() || !c.Addr().Addr().Is4() || c.Addr().Addr().As4()[0] != 127 {
		t.Fatalf("addresses %s %s", c.Addr(), c2.Addr())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := c.Start(context.Background()); err == nil {
		t.Fatal("Start after Close succeeded")
	}

	// Cancelling Start's context closes the cloud.
	log, closed := closeSignal()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c3 := startCloudCtx(t, ctx, Config{Logger: log})
	addr := c3.Addr()
	cancel()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the context did not close the cloud")
	}
	if conn, err := net.Dial("tcp", addr.String()); err == nil {
		conn.Close()
		t.Fatal("cloud still accepts connections after its context ended")
	}

	// Close before Start is fine.
	c4, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c4.Close(); err != nil || c4.Addr().IsValid() {
		t.Fatalf("Close before Start: %v %s", err, c4.Addr())
	}
}

func TestDerivedSize(t *testing.T) {
	t.Parallel()
	for _, r := range DefaultReleases() {
		if s := DerivedSize(r.GUID); s < minDerivedSize || s >= maxDerivedSize {
			t.Errorf("DerivedSize(%s) = %d", r.GUID, s)
		}
		if DerivedSize(r.GUID) != DerivedSize(strings.ToUpper(r.GUID)) {
			t.Errorf("DerivedSize depends on GUID case")
		}
	}
	if !bytes.Equal(PayloadBytes("a", 1000)[:10], PayloadBytes("a", 10)) {
		t.Error("PayloadBytes is not a stable stream")
	}
}
