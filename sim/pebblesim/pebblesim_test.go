package pebblesim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestStartServeClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), goleak.IgnoreTopFunction(LeakedGoroutine))
	SetEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.TLSRootsPEM()) {
		t.Fatal("TLSRootsPEM holds no certificate")
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	get := func(url string) []byte {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
		}
		return body
	}

	if !strings.HasPrefix(p.DirectoryURL(), "https://127.0.0.1:") {
		t.Fatalf("DirectoryURL %s is not on 127.0.0.1", p.DirectoryURL())
	}
	var dir map[string]any
	if err := json.Unmarshal(get(p.DirectoryURL()), &dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := dir["newOrder"]; !ok {
		t.Fatalf("directory has no newOrder: %v", dir)
	}

	want, err := p.IssuerRootPEM()
	if err != nil {
		t.Fatal(err)
	}
	if got := get(p.ManagementURL() + "/roots/0"); !bytes.Equal(got, want) {
		t.Fatalf("/roots/0 differs from IssuerRootPEM")
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(p.DirectoryURL()); err == nil {
		t.Fatal("still serving after Close")
	}
}

func TestStartRefusesWithoutAlwaysValid(t *testing.T) {
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "")
	p, err := Start(context.Background())
	if err == nil {
		p.Close()
		t.Fatal("Start succeeded")
	}
	if !strings.Contains(err.Error(), "SetEnv") {
		t.Fatalf("error does not say what to do: %v", err)
	}
}
