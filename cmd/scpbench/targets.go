package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/scpgate/scpgate/internal/loadstat"
)

// Names the bench's DNS server answers with 127.0.0.1 for scpgate: the CONNECT goes through
// the gateway's real resolve-and-vet path.
const (
	sinkName = "sink.bench.test"
	sniName  = "sni.bench.test"
	// proxyName is the TLS proxy listener's name in its certificate (clients dial 127.0.0.1).
	proxyName = "proxy.bench.test"
	benchUser = "bench"
	benchPass = "bench-password-0123"
)

// env is what every target of a run shares.
type env struct {
	dir      string // scratch directory of the run
	scpgate  string // scpgate binary
	self     string // this binary, for the bare splice proxy
	dnsAddr  string
	cert     *benchCert
	htpasswd string
}

// phases says which measurements a target gets.
type phases struct{ rate, bulk, idle bool }

// target is one row of the report: how to start it and reach the sink through it.
type target struct {
	name    string
	tlsSink bool // the sink speaks TLS (the tunnel carries TLS)
	phases  phases
	start   func(ctx context.Context, e *env, dir, sinkAddr string) (*proc, *endpoint, error)
}

func allTargets() []target {
	all := phases{rate: true, bulk: true, idle: true}
	return []target{
		{name: loadstat.Direct, phases: phases{rate: true, bulk: true}, start: startDirect},
		{name: loadstat.SpliceProxy, phases: all, start: startSplice},
		{name: loadstat.Squid, phases: all, start: startSquid},
		{name: loadstat.Tinyproxy, phases: all, start: startTinyproxy},
		{name: loadstat.Scpgate, phases: all, start: scpgateStarter(scpgateVariant{})},
		{name: loadstat.ScpgateAuth, phases: phases{rate: true, idle: true}, start: scpgateStarter(scpgateVariant{auth: true})},
		{name: loadstat.ScpgateTLS, phases: all, start: scpgateStarter(scpgateVariant{tlsListener: true})},
		{name: loadstat.ScpgateTunnelTLS, tlsSink: true, phases: phases{rate: true}, start: scpgateStarter(scpgateVariant{tunnelTLS: true})},
		{name: loadstat.ScpgateSNI, tlsSink: true, phases: phases{rate: true}, start: scpgateStarter(scpgateVariant{tunnelTLS: true, sni: true})},
	}
}

func startDirect(_ context.Context, _ *env, _, sinkAddr string) (*proc, *endpoint, error) {
	return nil, &endpoint{target: sinkAddr}, nil
}

func startSplice(ctx context.Context, e *env, dir, sinkAddr string) (*proc, *endpoint, error) {
	addr, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	p, err := startProc(ctx, loadstat.SpliceProxy, []string{e.self, "splice-proxy", "-listen", addr, "-allow", sinkAddr}, filepath.Join(dir, "splice.log"), addr)
	if err != nil {
		return nil, nil, err
	}
	return p, &endpoint{proxy: addr, target: sinkAddr}, nil
}

// startSquid runs squid in the foreground (-N: one process, no kids) with logging off and one
// rule: CONNECT to the sink's address and port.
func startSquid(ctx context.Context, e *env, dir, sinkAddr string) (*proc, *endpoint, error) {
	addr, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	// squid drops root for the proxy user; its pid and log files must be writable by it.
	if err := os.Chmod(dir, 0o777); err != nil {
		return nil, nil, err
	}
	conf := fmt.Sprintf(`http_port %s
visible_hostname scpbench
pid_filename %s/squid.pid
cache_log %s/cache.log
access_log none
cache_store_log none
logfile_rotate 0
cache deny all
cache_mem 8 MB
coredump_dir %s
max_filedescriptors 20000
shutdown_lifetime 1 seconds
acl CONNECT method CONNECT
acl sinkport port %s
acl sinkdst dst 127.0.0.1/32
http_access allow CONNECT sinkdst sinkport
http_access deny all
`, addr, dir, dir, dir, portOf(sinkAddr))
	path := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, nil, err
	}
	p, err := startProc(ctx, loadstat.Squid, []string{"squid", "-N", "-f", path}, filepath.Join(dir, "squid.out"), addr)
	if err != nil {
		return nil, nil, err
	}
	return p, &endpoint{proxy: addr, target: sinkAddr}, nil
}

// startTinyproxy runs tinyproxy in the foreground with one rule: CONNECT to the sink's port,
// and a filter that allows only the sink's address.
func startTinyproxy(ctx context.Context, e *env, dir, sinkAddr string) (*proc, *endpoint, error) {
	addr, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return nil, nil, err
	}
	filter := filepath.Join(dir, "filter")
	if err := os.WriteFile(filter, []byte("^127\\.0\\.0\\.1$\n"), 0o644); err != nil {
		return nil, nil, err
	}
	conf := fmt.Sprintf(`User nobody
Group nogroup
Port %s
Listen 127.0.0.1
Timeout 600
MaxClients 4096
Allow 127.0.0.1
ConnectPort %s
LogLevel Critical
PidFile "%s/tinyproxy.pid"
Filter "%s"
FilterType ere
FilterDefaultDeny Yes
`, portOf(addr), portOf(sinkAddr), dir, filter)
	path := filepath.Join(dir, "tinyproxy.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, nil, err
	}
	p, err := startProc(ctx, loadstat.Tinyproxy, []string{"tinyproxy", "-d", "-c", path}, filepath.Join(dir, "tinyproxy.out"), addr)
	if err != nil {
		return nil, nil, err
	}
	return p, &endpoint{proxy: addr, target: sinkAddr}, nil
}

// scpgateVariant selects the scpgate rows: Basic auth, the TLS proxy listener, TLS inside the
// tunnel with the SNI check off or on.
type scpgateVariant struct {
	auth, tlsListener, tunnelTLS, sni bool
}

// scpgateConfig is what writeScpgateConfig produced.
type scpgateConfig struct {
	path, listen, tlsListen, admin string
}

// writeScpgateConfig writes a gateway configuration and policy into dir: the sink's names on
// sinkPort, the bench DNS server, loopback allowed, the audit file on, no rate limits.
func writeScpgateConfig(e *env, dir string, sinkPort int, v scpgateVariant) (scpgateConfig, error) {
	var c scpgateConfig
	var err error
	if c.listen, err = freePort(); err != nil {
		return c, err
	}
	if c.admin, err = freePort(); err != nil {
		return c, err
	}
	host, sni := sinkName, "off"
	if v.sni {
		host, sni = sniName, "match"
	}
	policy := fmt.Sprintf(`version: 1
mode: enforce
groups:
  bench:
    description: the benchmark sink
    enabled: true
    ports: [%d]
    methods: [CONNECT]
    sni: %s
    hosts: [%s]
`, sinkPort, sni, host)
	if err := os.WriteFile(filepath.Join(dir, "endpoints.yaml"), []byte(policy), 0o644); err != nil {
		return c, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: [%q]\nadmin: %q\npolicy: endpoints.yaml\nwatch: false\n", c.listen, c.admin)
	fmt.Fprintf(&b, "dns:\n  servers: [%q]\n  timeout: 2s\nallow_ranges: [\"127.0.0.0/8\"]\n", e.dnsAddr)
	b.WriteString("audit:\n  path: audit.log\n  sync_interval: 1s\n")
	b.WriteString("limits:\n  max_connections: 0\n  max_connections_per_client: 0\n  requests_per_second: 0\n")
	if v.auth {
		fmt.Fprintf(&b, "auth:\n  htpasswd: %q\n", e.htpasswd)
	}
	if v.tlsListener {
		if c.tlsListen, err = freePort(); err != nil {
			return c, err
		}
		fmt.Fprintf(&b, "tls_listen: [%q]\ntls:\n  cert_file: %q\n  key_file: %q\n", c.tlsListen, e.cert.certFile, e.cert.keyFile)
	}
	c.path = filepath.Join(dir, "gateway.yaml")
	return c, os.WriteFile(c.path, []byte(b.String()), 0o644)
}

func scpgateStarter(v scpgateVariant) func(context.Context, *env, string, string) (*proc, *endpoint, error) {
	return func(ctx context.Context, e *env, dir, sinkAddr string) (*proc, *endpoint, error) {
		cfg, err := writeScpgateConfig(e, dir, mustPort(sinkAddr), v)
		if err != nil {
			return nil, nil, err
		}
		p, err := startProc(ctx, loadstat.Scpgate, []string{e.scpgate, "serve", "-config", cfg.path}, filepath.Join(dir, "scpgate.log"), cfg.listen)
		if err != nil {
			return nil, nil, err
		}
		host := sinkName
		if v.sni {
			host = sniName
		}
		ep := &endpoint{proxy: cfg.listen, target: fmt.Sprintf("%s:%s", host, portOf(sinkAddr))}
		if v.auth {
			ep.auth = benchUser + ":" + benchPass
		}
		if v.tlsListener {
			ep.proxy = cfg.tlsListen
			// scpgate binds every listener before serving: the plain one answering means the
			// TLS one is bound too.
			ep.proxyTLS = e.cert.clientConfig(proxyName)
		}
		if v.tunnelTLS {
			ep.tunnelTLS = e.cert.clientConfig(host)
		}
		return p, ep, nil
	}
}
