package server

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/scpgate/scpgate/internal/yamlpos"

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

// LoadConfig reads a gateway configuration file strictly, makes its paths absolute and
// validates it. Every problem is reported, each at path:line:col in the file (a yamlpos.List):
// syntax errors where they are, unknown keys with the likely meant one, values of the wrong kind
// or out of range at the value.
func LoadConfig(path string) (Config, error) {
	cfg, _, err := loadConfig(path)
	return cfg, err
}

func loadConfig(path string) (Config, *yamlpos.Positions, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("gateway configuration: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return Config{}, nil, err
	}
	return parseConfig(path, data, dir)
}

// ParseConfig parses configuration bytes over Defaults, resolves relative paths against dir
// (none when dir is ""), and validates the result. Errors are a yamlpos.List without a file name.
func ParseConfig(data []byte, dir string) (Config, error) {
	cfg, _, err := parseConfig("", data, dir)
	return cfg, err
}

func parseConfig(file string, data []byte, dir string) (Config, *yamlpos.Positions, error) {
	cfg := Defaults()
	pos, err := yamlpos.Decode(file, data, &cfg)
	if err != nil {
		return Config{}, pos, err
	}
	cfg.resolvePaths(dir)
	if err := cfg.Validate(); err != nil {
		return Config{}, pos, locate(pos, err)
	}
	return cfg, pos, nil
}

// keyError is a problem with the value of one key ("listen[1]", "tls.cert_file").
type keyError struct{ key, msg string }

func (e *keyError) Error() string { return e.key + ": " + e.msg }

func keyErrorf(key, format string, args ...any) error {
	return &keyError{key, fmt.Sprintf(format, args...)}
}

// locate places every problem in err (a tree of errors.Join) at its key in the file: a keyError
// at its key, another error at the key its message starts with ("timeouts.idle: ..."), else at
// the top of the file.
func locate(pos *yamlpos.Positions, err error) yamlpos.List {
	var out yamlpos.List
	for _, err := range yamlpos.Leaves(err) {
		var ke *keyError
		if errors.As(err, &ke) {
			out = append(out, pos.Errorf(ke.key, "%s", ke.msg))
			continue
		}
		msg := err.Error()
		if key, rest, ok := strings.Cut(msg, ": "); ok && isKeyPath(key) {
			out = append(out, pos.Errorf(key, "%s", rest))
			continue
		}
		out = append(out, pos.Errorf("", "%s", msg))
	}
	out.Sort()
	return out
}

// isKeyPath reports whether s looks like "timeouts.idle" or "listen[0]".
func isKeyPath(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '[' || c == ']') {
			return false
		}
	}
	return s != ""
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
		errs = append(errs, keyErrorf("listen", "at least one listener address is required (listen or tls_listen)"))
	}
	for _, l := range []struct {
		key   string
		addrs []string
	}{{"listen", c.Listen}, {"tls_listen", c.TLSListen}} {
		for i, a := range l.addrs {
			if _, err := netip.ParseAddrPort(a); err != nil {
				errs = append(errs, keyErrorf(fmt.Sprintf("%s[%d]", l.key, i), "%q is not IP:port (names are not accepted, to keep the bind address explicit)", a))
			}
		}
	}
	if c.Admin != "" {
		if _, err := netip.ParseAddrPort(c.Admin); err != nil {
			errs = append(errs, keyErrorf("admin", "%q is not IP:port", c.Admin))
		}
	}
	hasTLS := c.TLS.CertFile != "" || c.TLS.KeyFile != "" || c.TLS.ACME != nil
	if len(c.TLSListen) > 0 && !hasTLS {
		errs = append(errs, keyErrorf("tls_listen", "needs tls.cert_file and tls.key_file, or tls.acme"))
	}
	if c.Auth.Htpasswd != "" {
		l := c.Auth.Lockout
		if l.MaxFailures < 1 || l.FailureWindow <= 0 || l.Lockout <= 0 {
			errs = append(errs, keyErrorf("auth", "max_failures, failure_window and lockout must be positive"))
		}
	}
	if c.Policy == "" {
		errs = append(errs, keyErrorf("policy", "path to endpoints.yaml is required"))
	}
	for i, s := range c.DNS.Servers {
		if _, err := netip.ParseAddrPort(s); err != nil {
			errs = append(errs, keyErrorf(fmt.Sprintf("dns.servers[%d]", i), "%q is not IP:port", s))
		}
	}
	if _, err := c.AllowPrefixes(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Timeouts.Timeouts.Validate(), c.Limits.Validate())
	if c.Timeouts.Drain < 0 {
		errs = append(errs, keyErrorf("timeouts.drain", "must not be negative"))
	}
	return errors.Join(errs...)
}

// AllowPrefixes parses AllowRanges.
func (c Config) AllowPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(c.AllowRanges))
	for i, s := range c.AllowRanges {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, keyErrorf(fmt.Sprintf("allow_ranges[%d]", i), "%q is not a CIDR or address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// WatchFiles reports whether file changes trigger a reload (default true).
func (c Config) WatchFiles() bool { return c.Watch == nil || *c.Watch }
