package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/state"
)

// demoHierarchy is the demo site's hierarchy id (made up).
const demoHierarchy = "6f2c2f5b-1d2e-4b51-9c3a-7d1e2f3a4b5c"

// clientCycle runs the service connection point itself (scpclient check) through the gateway's
// TLS listener with proxy credentials: the update check, the verified payload downloads and a
// usage upload. It shows the component logs as ConfigMgr writes them and the update states, and
// fails unless the cycle succeeded and every applicable update is DOWNLOAD_SUCCESS.
func (d *demo) clientCycle(ctx context.Context) error {
	bin, err := findBinary("", "scpclient")
	if err != nil {
		return err
	}
	d.step("the SCP client's online cycle through https://%s (scpclient check)", d.gw.TLS[0])
	dir := filepath.Join(d.dir, "scp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	pwFile := filepath.Join(dir, "proxy-password")
	if err := os.WriteFile(pwFile, []byte(d.password+"\n"), 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# written by scpsim demo
site_code: DEM
site_role: cas
hierarchy_id: %s
installed_version: %s
mode: online
usage_level: enhanced
proxy:
  url: https://%s
  user: scp
  password_file: %s
  ca_file: %s
trusted_ca_file: %s
manifest_key_file: %s
data_dir: %s
connectivity_check:
  policy: %s
  samples:
%s`, demoHierarchy, d.world.InstalledVersion, d.gw.TLS[0], pwFile, d.gwCAFile, d.world.CAFile, d.world.PublicKeyFile, filepath.Join(dir, "data"),
		filepath.Join(d.dir, "endpoints.yaml"), connectivitySamples())
	cfgFile := filepath.Join(dir, "scpclient.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "check", "-quiet", "-config", cfgFile)
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=", "https_proxy=")
	out, err := cmd.CombinedOutput()
	logs := filepath.Join(dir, "data", "Logs")
	for _, f := range []string{"dmpdownloader.log", "dmpuploader.log"} {
		fmt.Fprintf(d.out, "-- %s\n", filepath.Join(logs, f))
		if perr := printTrace(d, filepath.Join(logs, f)); perr != nil {
			return perr
		}
	}
	fmt.Fprintf(d.out, "-- update states (%s)\n%s", filepath.Join(dir, "data", state.FileName), out)
	if err != nil {
		return fmt.Errorf("scpclient check: %v", err)
	}
	st, err := state.Read(filepath.Join(dir, "data", state.FileName))
	if err != nil {
		return err
	}
	ok := 0
	for _, u := range st.SortedUpdates() {
		if u.State == state.DownloadSuccess {
			ok++
		}
	}
	if ok == 0 || st.Uploader.Delivered != 1 {
		return fmt.Errorf("scpclient check: %d updates downloaded, %d usage packages delivered; want at least 1 and 1", ok, st.Uploader.Delivered)
	}
	fmt.Fprintf(d.out, "%d updates downloaded and verified, 1 usage data package delivered\n", ok)
	d.clientConfig = cfgFile
	return nil
}

// clientConnectivity runs the SCP client's own endpoint connectivity check (the validator's
// must-pass checks, through the gateway with the client's proxy settings) and shows
// EndpointConnectivityCheckWorker.log; it fails unless the outcome is 11410.
func (d *demo) clientConnectivity(ctx context.Context) error {
	bin, err := findBinary("", "scpclient")
	if err != nil {
		return err
	}
	d.step("the SCP client's endpoint connectivity check (scpclient check-connectivity)")
	cmd := exec.CommandContext(ctx, bin, "check-connectivity", "-config", d.clientConfig)
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=", "https_proxy=")
	out, err := cmd.CombinedOutput()
	fmt.Fprint(d.out, string(out))
	log := filepath.Join(filepath.Dir(d.clientConfig), "data", "Logs", "EndpointConnectivityCheckWorker.log")
	fmt.Fprintf(d.out, "-- %s\n", log)
	if perr := printTrace(d, log); perr != nil {
		return perr
	}
	if err != nil {
		return fmt.Errorf("scpclient check-connectivity: %v (want 11410, exit 0)", err)
	}
	return nil
}

// connectivitySamples is validateSamples as the client's YAML: pattern: [name].
func connectivitySamples() string {
	var b strings.Builder
	for _, s := range validateSamples {
		pattern, name, _ := strings.Cut(s, "=")
		fmt.Fprintf(&b, "    %q: [%s]\n", pattern, name)
	}
	return b.String()
}

// printTrace prints a ConfigMgr trace log, one message per line (every line must parse).
func printTrace(d *demo, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	first := true
	for sc.Scan() {
		e, err := cmtrace.ParseLine(sc.Text())
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if first {
			// One raw line shows the format; the rest show the messages.
			fmt.Fprintf(d.out, "   %s\n", sc.Text())
			first = false
			continue
		}
		fmt.Fprintf(d.out, "   %s\n", strings.TrimSpace(e.Message))
	}
	return sc.Err()
}

// findBinary locates a binary: flagValue, else name next to this binary (make build puts them
// all in bin/), else $PATH.
func findBinary(flagValue, name string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if self, err := os.Executable(); err == nil {
		sibling := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(sibling); err == nil {
			return sibling, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", errors.New("cannot find the " + name + " binary next to scpsim or on $PATH; run `make build`")
	}
	return p, nil
}
