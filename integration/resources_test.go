package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/internal/testnet"
)

// fdLimit is the open-file limit the gateway runs under in TestOutOfDescriptors: its idle
// descriptors (listeners, epoll, audit file, the reserve) plus room for about fifteen tunnels.
const fdLimit = 48

// echoOrigin is a plain TCP echo on a loopback address, for any number of connections.
func echoOrigin(t *testing.T) net.Listener {
	t.Helper()
	ln := listenLoopback443(t)
	testnet.Echo(t, ln)
	return ln
}

// tunnelOrRefusal sends a CONNECT and returns the open tunnel (after one echo) or the refusal.
func tunnelOrRefusal(t *testing.T, proxy, target string) (net.Conn, *http.Response) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		_ = c.Close()
		t.Fatalf("CONNECT %s: no answer: %v", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		_ = c.Close()
		return nil, resp
	}
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo through the tunnel: %q, %v", got, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// TestOutOfDescriptors runs the real binary under a small open-file limit: when it runs out,
// CONNECTs get 503 out_of_resources (not 502, not silence), one WARN is logged, the metric
// counts them; once the clients close, its open files return to the idle count within seconds
// and it serves again.
func TestOutOfDescriptors(t *testing.T) {
	bin := buildScpgate(t)
	w := newWorld(t)
	origin := echoOrigin(t)
	const name = "echo.microsoft.com"
	w.dns.SetA(name, addrOf(origin).Addr())
	policy := `version: 1
groups:
  echo:
    description: test group
    doc: https://learn.microsoft.com/
    enabled: true
    sni: "off"
    hosts: [` + name + `]
`
	cfgPath := writeServeConfig(t, w, policy, addrOf(origin).Addr(), "limits:\n  requests_per_second: 0\n")
	// ulimit -n sets the soft and the hard limit: the gateway cannot raise it.
	p := runServe(t, "/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, fdLimit), bin, "serve", "-config", cfgPath, "-ready-json")
	pid := p.cmd.Process.Pid
	idle := testnet.CountFDs(t, pid)
	target := name + ":443"
	proxy := p.addrs.Proxy[0]

	var open []net.Conn
	defer func() {
		for _, c := range open {
			_ = c.Close()
		}
	}()
	var refused *http.Response
	for range fdLimit {
		c, resp := tunnelOrRefusal(t, proxy, target)
		if resp != nil {
			refused = resp
			break
		}
		open = append(open, c)
	}
	if refused == nil {
		t.Fatalf("%d tunnels open under a limit of %d files and no refusal", len(open), fdLimit)
	}
	if refused.StatusCode != http.StatusServiceUnavailable || refused.Header.Get("X-Scpgate-Reason") != "out_of_resources" || refused.Header.Get("X-Scpgate-Conn") == "" {
		t.Fatalf("refusal when out of files: %s, reason %q, conn %q; want 503 out_of_resources with a connection id",
			refused.Status, refused.Header.Get("X-Scpgate-Reason"), refused.Header.Get("X-Scpgate-Conn"))
	}
	if len(open) < 10 {
		t.Fatalf("only %d tunnels before running out of %d files: more than 2 per tunnel", len(open), fdLimit)
	}
	// Every further CONNECT is answered the same way while the tunnels stay open (or gets a
	// tunnel, if the gateway closed an idle pipe meanwhile).
	refusals := 1
	for range 5 {
		if c, resp := tunnelOrRefusal(t, proxy, target); resp == nil {
			open = append(open, c)
		} else if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Scpgate-Reason") != "out_of_resources" {
			t.Fatalf("CONNECT while out of files: %s %q", resp.Status, resp.Header.Get("X-Scpgate-Reason"))
		} else {
			refusals++
		}
	}

	for _, c := range open {
		_ = c.Close()
	}
	open = nil
	// The open files return to the idle count (idle pipes are closed within seconds).
	testnet.WaitFor(t, fmt.Sprintf("the open files to return to the idle count %d", idle), 15*time.Second,
		func() bool { return testnet.CountFDs(t, pid) <= idle })
	// It serves again.
	c, resp := tunnelOrRefusal(t, proxy, target)
	if resp != nil {
		t.Fatalf("CONNECT after the clients closed: %s %q", resp.Status, resp.Header.Get("X-Scpgate-Reason"))
	}
	_ = c.Close()

	if n := strings.Count(p.stderr.String(), "out of file descriptors"); n != 1 {
		t.Fatalf("%d WARN lines about running out of file descriptors, want 1:\n%s", n, p.stderr.String())
	}
	mresp, err := http.Get("http://" + p.addrs.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	body, _ := io.ReadAll(mresp.Body)
	var total float64
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "scpgate_out_of_resources_total{") {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			total += v
		}
	}
	if total < float64(refusals) {
		t.Fatalf("scpgate_out_of_resources_total = %v, want at least the %d refusals", total, refusals)
	}
}
