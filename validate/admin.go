package validate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// GatewayPolicy is what the gateway's admin endpoint says about the policy it runs.
type GatewayPolicy struct {
	File    string `json:"file"`
	Version string `json:"version"`
	// Matches is true when the gateway runs the policy the checks were derived from.
	Matches bool `json:"matches"`
	// Raw is the /v1/policy answer as received (for the evidence bundle).
	Raw []byte `json:"-"`
}

// maxAdminAnswer bounds the admin answer read into memory.
const maxAdminAnswer = 4 << 20

// FetchGatewayPolicy asks the gateway's admin listener (http://host:port) for /v1/policy.
func FetchGatewayPolicy(ctx context.Context, adminURL string) (*GatewayPolicy, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin URL %q: want http://host:port", adminURL)
	}
	endpoint := strings.TrimRight(adminURL, "/") + "/v1/policy"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", userAgent)
	// The admin listener is local to the gateway: never through a proxy from the environment.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return nil, fmt.Errorf("admin %s: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("admin %s answered %s", endpoint, resp.Status)
	}
	var gp GatewayPolicy
	if err := json.Unmarshal(raw, &gp); err != nil {
		return nil, fmt.Errorf("admin %s: not a policy answer: %w", endpoint, err)
	}
	gp.Raw = raw
	return &gp, nil
}
