#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine. Idempotent and quiet when
# everything is there already.
set -euo pipefail
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v git >/dev/null 2>&1 || need+=(git)
# Real tools the tests compare against or check with (issue 9): a YAML linter for error
# positions, Node to evaluate the PAC file, systemd-analyze for the unit, logrotate for its snippet.
command -v yamllint >/dev/null 2>&1 || need+=(yamllint)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v logrotate >/dev/null 2>&1 || need+=(logrotate)
# The SCP client's offline tests run it in an empty network namespace (unshare -n, ip).
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# The HTML report of `scpgate validate` is checked in a real browser (validate/render).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
fi
command -v go >/dev/null 2>&1 || { echo "deps: Go 1.26 is required (https://go.dev/dl/)" >&2; exit 1; }
go mod download
