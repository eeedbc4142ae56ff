package fetch

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// MaxRedirects bounds a redirect chain (fwlink → connected service → manifest is two).
const MaxRedirects = 5

// Get GETs u, following at most MaxRedirects redirects to https URLs (onRedirect, if set, sees
// each new URL), and returns at most limit bytes of a 200 answer and the final URL.
func Get(ctx context.Context, c Doer, u string, limit int64, onRedirect func(string)) ([]byte, string, error) {
	for range MaxRedirects + 1 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, "", err
		}
		res, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		if res.StatusCode >= 300 && res.StatusCode <= 399 {
			loc, lerr := res.Location()
			res.Body.Close()
			if lerr != nil || loc.Scheme != "https" {
				return nil, "", fmt.Errorf("GET %s: %s without an https Location", u, res.Status)
			}
			u = loc.String()
			if onRedirect != nil {
				onRedirect(u)
			}
			continue
		}
		body, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return nil, "", fmt.Errorf("GET %s: %s", u, res.Status)
		}
		if err != nil {
			return nil, "", fmt.Errorf("GET %s: %w", u, err)
		}
		if int64(len(body)) > limit {
			return nil, "", fmt.Errorf("GET %s: larger than %d bytes", u, limit)
		}
		return body, u, nil
	}
	return nil, "", fmt.Errorf("GET %s: more than %d redirects", u, MaxRedirects)
}
