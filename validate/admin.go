package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/scpgate/scpgate/gateway/audit"
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

// AdminAudit asks the gateway's admin listener (/v1/audit) for the records of the probes'
// connection ids: for a validator that cannot read the gateway's audit file. The gateway keeps
// the records of its most recent connections only.
type AdminAudit string

func (a AdminAudit) String() string { return strings.TrimRight(string(a), "/") + "/v1/audit" }

// adminAuditBatch is how many ids go into one request (the admin listener takes 256).
const adminAuditBatch = 100

// Lookup asks for the ids in batches.
func (a AdminAudit) Lookup(ctx context.Context, ids []string) (map[string]GatewayRecord, error) {
	out := map[string]GatewayRecord{}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	for start := 0; start < len(ids); start += adminAuditBatch {
		q := url.Values{}
		for _, id := range ids[start:min(start+adminAuditBatch, len(ids))] {
			q.Add("conn", id)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.String()+"?"+q.Encode(), nil)
		if err != nil {
			return out, err
		}
		req.Header.Set("User-Agent", userAgent)
		resp, err := client.Do(req)
		if err != nil {
			return out, fmt.Errorf("admin %s: %w", a.String(), err)
		}
		var body struct {
			Records []json.RawMessage `json:"records"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, maxAdminAnswer)).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return out, fmt.Errorf("admin %s answered %s", a.String(), resp.Status)
		}
		if err != nil {
			return out, fmt.Errorf("admin %s: %w", a.String(), err)
		}
		for _, raw := range body.Records {
			var compact bytes.Buffer
			if err := json.Compact(&compact, raw); err != nil {
				continue
			}
			rec, err := audit.DecodeLine(compact.Bytes())
			if err != nil {
				continue
			}
			out[rec.ConnID] = recordOf(rec, compact.String())
		}
	}
	return out, nil
}
