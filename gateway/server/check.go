package server

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/internal/yamlpos"
	"github.com/scpgate/scpgate/policy"
)

// Check loads everything New would, without binding an address or starting anything: the
// configuration, the policy, the users file, the TLS certificate and key (or the ACME
// settings), the audit log's folder. It returns every problem it finds as a yamlpos.List, each
// at file:line:col: problems of the policy in the policy file, the others in the configuration
// at the key that names the file or value, with what to do. `scpgate check` prints them;
// `scpgate serve` runs Check before it starts.
func Check(path string) error {
	cfg, pos, err := loadConfig(path)
	if err != nil {
		var list yamlpos.List
		if errors.As(err, &list) {
			return list
		}
		return yamlpos.List{{File: path, Line: 1, Col: 1, Msg: err.Error()}}
	}
	var out yamlpos.List
	out = append(out, checkPolicy(cfg, pos)...)
	out = append(out, checkUsers(cfg, pos)...)
	out = append(out, checkTLS(cfg, pos)...)
	out = append(out, checkAudit(cfg, pos)...)
	if len(out) == 0 {
		return nil
	}
	return out
}

func checkPolicy(cfg Config, pos *yamlpos.Positions) yamlpos.List {
	_, err := policy.Load(cfg.Policy)
	if err == nil {
		return nil
	}
	var list policy.ErrorList
	if errors.As(err, &list) {
		return list
	}
	return yamlpos.List{pos.Errorf("policy", "%s: %v (correct the path, or copy the shipped endpoints.yaml there)", cfg.Policy, unwrapPath(err))}
}

func checkUsers(cfg Config, pos *yamlpos.Positions) yamlpos.List {
	if cfg.Auth.Htpasswd == "" {
		return nil
	}
	_, _, err := loadHtpasswd(cfg.Auth.Htpasswd)
	if err == nil {
		return nil
	}
	var list proxyauth.ErrorList
	if errors.As(err, &list) {
		out := make(yamlpos.List, 0, len(list))
		for _, e := range list {
			out = append(out, &yamlpos.Error{File: e.File, Line: e.Line, Col: max(e.Col, 1), Msg: e.Msg})
		}
		return out
	}
	return yamlpos.List{pos.Errorf("auth.htpasswd", "%s", strings.TrimPrefix(err.Error(), "auth.htpasswd: "))}
}

// checkTLS checks the certificate source of the TLS listeners: the static files must hold a
// matching certificate and key; ACME settings must be complete (the certificate itself is
// obtained at start-up).
func checkTLS(cfg Config, pos *yamlpos.Positions) yamlpos.List {
	if len(cfg.TLSListen) == 0 {
		return nil
	}
	var out yamlpos.List
	if err := cfg.TLS.Validate(); err != nil {
		for _, e := range yamlpos.Leaves(err) {
			msg := strings.TrimPrefix(e.Error(), "tlslisten: ")
			key, rest, ok := strings.Cut(msg, ": ")
			if !ok || !isKeyPath(key) {
				out = append(out, pos.Errorf("tls", "%s", msg))
				continue
			}
			if key == "acme" {
				out = append(out, acmeError(pos, rest))
				continue
			}
			hint := ""
			if key == "cert_file" || key == "key_file" {
				hint = " (put the PEM file there, or correct the path)"
			}
			out = append(out, pos.Errorf("tls."+key, "%s%s", rest, hint))
		}
		return out
	}
	if cfg.TLS.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			out = append(out, pos.Errorf("tls.cert_file", "%s and %s are not a certificate and its key: %v", cfg.TLS.CertFile, cfg.TLS.KeyFile, err))
		}
	}
	return out
}

// acmeError places an ACME settings problem ("email is empty", "trusted_roots_file: open …",
// "domain \"x\" is listed twice") at the sub-key it starts with, or at tls.acme when the file
// leaves that key out (yamlpos falls back to the nearest key the file has); the message stays
// "tls.acme: ...", since it names the sub-key itself.
func acmeError(pos *yamlpos.Positions, msg string) *yamlpos.Error {
	word := msg[:len(msg)-len(strings.TrimLeftFunc(msg, func(r rune) bool { return r >= 'a' && r <= 'z' || r == '_' }))]
	if word == "domain" { // one entry of domains
		word = "domains"
	}
	key := "tls.acme"
	if word != "" {
		key += "." + word
	}
	e := pos.Errorf(key, "%s", msg)
	e.Msg = "tls.acme: " + msg
	return e
}

// checkAudit checks that the audit log can be opened without creating anything: its folder
// exists, and the file, if there, is a regular file.
func checkAudit(cfg Config, pos *yamlpos.Positions) yamlpos.List {
	p := cfg.Audit.Path
	if p == "" || p == "-" {
		return nil
	}
	if st, err := os.Stat(filepath.Dir(p)); err != nil || !st.IsDir() {
		return yamlpos.List{pos.Errorf("audit.path", "the folder %s does not exist (create it, writable by the user scpgate runs as)", filepath.Dir(p))}
	}
	if st, err := os.Stat(p); err == nil && !st.Mode().IsRegular() {
		return yamlpos.List{pos.Errorf("audit.path", "%s is not a regular file", p)}
	}
	return nil
}

// unwrapPath drops the "policy: open PATH:" wrapping of a read error, leaving its cause.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
