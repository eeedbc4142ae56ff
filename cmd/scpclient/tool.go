package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/scpgate/scpgate/internal/cmdline"
	"github.com/scpgate/scpgate/scpclient/agent"
	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/progress"
	"github.com/scpgate/scpgate/scpclient/proxyclient"
	"github.com/scpgate/scpgate/scpclient/sctool"
	"github.com/scpgate/scpgate/scpclient/sitelock"
	"github.com/scpgate/scpgate/scpclient/state"
)

var toolHelp = cmdline.Help{
	Synopsis: "scpclient tool -prepare|-connect|-import|-export [flags]",
	About: `The service connection tool, for a site in offline mode. Give exactly one of:

  -prepare -usagedatadest FILE [-config FILE]
      on the SCP: write the usage data to FILE (name it *.scpusage.json)
  -connect -usagedatasrc DIR|FILE -updatepackdest DIR -manifestkeyfile FILE [-trustedcafile FILE]
           [-proxyserveruri URL [-proxyusername NAME [-proxypasswordfile FILE]]]
           [-downloadall|-downloadhotfix|-downloadsiteversion]
      on a machine with internet access: upload the usage data, download update packs
      (default: the newest update that applies to each site version, no hotfixes); the proxy
      password comes from -proxypasswordfile or $SCPCLIENT_PROXY_PASSWORD, never the command line
  -import -updatepacksrc DIR [-config FILE]
      on the SCP: verify this hierarchy's pack and place its payloads
  -export -dest FILE.csv [-config FILE]
      write the usage data as CSV for review

Its log, ServiceConnectionTool.log, is written next to the output (in log_dir for -import) and
overwritten on every run. Exit 0 ok, 1 failed (a wrong combination of flags too), 2 a bad flag.`,
	Example: `scpclient tool -prepare -usagedatadest /media/usb/UsageData-XYZ.scpusage.json -config /etc/scpclient/scpclient.yaml
scpclient tool -connect -usagedatasrc /media/usb -updatepackdest /media/usb/UpdatePacks \
    -proxyserveruri https://scpgate.corp.example:3129 -proxyusername scp -proxypasswordfile proxy-password \
    -trustedcafile microsoft-roots.pem -manifestkeyfile manifest-key.pem
scpclient tool -import -updatepacksrc /media/usb/UpdatePacks -config /etc/scpclient/scpclient.yaml
scpclient tool -export -dest UsageData.csv -config /etc/scpclient/scpclient.yaml`,
}

func cmdTool(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("tool", stderr)
	prepare := fs.Bool("prepare", false, "on the SCP: write the usage data to -usagedatadest")
	connect := fs.Bool("connect", false, "with internet access: upload the usage data in -usagedatasrc, download update packs to -updatepackdest")
	imp := fs.Bool("import", false, "on the SCP: verify this hierarchy's pack in -updatepacksrc and place its payloads")
	export := fs.Bool("export", false, "write the usage data as CSV to -dest for review")
	cfgPath := configFlag(fs)
	usageDest := fs.String("usagedatadest", "", "-prepare: the usage data `FILE` to write (name it *.scpusage.json)")
	usageSrc := fs.String("usagedatasrc", "", "-connect: the usage data to upload: a `PATH` to one *.scpusage.json file or to a folder of them")
	packDest := fs.String("updatepackdest", "", "-connect: the `DIR` to write update packs to")
	packSrc := fs.String("updatepacksrc", "", "-import: the `DIR` -connect wrote, or this hierarchy's pack folder in it")
	dest := fs.String("dest", "", "-export: the CSV `FILE` to write")
	proxyURI := fs.String("proxyserveruri", "", "-connect: the proxy `URL`, http(s)://HOST[:PORT] or HOST[:PORT] (port 80 by default); none: direct")
	proxyUser := fs.String("proxyusername", "", "-connect: the proxy user `NAME` (needs -proxyserveruri)")
	proxyPwFile := fs.String("proxypasswordfile", "", "-connect: `FILE` whose first line is the proxy password (default: $"+config.DefaultPasswordEnv+")")
	caFile := fs.String("trustedcafile", "", "-connect: PEM CA bundle `FILE` for the cloud's certificates and an https:// proxy's (default: the system roots)")
	keyFile := fs.String("manifestkeyfile", "", "-connect: the `FILE` with the key the update manifest must be signed with (PEM PUBLIC KEY, Ed25519)")
	fwlink := fs.String("fwlink", config.DefaultFwlink, "-connect: the `URL` where the update check starts")
	all := fs.Bool("downloadall", false, "-connect: download every update and hotfix")
	hotfix := fs.Bool("downloadhotfix", false, "-connect: download every hotfix")
	siteVersion := fs.Bool("downloadsiteversion", false, "-connect: download the updates and hotfixes newer than the site version")
	if code, ok := cmdline.Parse(fs, toolHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return toolFail(stderr, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	verbs := 0
	for _, b := range []bool{*prepare, *connect, *imp, *export} {
		if b {
			verbs++
		}
	}
	if verbs != 1 {
		return toolFail(stderr, errors.New("give exactly one of -prepare, -connect, -import, -export"))
	}
	selection, n := sctool.SelectDefault, 0
	for s, b := range map[string]bool{sctool.SelectAll: *all, sctool.SelectHotfix: *hotfix, sctool.SelectSiteVersion: *siteVersion} {
		if b {
			selection, n = s, n+1
		}
	}
	if n > 1 {
		return toolFail(stderr, errors.New("-downloadall, -downloadhotfix and -downloadsiteversion exclude each other"))
	}

	switch {
	case *connect:
		if *usageSrc == "" || *packDest == "" {
			return toolFail(stderr, errors.New("-connect needs -usagedatasrc and -updatepackdest"))
		}
		if *keyFile == "" {
			return toolFail(stderr, errors.New("-connect needs -manifestkeyfile (the key the update manifest must be signed with)"))
		}
		if *proxyUser != "" && *proxyURI == "" {
			return toolFail(stderr, errors.New("-proxyusername needs -proxyserveruri"))
		}
		if err := os.MkdirAll(*packDest, 0o755); err != nil {
			return toolFail(stderr, err)
		}
		lg, err := toolLog(*packDest)
		if err != nil {
			return toolFail(stderr, err)
		}
		defer lg.Close()
		c, key, err := connectClient(*proxyURI, *proxyUser, *proxyPwFile, *caFile, *keyFile)
		if err != nil {
			lg.Error(err.Error())
			return toolFail(stderr, err)
		}
		packs, err := sctool.Connect(ctx, sctool.ConnectOptions{Client: c, Key: key, Fwlink: *fwlink, Selection: selection,
			Src: *usageSrc, Dest: *packDest, Log: lg, Progress: progress.ForTerminal(os.Stdout)})
		if err != nil {
			return toolFail(stderr, err)
		}
		for _, p := range packs {
			fmt.Fprintf(stdout, "hierarchy %s…  site version %s  %d updates  %s\n", p.HierarchyIDHash[:16], p.SiteVersion, len(p.Updates),
				filepath.Join(*packDest, sctool.PackDirName(p.HierarchyIDHash)))
		}
		return exitOK
	}

	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return toolFail(stderr, err)
	}
	switch {
	case *prepare:
		if *usageDest == "" {
			return toolFail(stderr, errors.New("-prepare needs -usagedatadest FILE"))
		}
		lg, err := toolLog(filepath.Dir(*usageDest))
		if err != nil {
			return toolFail(stderr, err)
		}
		defer lg.Close()
		p, err := sctool.Prepare(cfg, *usageDest, lg)
		if err != nil {
			lg.Error(err.Error())
			return toolFail(stderr, err)
		}
		fmt.Fprintf(stdout, "usage data package %s (site version %s, level %s) written to %s\n", p.ID, p.SiteVersion, p.Level, *usageDest)
	case *export:
		if *dest == "" {
			return toolFail(stderr, errors.New("-export needs -dest FILE.csv"))
		}
		lg, err := toolLog(filepath.Dir(*dest))
		if err != nil {
			return toolFail(stderr, err)
		}
		defer lg.Close()
		if err := sctool.Export(cfg, *dest, lg); err != nil {
			lg.Error(err.Error())
			return toolFail(stderr, err)
		}
		fmt.Fprintf(stdout, "usage data written to %s\n", *dest)
	case *imp:
		if *packSrc == "" {
			return toolFail(stderr, errors.New("-import needs -updatepacksrc DIR"))
		}
		lock, err := sitelock.Acquire(cfg.DataDir, cfg.HierarchyID)
		if err != nil {
			return toolFail(stderr, fmt.Errorf("%w (stop `scpclient run` for the import)", err))
		}
		defer lock.Release()
		lg, err := toolLog(cfg.LogDir)
		if err != nil {
			return toolFail(stderr, err)
		}
		defer lg.Close()
		key, err := agent.LoadKey(cfg.ManifestKeyFile)
		if err != nil {
			return toolFail(stderr, err)
		}
		st, err := state.Open(filepath.Join(cfg.DataDir, state.FileName))
		if err != nil {
			return toolFail(stderr, err)
		}
		placed, err := sctool.Import(cfg, key, st, *packSrc, lg)
		if err != nil {
			lg.Error(err.Error())
			return toolFail(stderr, err)
		}
		for _, p := range placed {
			fmt.Fprintf(stdout, "imported %s\n", p)
		}
		printUpdates(stdout, st.Snapshot())
	}
	return exitOK
}

// toolLog opens ServiceConnectionTool.log in dir, overwriting the previous run's.
func toolLog(dir string) (*cmtrace.Log, error) {
	return cmtrace.Open(filepath.Join(dir, sctool.LogFileName), sctool.Component, cmtrace.Truncate())
}

func toolFail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "scpclient tool: %v\n", err)
	return exitFail
}

// connectClient builds -connect's client. -proxyserveruri may be a URL or a host[:port] (port 80
// by default, as in the ConfigMgr proxy settings).
func connectClient(proxyURI, user, pwFile, caFile, keyFile string) (*proxyclient.Client, ed25519.PublicKey, error) {
	key, err := agent.LoadKey(keyFile)
	if err != nil {
		return nil, nil, err
	}
	pool, err := agent.LoadPool(caFile)
	if err != nil {
		return nil, nil, err
	}
	if proxyURI != "" && !strings.Contains(proxyURI, "://") {
		if !strings.Contains(proxyURI, ":") {
			proxyURI += ":80"
		}
		proxyURI = "http://" + proxyURI
	}
	if proxyURI != "" {
		if u, err := url.Parse(proxyURI); err != nil || u.User != nil {
			return nil, nil, errors.New("-proxyserveruri: want http(s)://HOST[:PORT] or HOST[:PORT], without credentials")
		}
	}
	pw, err := config.ReadPassword(user, pwFile, config.DefaultPasswordEnv)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (-proxypasswordfile FILE or $%s)", err, config.DefaultPasswordEnv)
	}
	c, err := proxyclient.New(proxyclient.Options{ProxyURL: proxyURI, User: user, Password: pw, RootCAs: pool,
		CredentialHint: "-proxyusername NAME with -proxypasswordfile FILE or $" + config.DefaultPasswordEnv})
	return c, key, err
}
