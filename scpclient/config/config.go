// Package config is the SCP client's configuration file: one strict YAML document (unknown keys
// are errors, every problem at file:line:col through internal/yamlpos, as for the gateway's
// files) with the rules a Configuration Manager service connection point must obey, each refusal
// naming the rule. See examples/scpclient.yaml for every key.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/scpgate/scpgate/internal/yamlpos"
	"github.com/scpgate/scpgate/manifest"
)

// Site roles that may host the service connection point.
const (
	RoleCAS               = "cas"
	RoleStandalonePrimary = "standalone-primary"
)

// Modes.
const (
	ModeOnline  = "online"
	ModeOffline = "offline"
)

// Usage data levels.
const (
	LevelBasic    = "basic"
	LevelEnhanced = "enhanced"
	LevelFull     = "full"
)

// Defaults from the ConfigMgr documentation: updates are checked every 24 hours, usage data is
// uploaded once a week, and the default usage level is Enhanced.
const (
	DefaultCheckInterval  = 24 * time.Hour
	DefaultUploadInterval = 7 * 24 * time.Hour
	DefaultRetryBackoff   = time.Minute
	// DefaultTransferIdleTimeout abandons a download that receives nothing for this long (it
	// resumes from where it stopped on the next try).
	DefaultTransferIdleTimeout = 2 * time.Minute
	// DefaultFwlink is where the update check starts (go.microsoft.com).
	DefaultFwlink = "https://go.microsoft.com/fwlink/?LinkId=2008245"
	// DefaultConnectivityInterval is how often the endpoint connectivity check runs.
	DefaultConnectivityInterval = 24 * time.Hour
	// DefaultConnectivityTimeout bounds one endpoint connectivity check.
	DefaultConnectivityTimeout = 2 * time.Minute
	// DefaultPasswordEnv is read when proxy.password_file is not set.
	DefaultPasswordEnv = "SCPCLIENT_PROXY_PASSWORD"
	// PayloadFolderName is the default payload folder under data_dir.
	PayloadFolderName = "EasySetupPayload"
)

// RuleTopTier is the message for a site role that may not host the SCP.
const RuleTopTier = "the service connection point can only be installed at the top-tier site: a central administration site or a stand-alone primary site"

// RuleIntuneOnline is the message for offline mode with an Intune subscription.
const RuleIntuneOnline = "with a Microsoft Intune subscription the service connection point must be online (offline mode is not supported while a subscription exists)"

// Config is the SCP client's configuration. Relative paths are resolved against the directory
// of the file that holds them.
type Config struct {
	SiteCode           string `yaml:"site_code"`
	SiteRole           string `yaml:"site_role"`
	HierarchyID        string `yaml:"hierarchy_id"`
	InstalledVersion   string `yaml:"installed_version"`
	Mode               string `yaml:"mode"`
	UsageLevel         string `yaml:"usage_level"`
	IntuneSubscription bool   `yaml:"intune_subscription"`
	// IncludeHotfixes also downloads applicable hotfixes (online mode); default true.
	IncludeHotfixes *bool `yaml:"include_hotfixes"`
	// Ring is sent to the connected service; empty means the general ring.
	Ring   string `yaml:"ring"`
	Fwlink string `yaml:"fwlink"`

	Proxy Proxy `yaml:"proxy"`

	TrustedCAFile   string `yaml:"trusted_ca_file"`
	ManifestKeyFile string `yaml:"manifest_key_file"`

	CheckInterval  time.Duration `yaml:"check_interval"`
	UploadInterval time.Duration `yaml:"upload_interval"`
	// RetryBackoff is the first wait after a failed cycle; it doubles (with jitter) up to the
	// interval.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// TransferIdleTimeout abandons a payload download that receives nothing for this long; the
	// next try resumes it with a Range request.
	TransferIdleTimeout time.Duration `yaml:"transfer_idle_timeout"`

	DataDir    string `yaml:"data_dir"`
	PayloadDir string `yaml:"payload_dir"`
	LogDir     string `yaml:"log_dir"`

	ConnectivityCheck ConnectivityCheck `yaml:"connectivity_check"`

	path string
}

// ConnectivityCheck configures SMS_SERVICE_CONNECTOR's endpoint connectivity check ("Validate
// internet access"): the must-pass checks of the validator, through the configured proxy.
type ConnectivityCheck struct {
	// Interval is how often the check runs (it also runs at start-up); 0 turns the schedule
	// off. Default DefaultConnectivityInterval.
	Interval *time.Duration `yaml:"interval"`
	// Policy is an endpoint policy file whose enabled groups are checked; empty means the
	// endpoints.yaml built into the binary (the SCP may not have the gateway's file).
	Policy string `yaml:"policy"`
	// Groups limits the check to these enabled groups; empty: every enabled group.
	Groups []string `yaml:"groups"`
	// Samples are real names to probe for wildcard patterns ("*.manage.microsoft.com":
	// [...]); a wildcard without one is not checked.
	Samples map[string][]string `yaml:"samples"`
	// Timeout bounds one whole check; default DefaultConnectivityTimeout.
	Timeout time.Duration `yaml:"timeout"`
}

// Every returns the check interval in force (0: no schedule).
func (c ConnectivityCheck) Every() time.Duration {
	if c.Interval == nil {
		return DefaultConnectivityInterval
	}
	return *c.Interval
}

// Proxy is the egress gateway (or any HTTP proxy). The password never appears in the file or
// on a command line: it comes from PasswordFile or the environment variable PasswordEnv.
type Proxy struct {
	URL          string `yaml:"url"`
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// CAFile is the CA of an https:// proxy's own certificate when the cloud CA bundle does not
	// cover it.
	CAFile string `yaml:"ca_file"`
}

var (
	siteCodeRE = regexp.MustCompile(`^[A-Za-z0-9]{3}$`)
	guidRE     = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
)

// Load reads and validates the file at path. Every problem is reported at path:line:col (a
// yamlpos.List): syntax where it is, unknown keys with the likely meant one, and each rule at the
// value that breaks it.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scpclient config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	c, err := parse(path, data, filepath.Dir(abs))
	if err != nil {
		return nil, err
	}
	c.path = abs
	return c, nil
}

// Parse parses a configuration whose relative paths are relative to dir, applies the defaults
// and validates it. Errors are a yamlpos.List without a file name.
func Parse(data []byte, dir string) (*Config, error) {
	return parse("", data, dir)
}

func parse(file string, data []byte, dir string) (*Config, error) {
	var c Config
	pos, err := yamlpos.Decode(file, data, &c)
	if err != nil {
		return nil, err
	}
	c.defaults(dir)
	if err := c.Validate(); err != nil {
		return nil, locate(pos, err)
	}
	return &c, nil
}

// keyError is a broken rule at one key ("site_role", "proxy.url").
type keyError struct{ key, msg string }

func (e *keyError) Error() string { return e.key + ": " + e.msg }

// locate places each problem of Validate at its key in the file.
func locate(pos *yamlpos.Positions, err error) yamlpos.List {
	var out yamlpos.List
	for _, e := range yamlpos.Leaves(err) {
		var ke *keyError
		if errors.As(e, &ke) {
			out = append(out, pos.Errorf(ke.key, "%s", ke.msg))
		} else {
			out = append(out, pos.Errorf("", "%s", e.Error()))
		}
	}
	out.Sort()
	return out
}

func (c *Config) defaults(dir string) {
	if c.Mode == "" {
		c.Mode = ModeOnline
	}
	if c.UsageLevel == "" {
		c.UsageLevel = LevelEnhanced
	}
	if c.IncludeHotfixes == nil {
		t := true
		c.IncludeHotfixes = &t
	}
	if c.Fwlink == "" {
		c.Fwlink = DefaultFwlink
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	if c.UploadInterval == 0 {
		c.UploadInterval = DefaultUploadInterval
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.TransferIdleTimeout == 0 {
		c.TransferIdleTimeout = DefaultTransferIdleTimeout
	}
	if c.Proxy.PasswordEnv == "" && c.Proxy.PasswordFile == "" {
		c.Proxy.PasswordEnv = DefaultPasswordEnv
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c.DataDir = abs(c.DataDir)
	if c.PayloadDir == "" && c.DataDir != "" {
		c.PayloadDir = filepath.Join(c.DataDir, PayloadFolderName)
	}
	if c.LogDir == "" && c.DataDir != "" {
		c.LogDir = filepath.Join(c.DataDir, "Logs")
	}
	c.PayloadDir, c.LogDir = abs(c.PayloadDir), abs(c.LogDir)
	c.TrustedCAFile, c.ManifestKeyFile = abs(c.TrustedCAFile), abs(c.ManifestKeyFile)
	c.ConnectivityCheck.Policy = abs(c.ConnectivityCheck.Policy)
	if c.ConnectivityCheck.Timeout == 0 {
		c.ConnectivityCheck.Timeout = DefaultConnectivityTimeout
	}
	c.Proxy.PasswordFile, c.Proxy.CAFile = abs(c.Proxy.PasswordFile), abs(c.Proxy.CAFile)
}

// Validate reports every problem at once, each with the key it concerns.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) { errs = append(errs, &keyError{key, fmt.Sprintf(format, a...)}) }
	if !siteCodeRE.MatchString(c.SiteCode) {
		bad("site_code", "%q: want three letters or digits (for example XYZ)", c.SiteCode)
	}
	switch c.SiteRole {
	case RoleCAS, RoleStandalonePrimary:
	case "":
		bad("site_role", "required (%s or %s)", RoleCAS, RoleStandalonePrimary)
	default:
		bad("site_role", "%q: %s (site_role: %s or %s)", c.SiteRole, RuleTopTier, RoleCAS, RoleStandalonePrimary)
	}
	if !guidRE.MatchString(c.HierarchyID) {
		bad("hierarchy_id", "%q: want a GUID (8-4-4-4-12 hex digits)", c.HierarchyID)
	}
	if _, err := manifest.ParseVersion(c.InstalledVersion); err != nil {
		bad("installed_version", "%q: want a site version such as 5.00.9135.1000", c.InstalledVersion)
	}
	switch c.Mode {
	case ModeOnline:
	case ModeOffline:
		if c.IntuneSubscription {
			bad("mode", "offline with intune_subscription true: %s", RuleIntuneOnline)
		}
	default:
		bad("mode", "%q: want %s or %s", c.Mode, ModeOnline, ModeOffline)
	}
	switch c.UsageLevel {
	case LevelBasic, LevelEnhanced, LevelFull:
	default:
		bad("usage_level", "%q: want %s, %s or %s (Microsoft requires at least basic)", c.UsageLevel, LevelBasic, LevelEnhanced, LevelFull)
	}
	if u, err := url.Parse(c.Fwlink); err != nil || u.Scheme != "https" || u.Host == "" {
		bad("fwlink", "%q: want an https URL", c.Fwlink)
	}
	if strings.ContainsAny(c.Ring, "&;=# ") {
		bad("ring", "%q: must not contain '&', ';', '=', '#' or spaces", c.Ring)
	}
	errs = append(errs, c.Proxy.validate()...)
	if c.Mode == ModeOnline {
		if c.TrustedCAFile != "" {
			if _, err := os.Stat(c.TrustedCAFile); err != nil {
				bad("trusted_ca_file", "%v", err)
			}
		}
		if c.ManifestKeyFile == "" {
			bad("manifest_key_file", "required in online mode (the key the update manifest must be signed with)")
		}
	}
	if c.ManifestKeyFile != "" {
		if _, err := os.Stat(c.ManifestKeyFile); err != nil {
			bad("manifest_key_file", "%v", err)
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
		min time.Duration
	}{{"check_interval", c.CheckInterval, time.Second}, {"upload_interval", c.UploadInterval, time.Second}, {"retry_backoff", c.RetryBackoff, time.Millisecond},
		{"transfer_idle_timeout", c.TransferIdleTimeout, time.Second}} {
		if d.v < d.min {
			bad(d.key, "%s: must be at least %s", d.v, d.min)
		}
	}
	cc := c.ConnectivityCheck
	if d := cc.Every(); d < 0 || d > 0 && d < time.Minute {
		bad("connectivity_check.interval", "%s: want 0 (no schedule) or at least 1m", d)
	}
	if cc.Timeout < time.Second {
		bad("connectivity_check.timeout", "%s: must be at least 1s", cc.Timeout)
	}
	if cc.Policy != "" {
		if _, err := os.Stat(cc.Policy); err != nil {
			bad("connectivity_check.policy", "%v", err)
		}
	}
	if c.DataDir == "" {
		bad("data_dir", "required (the folder for state, spool and locks)")
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.Join(errs...)
}

func (p Proxy) validate() []error {
	var errs []error
	bad := func(key, msg string) { errs = append(errs, &keyError{key, msg}) }
	if p.URL == "" {
		if p.User != "" {
			bad("proxy.user", "set, but proxy.url is empty")
		}
		return errs
	}
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" {
		bad("proxy.url", fmt.Sprintf("%q: want http://HOST:PORT or https://HOST:PORT", p.URL))
		return errs
	}
	if u.User != nil {
		bad("proxy.url", "must not hold credentials; use proxy.user with proxy.password_file or proxy.password_env")
	}
	if p.PasswordFile != "" && p.PasswordEnv != "" && p.PasswordEnv != DefaultPasswordEnv {
		bad("proxy.password_env", "set only one of proxy.password_file and proxy.password_env")
	}
	return errs
}

// Path is the absolute path of the file the configuration was loaded from ("" if parsed).
func (c *Config) Path() string { return c.path }

// Hotfixes reports whether applicable hotfixes are downloaded.
func (c *Config) Hotfixes() bool { return c.IncludeHotfixes == nil || *c.IncludeHotfixes }

// Version is the installed site version (validated).
func (c *Config) Version() manifest.Version {
	v, _ := manifest.ParseVersion(c.InstalledVersion)
	return v
}

// ProxyPassword returns the proxy password from proxy.password_file or the environment
// variable proxy.password_env; "" when no user is configured.
func (c *Config) ProxyPassword() (string, error) {
	return ReadPassword(c.Proxy.User, c.Proxy.PasswordFile, c.Proxy.PasswordEnv)
}

// ReadPassword reads a proxy password for user from file (first line, trailing newline
// dropped) or, when file is empty, from the environment variable env.
func ReadPassword(user, file, env string) (string, error) {
	if user == "" {
		return "", nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("proxy password file: %w", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		pw = strings.TrimSuffix(pw, "\r")
		if pw == "" {
			return "", fmt.Errorf("proxy password file %s is empty", file)
		}
		return pw, nil
	}
	pw, ok := os.LookupEnv(env)
	if !ok || pw == "" {
		return "", fmt.Errorf("proxy user %q has no password: set proxy.password_file, or the environment variable %s", user, env)
	}
	return pw, nil
}
