// Package deps pins the project's chosen dependencies while the packages that use them are written.
// Delete it once every import below is used by real code.
package deps

import (
	_ "github.com/caddyserver/certmagic"
	_ "github.com/elazarl/goproxy"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/gobwas/glob"
	_ "github.com/letsencrypt/pebble/v2/ca"
	_ "github.com/letsencrypt/pebble/v2/db"
	_ "github.com/letsencrypt/pebble/v2/va"
	_ "github.com/letsencrypt/pebble/v2/wfe"
	_ "github.com/miekg/dns"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/common/expfmt"
	_ "go.uber.org/goleak"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/crypto/bcrypt"
	_ "golang.org/x/net/idna"
)
