package cloudsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/scpgate/scpgate/manifest"
)

// Paths of the connected service (sccm.manage.microsoft.com). IIS matches paths
// case-insensitively, so the cloud does too for these.
const (
	ServicePath          = "/SCCMConnectedService.svc"
	ServiceManifestPath  = ServicePath + "/Manifest"
	ServiceUsageDataPath = ServicePath + "/UsageData"
	// IdempotencyKeyHeader names the header that makes a retried upload count once.
	IdempotencyKeyHeader = "Idempotency-Key"
	// ContentSHA256Header optionally carries the hex SHA-256 of an upload body.
	ContentSHA256Header  = "Content-SHA256"
	maxIdempotencyKeyLen = 200
)

func (c *Cloud) serveHTTP(w http.ResponseWriter, r *http.Request) {
	c.inflight.Add(1)
	defer c.inflight.Done()

	host, hostOK := normalizeHost(r.Host)
	sni := ""
	if r.TLS != nil {
		sni, _ = normalizeHost(r.TLS.ServerName)
	}
	rec := RequestRecord{
		Time: time.Now(), RemoteAddr: r.RemoteAddr, SNI: sni, Host: host,
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Range: r.Header.Get("Range"),
	}
	if !hostOK {
		rec.Host = r.Host
	}
	rw := &respWriter{w: w, ctx: r.Context()}
	defer func() {
		rw.finish()
		rec.Status, rec.BodyBytes = rw.status, rw.sent
		c.record(rec)
	}()

	// 421 is HTTP's answer for "this server does not serve that name", including a Host that
	// differs from the TLS server name the connection was set up for.
	if !hostOK || !c.serves(host) || sni != "" && sni != host {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.WriteHeader(http.StatusMisdirectedRequest)
		fmt.Fprintf(rw, "scpgate cloudsim: misdirected request (host %q, TLS server name %q)\n", r.Host, sni)
		return
	}

	if f, ok := c.takeFault(host, r.URL.Path, false); ok {
		rec.Fault = f.Kind
		switch f.Kind {
		case FaultStatus:
			http.Error(rw, "scpgate cloudsim: injected fault", f.Status)
			return
		case FaultSlow:
			if f.AfterBytes == 0 && !wait(r.Context(), f.Delay) {
				rw.drop(false) // the client is gone (or the cloud is closing): no answer
				return
			}
		}
		rw.fault = &f
	}
	c.route(rw, r, host)
}

func (c *Cloud) route(w http.ResponseWriter, r *http.Request, host string) {
	p := r.URL.Path
	if p == "/" {
		if allowMethods(w, r, http.MethodGet, http.MethodHead) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "scpgate cloudsim: "+host)
		}
		return
	}
	switch host {
	case HostFwlink:
		if p == "/fwlink" || p == "/fwlink/" {
			c.fwlink(w, r)
			return
		}
	case HostConnectedService:
		switch {
		case strings.EqualFold(p, ServiceManifestPath):
			c.connectedService(w, r)
			return
		case strings.EqualFold(p, ServiceUsageDataPath):
			c.usageData(w, r)
			return
		}
	case HostDownload:
		if p == c.signedPath {
			c.serveManifest(w, r)
			return
		}
	case HostCDN, HostAzureEdge:
		if strings.HasPrefix(p, "/release/") {
			c.servePayload(w, r)
			return
		}
	}
	http.NotFound(w, r)
}

// allowMethods answers 405 (with Allow) unless r uses one of methods.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// queryValue looks a parameter up case-insensitively, as the Microsoft services do.
func queryValue(q url.Values, name string) (string, bool) {
	for k, v := range q {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0], true
		}
	}
	return "", false
}

// fwlink redirects any numeric LinkId to the connected service, keeping the client's query
// (HierarchyId, Version, ...) so the service sees what the SCP sent.
func (c *Cloud) fwlink(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	id, ok := queryValue(r.URL.Query(), "LinkId")
	if !ok || id == "" || len(id) > 10 || strings.Trim(id, "0123456789") != "" {
		http.Error(w, "unknown LinkId", http.StatusNotFound)
		return
	}
	http.Redirect(w, r, "https://"+HostConnectedService+ServiceManifestPath+"?"+r.URL.RawQuery, http.StatusFound)
}

// connectedService points the SCP at the manifest. The simulation has one manifest for every
// hierarchy; a Version parameter, if sent, must at least be a version.
func (c *Cloud) connectedService(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	if v, ok := queryValue(r.URL.Query(), "Version"); ok {
		if _, err := manifest.ParseVersion(v); err != nil {
			http.Error(w, "bad Version parameter", http.StatusBadRequest)
			return
		}
	}
	http.Redirect(w, r, c.ManifestURL(), http.StatusFound)
}

func (c *Cloud) serveManifest(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("ETag", c.signedETag)
	http.ServeContent(w, r, manifest.FileName, c.manifest.Generated, bytes.NewReader(c.signed))
}

// servePayload serves /release/<version>/<GUID>/<GUID>.cab through http.ServeContent, which
// implements Range, If-Range (against the ETag, the payload's SHA-256) and conditional GETs.
func (c *Cloud) servePayload(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/release/"), "/")
	if len(parts) != 3 {
		http.NotFound(w, r)
		return
	}
	version, guid, file := parts[0], parts[1], parts[2]
	p := c.payloads[strings.ToLower(guid)]
	if p == nil || p.update.Version != version || !strings.EqualFold(file, guid+".cab") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+p.update.SHA256+`"`)
	http.ServeContent(w, r, file, p.update.Published, bytes.NewReader(p.data))
}

// usageData receives a usage-data package. The package is stored once per idempotency key;
// a repeat with the same content is acknowledged again (202, duplicate: true), a repeat with
// different content is a conflict (409), as in the IETF Idempotency-Key draft.
func (c *Cloud) usageData(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	key := r.Header.Get(IdempotencyKeyHeader)
	if !validIdempotencyKey(key) {
		http.Error(w, "missing or malformed "+IdempotencyKeyHeader+" header", http.StatusBadRequest)
		return
	}
	want := strings.ToLower(r.Header.Get(ContentSHA256Header))
	if want != "" {
		if b, err := hex.DecodeString(want); err != nil || len(b) != sha256.Size {
			http.Error(w, "malformed "+ContentSHA256Header+" header", http.StatusBadRequest)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, c.maxUpload))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "usage data package too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	if len(body) == 0 {
		http.Error(w, "empty usage data package", http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(body)
	got := hex.EncodeToString(sum[:])
	if want != "" && want != got {
		http.Error(w, ContentSHA256Header+" does not match the body", http.StatusBadRequest)
		return
	}

	c.mu.Lock()
	var up Upload
	dup := false
	if i, ok := c.uploadIdx[key]; ok {
		if c.uploads[i].SHA256 != got {
			c.mu.Unlock()
			http.Error(w, IdempotencyKeyHeader+" was already used for a different package", http.StatusConflict)
			return
		}
		c.uploads[i].Acks++
		up, dup = c.uploads[i], true
	} else {
		up = Upload{IdempotencyKey: key, Size: int64(len(body)), SHA256: got, Data: body,
			Received: time.Now().UTC(), RemoteAddr: r.RemoteAddr, Acks: 1}
		c.uploadIdx[key] = len(c.uploads)
		c.uploads = append(c.uploads, up)
	}
	c.mu.Unlock()
	c.log.Info("cloudsim: usage data acknowledged", "key", key, "bytes", up.Size, "sha256", got, "duplicate", dup)

	out, _ := json.Marshal(Receipt{IdempotencyKey: key, SHA256: got, Size: up.Size, Received: up.Received, Duplicate: dup})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	w.Write(append(out, '\n'))
}

// validIdempotencyKey accepts 1..200 visible ASCII characters: enough for UUIDs and hashes,
// and safe to log.
func validIdempotencyKey(k string) bool {
	if k == "" || len(k) > maxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}
