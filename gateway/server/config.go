package server

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

	"github.com/scpgate/scpgate/gateway"
	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/gateway/resolver"
	"github.com/scpgate/scpgate/gateway/tlslisten"
)

// Config is the gateway process's configuration file (not the policy). Each section is the
// configuration type of the part it configures; this type only adds what the process itself
// owns (listeners, the policy file, allow_ranges, watching, drain). Relative paths are relative
// to the directory of the file; LoadConfig makes them absolute.
type Config struct {
	// Listen lists plain HTTP proxy listeners ("127.0.0.1:3128").
	Listen []string `yaml:"listen"`
	// TLSListen lists TLS proxy listeners: clients use https:// proxy URLs, so proxy
	// credentials never cross the wire in clear. Needs TLS.
	TLSListen []string `yaml:"tls_listen"`
	// TLS says where the TLS listeners' certificate comes from.
	TLS tlslisten.Config `yaml:"tls"`
	// Admin is the admin listener (/metrics, /healthz, /readyz, /v1/explain, /v1/policy);
	// empty disables it. Keep it on loopback or a management network.
	Admin string `yaml:"admin"`
	// Auth turns on proxy authentication.
	Auth AuthConfig `yaml:"auth"`
	// Watch reloads the policy, htpasswd and static TLS files when they change (SIGHUP always
	// does).
	Watch *bool `yaml:"watch"`
	// Policy is the endpoints.yaml file.
	Policy string `yaml:"policy"`
	// DNS configures the gateway's own resolver.
	DNS resolver.Config `yaml:"dns"`
	// AllowRanges are special-purpose ranges (loopback, private, ...) the gateway may dial anyway.
	AllowRanges []string       `yaml:"allow_ranges"`
	Audit       audit.Config   `yaml:"audit"`
	Timeouts    Timeouts       `yaml:"timeouts"`
	Limits      gateway.Limits `yaml:"limits"`
}

// AuthConfig enables HTTP Basic proxy authentication against an htpasswd file (bcrypt only),
// with the lockout of addresses that keep failing.
type AuthConfig struct {
	// Htpasswd is the users file; empty means authentication is off.
	Htpasswd string                  `yaml:"htpasswd"`
	Lockout  proxyauth.LockoutConfig `yaml:",inline"`
}

// Timeouts are the request handler's, plus how long a drain may take.
type Timeouts struct {
	gateway.Timeouts `yaml:",inline"`
	// Drain is how long open tunnels may go on after SIGTERM before they are closed.
	Drain time.Duration `yaml:"drain"`
}

// Defaults returns the configuration used for every field a file leaves out.
func Defaults() Config {
	return Config{
		Listen:   []string{"127.0.0.1:3128"},
		Policy:   "endpoints.yaml",
		DNS:      resolver.Config{Timeout: 2 * time.Second},
		Audit:    audit.Config{Path: "-", SyncInterval: time.Second, MaxBackups: 5},
		Timeouts: Timeouts{Timeouts: gateway.DefaultTimeouts(), Drain: 30 * time.Second},
		Limits:   gateway.DefaultLimits(),
		Auth: AuthConfig{Lockout: proxyauth.LockoutConfig{
			MaxFailures: 5, FailureWindow: time.Minute, Lockout: 5 * time.Minute,
		}},
	}
}

// LoadConfig reads a gateway configuration file strictly (unknown keys are errors), makes its
// paths absolute and validates it.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read gateway config: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return Config{}, err
	}
	cfg, err := ParseConfig(data, dir)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses configuration bytes over Defaults, resolves relative paths against dir
// (none when dir is ""), and validates the result.
func ParseConfig(data []byte, dir string) (Config, error) {
	cfg := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file is io.EOF: it means "all defaults".
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	cfg.resolvePaths(dir)
	return cfg, cfg.Validate()
}

// resolvePaths makes every path in the file absolute, relative to dir.
func (c *Config) resolvePaths(dir string) {
	if dir == "" {
		return
	}
	abs := func(p *string) {
		if *p != "" && *p != "-" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Policy)
	abs(&c.Auth.Htpasswd)
	abs(&c.Audit.Path)
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	if a := c.TLS.ACME; a != nil {
		abs(&a.TrustedRootsFile)
		abs(&a.StorageDir)
	}
}

// Validate reports every problem with the configuration at once. It reads no file: the TLS
// files and the policy are checked when New loads them.
func (c Config) Validate() error {
	var errs []error
	if len(c.Listen) == 0 && len(c.TLSListen) == 0 {
		errs = append(errs, errors.New("listen, tls_listen: at least one listener address is required"))
	}
	for _, l := range []struct {
		key   string
		addrs []string
	}{{"listen", c.Listen}, {"tls_listen", c.TLSListen}} {
		for _, a := range l.addrs {
			if _, err := netip.ParseAddrPort(a); err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not IP:port (names are not accepted, to keep the bind address explicit)", l.key, a))
			}
		}
	}
	if c.Admin != "" {
		if _, err := netip.ParseAddrPort(c.Admin); err != nil {
			errs = append(errs, fmt.Errorf("admin: %q is not IP:port", c.Admin))
		}
	}
	hasTLS := c.TLS.CertFile != "" || c.TLS.KeyFile != "" || c.TLS.ACME != nil
	if len(c.TLSListen) > 0 && !hasTLS {
		errs = append(errs, errors.New("tls: tls_listen needs tls.cert_file and tls.key_file, or tls.acme"))
	}
	if c.Auth.Htpasswd != "" {
		l := c.Auth.Lockout
		if l.MaxFailures < 1 || l.FailureWindow <= 0 || l.Lockout <= 0 {
			errs = append(errs, errors.New("auth: max_failures, failure_window and lockout must be positive"))
		}
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
	errs = append(errs, c.Timeouts.Timeouts.Validate(), c.Limits.Validate())
	if c.Timeouts.Drain < 0 {
		errs = append(errs, errors.New("timeouts.drain: must not be negative"))
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
