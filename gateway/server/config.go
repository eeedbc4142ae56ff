package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the gateway's own configuration file (not the policy). Paths in it are relative to
// the directory of the file that holds them.
type Config struct {
	// Listen lists plain HTTP proxy listeners ("127.0.0.1:3128").
	Listen []string `yaml:"listen"`
	// TLSListen lists TLS proxy listeners: clients use https:// proxy URLs, so proxy
	// credentials never cross the wire in clear. Needs TLS.
	TLSListen []string `yaml:"tls_listen"`
	// TLS says where the TLS listeners' certificate comes from.
	TLS TLSConfig `yaml:"tls"`
	// Admin is the admin listener (/metrics, /healthz, /readyz, /v1/explain, /v1/policy);
	// empty disables it. Keep it on loopback or a management network.
	Admin string `yaml:"admin"`
	// Auth turns on proxy authentication.
	Auth AuthConfig `yaml:"auth"`
	// Watch reloads the policy and htpasswd files when they change (SIGHUP always does).
	Watch *bool `yaml:"watch"`
	// Policy is the endpoints.yaml file.
	Policy string `yaml:"policy"`
	// DNS configures the gateway's own resolver.
	DNS DNSConfig `yaml:"dns"`
	// AllowRanges are special-purpose ranges (loopback, private, ...) the gateway may dial anyway.
	AllowRanges []string    `yaml:"allow_ranges"`
	Audit       AuditConfig `yaml:"audit"`
	Timeouts    Timeouts    `yaml:"timeouts"`
	Limits      Limits      `yaml:"limits"`

	// dir is where relative paths are resolved from.
	dir string
}

// TLSConfig is a certificate from static PEM files or from an ACME CA (via certmagic).
type TLSConfig struct {
	CertFile string      `yaml:"cert_file"`
	KeyFile  string      `yaml:"key_file"`
	ACME     *ACMEConfig `yaml:"acme"`
}

// ACMEConfig obtains the listener certificate from an internal ACME CA.
type ACMEConfig struct {
	DirectoryURL string `yaml:"directory_url"`
	// TrustedRootsFile is the CA of the ACME server's own HTTPS endpoint.
	TrustedRootsFile string   `yaml:"trusted_roots_file"`
	Email            string   `yaml:"email"`
	Domains          []string `yaml:"domains"`
	// StorageDir is certmagic's storage; instances that share it present one certificate.
	StorageDir string `yaml:"storage_dir"`
	// ChallengeHost is where the HTTP-01 challenge listener binds (empty: all interfaces), and
	// ChallengeHTTPPort replaces port 80 for it (when the CA's traffic is forwarded).
	ChallengeHost     string `yaml:"challenge_host"`
	ChallengeHTTPPort int    `yaml:"challenge_http_port"`
}

// AuthConfig enables HTTP Basic proxy authentication against an htpasswd file (bcrypt only).
type AuthConfig struct {
	// Htpasswd is the users file; empty means authentication is off.
	Htpasswd string `yaml:"htpasswd"`
	// MaxFailures from one client address within FailureWindow lock it out for Lockout
	// (answered 429 with Retry-After).
	MaxFailures   int           `yaml:"max_failures"`
	FailureWindow time.Duration `yaml:"failure_window"`
	Lockout       time.Duration `yaml:"lockout"`
}

// DNSConfig selects the upstream DNS servers.
type DNSConfig struct {
	// Servers are "host:port"; empty means the system's /etc/resolv.conf.
	Servers []string      `yaml:"servers"`
	Timeout time.Duration `yaml:"timeout"`
}

// AuditConfig says where audit lines go.
type AuditConfig struct {
	// Path is a file, or "-" (default) for standard output.
	Path         string        `yaml:"path"`
	SyncInterval time.Duration `yaml:"sync_interval"`
	MaxBytes     int64         `yaml:"max_bytes"`
	MaxBackups   int           `yaml:"max_backups"`
}

// Timeouts bound every wait the gateway does on behalf of a client.
type Timeouts struct {
	ReadHeader time.Duration `yaml:"read_header"`
	Dial       time.Duration `yaml:"dial"`
	DNS        time.Duration `yaml:"dns"`
	// Idle closes a tunnel that moved no byte in either direction for this long.
	Idle time.Duration `yaml:"idle"`
	// Lifetime, if set, closes any tunnel this long after it opened.
	Lifetime time.Duration `yaml:"lifetime"`
	// Drain is how long open tunnels may go on after SIGTERM before they are closed.
	Drain time.Duration `yaml:"drain"`
	// ResponseHeader bounds the wait for an upstream's response on plain HTTP forwarding.
	ResponseHeader time.Duration `yaml:"response_header"`
}

// Limits bound what one client can make the gateway hold.
type Limits struct {
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxConnections bounds open client connections overall; 0 is unlimited.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerClient bounds them per client address (IPv6 per /64); 0 is unlimited.
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	// RequestsPerSecond per client address, with Burst; 0 is unlimited.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
}

// MinIdleTimeout is the floor for the tunnel idle timeout: the SCP holds long-lived connections
// to the connected service, and a shorter timeout would cut them mid-transfer.
const MinIdleTimeout = 3 * time.Minute

// Defaults returns the configuration used for every field a file leaves out.
func Defaults() Config {
	return Config{
		Listen: []string{"127.0.0.1:3128"},
		Policy: "endpoints.yaml",
		DNS:    DNSConfig{Timeout: 2 * time.Second},
		Audit:  AuditConfig{Path: "-", SyncInterval: time.Second, MaxBackups: 5},
		Timeouts: Timeouts{
			ReadHeader:     10 * time.Second,
			Dial:           10 * time.Second,
			DNS:            5 * time.Second,
			Idle:           10 * time.Minute,
			ResponseHeader: 30 * time.Second,
			Drain:          30 * time.Second,
		},
		Limits: Limits{
			MaxHeaderBytes:          32 << 10,
			MaxConnections:          10000,
			MaxConnectionsPerClient: 512,
			RequestsPerSecond:       50,
			Burst:                   100,
		},
		Auth: AuthConfig{MaxFailures: 5, FailureWindow: time.Minute, Lockout: 5 * time.Minute},
	}
}

// LoadConfig reads a gateway configuration file strictly: unknown keys are errors.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read gateway config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return Config{}, err
	}
	cfg.dir = abs
	return cfg, nil
}

// ParseConfig parses configuration bytes over Defaults and validates the result.
func ParseConfig(data []byte) (Config, error) {
	cfg := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file is io.EOF: it means "all defaults".
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	return cfg, cfg.Validate()
}

// Validate reports every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Listen) == 0 && len(c.TLSListen) == 0 {
		errs = append(errs, errors.New("listen, tls_listen: at least one listener address is required"))
	}
	for key, addrs := range map[string][]string{"listen": c.Listen, "tls_listen": c.TLSListen} {
		for _, l := range addrs {
			if _, err := netip.ParseAddrPort(l); err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not IP:port (names are not accepted, to keep the bind address explicit)", key, l))
			}
		}
	}
	if c.Admin != "" {
		if _, err := netip.ParseAddrPort(c.Admin); err != nil {
			errs = append(errs, fmt.Errorf("admin: %q is not IP:port", c.Admin))
		}
	}
	static := c.TLS.CertFile != "" || c.TLS.KeyFile != ""
	switch {
	case len(c.TLSListen) > 0 && !static && c.TLS.ACME == nil:
		errs = append(errs, errors.New("tls: tls_listen needs tls.cert_file and tls.key_file, or tls.acme"))
	case static && c.TLS.ACME != nil:
		errs = append(errs, errors.New("tls: use either cert_file/key_file or acme, not both"))
	case static && (c.TLS.CertFile == "" || c.TLS.KeyFile == ""):
		errs = append(errs, errors.New("tls: cert_file and key_file go together"))
	case c.TLS.ACME != nil && (c.TLS.ACME.DirectoryURL == "" || len(c.TLS.ACME.Domains) == 0):
		errs = append(errs, errors.New("tls.acme: directory_url and domains are required"))
	}
	if c.Auth.Htpasswd != "" && (c.Auth.MaxFailures < 1 || c.Auth.FailureWindow <= 0 || c.Auth.Lockout <= 0) {
		errs = append(errs, errors.New("auth: max_failures, failure_window and lockout must be positive"))
	}
	if c.Limits.MaxConnections < 0 || c.Limits.MaxConnectionsPerClient < 0 || c.Limits.RequestsPerSecond < 0 || c.Limits.Burst < 0 {
		errs = append(errs, errors.New("limits: values must not be negative"))
	}
	if c.Limits.RequestsPerSecond > 0 && c.Limits.Burst < 1 {
		errs = append(errs, errors.New("limits.burst: must be at least 1 when requests_per_second is set"))
	}
	if c.Policy == "" {
		errs = append(errs, errors.New("policy: path to endpoints.yaml is required"))
	}
	for _, s := range c.DNS.Servers {
		if _, err := netip.ParseAddrPort(s); err != nil {
			errs = append(errs, fmt.Errorf("dns.servers: %q is not IP:port", s))
		}
	}
	if _, err := c.AllowPrefixes(); err != nil {
		errs = append(errs, err)
	}
	if c.Timeouts.Idle < MinIdleTimeout {
		errs = append(errs, fmt.Errorf("timeouts.idle: %s is below the minimum %s (the SCP holds long-lived connections)", c.Timeouts.Idle, MinIdleTimeout))
	}
	for name, d := range map[string]time.Duration{"read_header": c.Timeouts.ReadHeader, "dial": c.Timeouts.Dial, "dns": c.Timeouts.DNS, "response_header": c.Timeouts.ResponseHeader} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("timeouts.%s: must be positive", name))
		}
	}
	if c.Timeouts.Drain < 0 {
		errs = append(errs, errors.New("timeouts.drain: must not be negative"))
	}
	if c.Timeouts.Lifetime < 0 {
		errs = append(errs, errors.New("timeouts.lifetime: must not be negative"))
	}
	if c.Limits.MaxHeaderBytes < 1024 {
		errs = append(errs, fmt.Errorf("limits.max_header_bytes: %d is too small (minimum 1024)", c.Limits.MaxHeaderBytes))
	}
	return errors.Join(errs...)
}

// AllowPrefixes parses AllowRanges.
func (c Config) AllowPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(c.AllowRanges))
	for _, s := range c.AllowRanges {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("allow_ranges: %q is not a CIDR or address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// WatchFiles reports whether file changes trigger a reload (default true).
func (c Config) WatchFiles() bool { return c.Watch == nil || *c.Watch }

// Resolve makes a path from the config file absolute.
func (c Config) Resolve(path string) string {
	if path == "" || path == "-" || filepath.IsAbs(path) || c.dir == "" {
		return path
	}
	return filepath.Join(c.dir, path)
}
