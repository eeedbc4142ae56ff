package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/scpgate/scpgate/scpclient/agent"
	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/progress"
	"github.com/scpgate/scpgate/scpclient/proxyclient"
	"github.com/scpgate/scpgate/scpclient/sctool"
	"github.com/scpgate/scpgate/scpclient/sitelock"
	"github.com/scpgate/scpgate/scpclient/state"
)

const toolUsage = `usage: scpclient tool <verb> [flags]   (the service connection tool, offline mode)

  -prepare -usagedatadest FILE [-config FILE]
      on the SCP: write the usage data to FILE (name it *.scpusage.json)
  -connect -usagedatasrc DIR|FILE -updatepackdest DIR -trustedcafile FILE -manifestkeyfile FILE
           [-proxyserveruri URL -proxyusername NAME [-proxypasswordfile FILE]]
           [-downloadall|-downloadhotfix|-downloadsiteversion]
      on a machine with internet access: upload the usage data, download update packs
      (default: the newest update that applies to each site version, no hotfixes); the proxy
      password comes from -proxypasswordfile or $SCPCLIENT_PROXY_PASSWORD, never the command line
  -import -updatepacksrc DIR [-config FILE]
      on the SCP: verify this hierarchy's pack and place its payloads
  -export -dest FILE.csv [-config FILE]
      write the usage data as CSV for review
`

func cmdTool(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tool", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, toolUsage) }
	prepare := fs.Bool("prepare", false, "")
	connect := fs.Bool("connect", false, "")
	imp := fs.Bool("import", false, "")
	export := fs.Bool("export", false, "")
	cfgPath := fs.String("config", defaultConfig(), "")
	usageDest := fs.String("usagedatadest", "", "")
	usageSrc := fs.String("usagedatasrc", "", "")
	packDest := fs.String("updatepackdest", "", "")
	packSrc := fs.String("updatepacksrc", "", "")
	dest := fs.String("dest", "", "")
	proxyURI := fs.String("proxyserveruri", "", "")
	proxyUser := fs.String("proxyusername", "", "")
	proxyPwFile := fs.String("proxypasswordfile", "", "")
	caFile := fs.String("trustedcafile", "", "")
	keyFile := fs.String("manifestkeyfile", "", "")
	fwlink := fs.String("fwlink", config.DefaultFwlink, "")
	all := fs.Bool("downloadall", false, "")
	hotfix := fs.Bool("downloadhotfix", false, "")
	siteVersion := fs.Bool("downloadsiteversion", false, "")
	if err := fs.Parse(args); err != nil {
		return exitUsage
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
