package cloudsim

import (
	"fmt"
	"net/netip"
	"strings"
)

// Host names with their own routes.
const (
	HostFwlink           = "go.microsoft.com"
	HostConnectedService = "sccm.manage.microsoft.com"
	HostDownload         = "download.microsoft.com"
	HostCDN              = "configmgrbits.cdn.manage.microsoft.com"
	// HostAzureEdge is the CDN name configmgrbits.cdn.manage.microsoft.com replaced in March
	// 2025; it serves the same payloads and, as Microsoft documents, only TLS 1.2.
	HostAzureEdge = "configmgrbits.azureedge.net"
)

// DefaultHosts returns every HTTPS (port 443) name from the endpoint lists of endpoints.yaml, current
// and historical, with one sample name for each wildcard pattern. The certificate covers all of
// them and each answers GET / with a short banner. The port-80 certificate-revocation names are
// not served: the cloud only listens on 443.
func DefaultHosts() []string {
	return []string{
		// updates-and-servicing (current)
		"a1.akamaiedge.net",         // sample for *.akamaiedge.net
		"a1.akamaitechnologies.com", // sample for *.akamaitechnologies.com
		HostConnectedService,        // matches *.manage.microsoft.com
		HostCDN,                     // also matches *.manage.microsoft.com (two labels in front)
		HostFwlink,
		"aka.ms",
		HostDownload,
		"download.windowsupdate.com",
		"download.visualstudio.microsoft.com",
		"definitionupdates.microsoft.com",
		HostAzureEdge,
		"cmbitsstore.blob.core.windows.net",
		"ceuswatcab01.blob.core.windows.net",
		"ceuswatcab02.blob.core.windows.net",
		"eaus2watcab01.blob.core.windows.net",
		"eaus2watcab02.blob.core.windows.net",
		"weus2watcab01.blob.core.windows.net",
		"weus2watcab02.blob.core.windows.net",
		"umwatsonc.events.data.microsoft.com",
		"sample-umwatsonc.events.data.microsoft.com", // sample for *-umwatsonc.events.data.microsoft.com
		// updates-and-servicing (2016-2019 documentation)
		"blob.core.windows.net",
		"sccmconnected-a01.cloudapp.net",
		// intune-hybrid (historical)
		"manage.microsoft.com",
		"bspmts.mp.microsoft.com",
		"login.microsoftonline.com",
		// windows-servicing
		"dl.delivery.mp.microsoft.com",
		// azure-services
		"management.azure.com",
		"management.usgovcloudapi.net",
		// azure-ad-discovery
		"graph.microsoft.com",
		// tenant-attach
		"dc.services.visualstudio.com",
		// endpoint-analytics
		"graph.windows.net",
		// external-notifications
		"sample.westus.logic.azure.com", // sample for *.logic.azure.com
	}
}

// normalizeHost lower-cases a host (from a Host header, SNI or configuration), drops a port and
// one trailing dot, and reports whether what is left looks like a DNS name (IP literals are not
// names we serve).
func normalizeHost(h string) (string, bool) {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i+1:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" || len(h) > 253 {
		return "", false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return "", false
	}
	prevDot := true
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '.':
			if prevDot {
				return "", false
			}
			prevDot = true
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return "", false
		}
		prevDot = false
	}
	if prevDot {
		return "", false
	}
	return h, true
}

func normalizeHosts(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, h := range in {
		n, ok := normalizeHost(h)
		if !ok || strings.Contains(h, ":") {
			return nil, fmt.Errorf("cloudsim: bad host name %q", h)
		}
		out = append(out, n)
	}
	return out, nil
}
