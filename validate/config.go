package validate

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/scpgate/scpgate/policy"
)

// Config configures Run. Proxy and Policy are required; everything else has a default.
type Config struct {
	// Proxy is the gateway as the SCP uses it: http://host:port or https://host:port.
	Proxy string
	// ProxyRootCAs verifies an https:// proxy's certificate; nil uses the system roots.
	ProxyRootCAs *x509.CertPool
	// User and Password are the proxy credentials; an empty User means authentication is off.
	User, Password string
	// RootCAs verifies the endpoints' certificates (through the tunnel); nil: system roots.
	RootCAs *x509.CertPool
	// Policy is the policy the checks are derived from.
	Policy *policy.Policy
	// Derive says what to derive (groups, samples, private targets). AuthEnabled and User are
	// filled from User.
	Derive DeriveOptions
	// Issuers are the expected issuers of each endpoint's chain, keyed by host name, by the
	// pattern as written in the policy, or "*" for every endpoint. Values are common names or
	// whole distinguished names. A chain showing none of them is TLS inspection.
	Issuers map[string][]string
	// Concurrency bounds the probes in flight (default 8).
	Concurrency int
	// Rate bounds the probes started per second (default 20; negative: no bound), so a run
	// stays under the gateway's per-client request rate (50 per second by default) alongside
	// the SCP's own traffic. A probe the gateway still answers 429 is retried.
	Rate float64
	// CheckTimeout bounds one probe (default 15s); Timeout bounds the whole run (default 2m).
	CheckTimeout, Timeout time.Duration
	// Audit is where the gateway's records come from (AuditFiles, or AdminAudit for the admin
	// listener's /v1/audit); nil: probes are judged by the gateway's answers alone.
	Audit AuditSource
	// AdminURL is the gateway's admin listener (http://host:port); when set, the run asks it
	// which policy the gateway runs (/v1/policy) and reports whether it is the checked one.
	AdminURL string
	// AuditWait is how long to wait for the gateway's records to reach the audit source
	// (the gateway syncs its file every second; default 5s).
	AuditWait time.Duration
	// Resolve looks a name up for the IP-literal checks when the gateway's record does not
	// give the vetted address; nil uses the system resolver.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Progress, if set, is called after each finished check.
	Progress func(done, total int)
	// Now is the clock (days to expiry, report times); nil: time.Now.
	Now func() time.Time
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// Dial opens the TCP connection to the proxy; nil uses a net.Dialer. The SCP client passes
	// its own dialer, which refuses every connection while the site is offline.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MustPassOnly runs only the must-pass checks (the endpoints of the enabled groups), as the
	// SCP client's scheduled check does: no near misses, no IP literals, no wrong-password probe
	// (which could lock the SCP's own address out at the gateway), no name lookups of its own.
	MustPassOnly bool

	proxyURL *url.URL
}

// withDefaults checks c and fills in defaults; it returns a copy.
func (c Config) withDefaults() (Config, error) {
	if c.Policy == nil {
		return c, errors.New("validate: Config.Policy is required")
	}
	u, err := ParseProxyURL(c.Proxy)
	if err != nil {
		return c, err
	}
	c.proxyURL = u
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = 15 * time.Second
	}
	if c.Rate == 0 {
		c.Rate = 20
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.AuditWait <= 0 {
		c.AuditWait = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.Resolve == nil {
		c.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
		}
	}
	c.Derive.AuthEnabled = c.User != ""
	c.Derive.User = c.User
	return c, nil
}

// ParseProxyURL accepts http://host:port or https://host:port with nothing else.
func ParseProxyURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("validate: proxy %q: want http://host:port or https://host:port (credentials go in a file or the environment, not the URL)", s)
	}
	return u, nil
}

// issuersFor returns the expected issuers for a check: by host, then by pattern, then "*".
func (c *Config) issuersFor(ch Check) []string {
	if v, ok := c.Issuers[ch.Host]; ok {
		return v
	}
	if v, ok := c.Issuers[ch.Pattern]; ok {
		return v
	}
	return c.Issuers["*"]
}

// FileConfig is the YAML file of `scpgate validate -config FILE`. Relative paths are relative
// to the file's directory.
type FileConfig struct {
	Proxy           string              `yaml:"proxy"`
	ProxyCA         string              `yaml:"proxy_ca"`
	CredentialsFile string              `yaml:"credentials_file"` // one line "user:password"
	User            string              `yaml:"user"`             // password from SCPGATE_PROXY_PASSWORD
	CABundle        string              `yaml:"ca_bundle"`
	Policy          string              `yaml:"policy"`
	Groups          []string            `yaml:"groups"`
	Samples         map[string][]string `yaml:"samples"`
	Issuers         map[string][]string `yaml:"issuers"`
	PrivateAddress  string              `yaml:"private_address"`
	MetadataAddress string              `yaml:"metadata_address"`
	PrivateName     string              `yaml:"private_name"`
	DNSServer       string              `yaml:"dns_server"`
	Concurrency     int                 `yaml:"concurrency"`
	Rate            float64             `yaml:"rate"` // probes started per second; -1: no bound
	CheckTimeout    string              `yaml:"check_timeout"`
	Timeout         string              `yaml:"timeout"`
	AuditWait       string              `yaml:"audit_wait"`
	Audit           []string            `yaml:"audit"`
	AdminURL        string              `yaml:"admin_url"`
	Formats         []string            `yaml:"formats"`
	OutputDir       string              `yaml:"output_dir"`
	Evidence        string              `yaml:"evidence"`
}

// MaxConfigSize bounds the configuration file.
const MaxConfigSize = 1 << 20

// ParseFileConfig decodes a configuration file strictly: unknown keys, a second document and
// bad durations are errors naming the file.
func ParseFileConfig(name string, data []byte) (*FileConfig, error) {
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, MaxConfigSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var fc FileConfig
	if err := dec.Decode(&fc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty configuration file", name)
		}
		return nil, fmt.Errorf("%s: %v", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: only one YAML document is allowed", name)
	}
	if err := fc.Check(name); err != nil {
		return nil, err
	}
	return &fc, nil
}

// Check applies the value rules of the file to fc (after flags changed it, for example);
// name says where the values came from in errors.
func (fc *FileConfig) Check(name string) error {
	for _, kv := range [][2]string{{"check_timeout", fc.CheckTimeout}, {"timeout", fc.Timeout}, {"audit_wait", fc.AuditWait}} {
		if kv[1] == "" {
			continue
		}
		if d, err := time.ParseDuration(kv[1]); err != nil || d <= 0 {
			return fmt.Errorf("%s: %s: want a positive duration such as 30s, got %q", name, kv[0], kv[1])
		}
	}
	if fc.Concurrency < 0 || fc.Concurrency > 256 {
		return fmt.Errorf("%s: concurrency: want 1 to 256, got %d", name, fc.Concurrency)
	}
	if fc.Proxy != "" {
		if _, err := ParseProxyURL(fc.Proxy); err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
	}
	if fc.DNSServer != "" {
		if _, err := netip.ParseAddrPort(fc.DNSServer); err != nil {
			return fmt.Errorf("%s: dns_server: want IP:port, got %q", name, fc.DNSServer)
		}
	}
	return nil
}

// LoadFileConfig reads and parses a configuration file.
func LoadFileConfig(path string) (*FileConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ParseFileConfig(path, data)
}

// ReadCredentials reads "user:password" from the first line of a file.
func ReadCredentials(path string) (user, password string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("credentials file: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimRight(line, "\r")
	user, password, ok := strings.Cut(line, ":")
	if !ok || user == "" {
		return "", "", fmt.Errorf("credentials file %s: want one line user:password", path)
	}
	return user, password, nil
}

// LoadPool reads a PEM bundle of CA certificates.
func LoadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// DNSResolver returns a Resolve function that asks the DNS server at addr (IP:port).
func DNSResolver(addr string) func(ctx context.Context, host string) ([]netip.Addr, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		return r.LookupNetIP(ctx, "ip4", host)
	}
}

// Environment variables for credentials, so a password never sits in a command line or a
// configuration file.
const (
	EnvUser     = "SCPGATE_PROXY_USER"
	EnvPassword = "SCPGATE_PROXY_PASSWORD"
)

// Build turns the file configuration into a Config: it reads the policy (the shipped one
// when none is named), the CA bundles and the credentials (file, else the environment
// through getenv). base is the directory relative paths are resolved against.
func (fc *FileConfig) Build(base string, getenv func(string) string, shipped []byte, shippedName string) (Config, error) {
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	cfg := Config{Proxy: fc.Proxy, Issuers: fc.Issuers, Concurrency: fc.Concurrency, Rate: fc.Rate, AdminURL: fc.AdminURL}
	if fc.Proxy == "" {
		return cfg, errors.New("proxy: required (http://host:port of the gateway)")
	}
	var err error
	if fc.Policy != "" {
		cfg.Policy, err = policy.Load(rel(fc.Policy))
	} else {
		cfg.Policy, err = policy.Parse(shippedName, shipped)
	}
	if err != nil {
		return cfg, err
	}
	if shipped != nil {
		if sp, err := policy.Parse(shippedName, shipped); err == nil {
			cfg.Derive.Shipped = sp
		}
	}
	if fc.ProxyCA != "" {
		if cfg.ProxyRootCAs, err = LoadPool(rel(fc.ProxyCA)); err != nil {
			return cfg, fmt.Errorf("proxy_ca: %w", err)
		}
	}
	if fc.CABundle != "" {
		if cfg.RootCAs, err = LoadPool(rel(fc.CABundle)); err != nil {
			return cfg, fmt.Errorf("ca_bundle: %w", err)
		}
	}
	switch {
	case fc.CredentialsFile != "":
		if cfg.User, cfg.Password, err = ReadCredentials(rel(fc.CredentialsFile)); err != nil {
			return cfg, err
		}
	case fc.User != "" || getenv(EnvUser) != "":
		cfg.User = fc.User
		if cfg.User == "" {
			cfg.User = getenv(EnvUser)
		}
		cfg.Password = getenv(EnvPassword)
		if cfg.Password == "" {
			return cfg, fmt.Errorf("user %q: set the password in %s or use credentials_file", cfg.User, EnvPassword)
		}
	}
	cfg.Derive.Groups = fc.Groups
	cfg.Derive.Samples = fc.Samples
	cfg.Derive.PrivateAddr = fc.PrivateAddress
	cfg.Derive.MetadataAddr = fc.MetadataAddress
	cfg.Derive.PrivateName = fc.PrivateName
	for _, d := range []struct {
		s   string
		dst *time.Duration
	}{{fc.CheckTimeout, &cfg.CheckTimeout}, {fc.Timeout, &cfg.Timeout}, {fc.AuditWait, &cfg.AuditWait}} {
		if d.s != "" {
			*d.dst, _ = time.ParseDuration(d.s) // checked by ParseFileConfig
		}
	}
	if fc.DNSServer != "" {
		cfg.Resolve = DNSResolver(fc.DNSServer)
	}
	switch {
	case len(fc.Audit) > 0:
		files := make(AuditFiles, len(fc.Audit))
		for i, a := range fc.Audit {
			files[i] = rel(a)
		}
		cfg.Audit = files
	case fc.AdminURL != "":
		// Without the files, the gateway's admin listener answers for its recent records.
		cfg.Audit = AdminAudit(fc.AdminURL)
	}
	return cfg, nil
}
